"""act_loss and the continue target, against hand-worked examples."""

import math

import pytest
import torch

from trm.losses import act_loss, q_continue_target, softmax_cross_entropy, stablemax_cross_entropy


def batch():
    """2 samples, 3 tokens, vocab 4: sample 0 entirely right; sample 1 has a PAD and 1 of its 2 cells right."""
    labels = torch.tensor([[1, 2, 3], [2, 0, 3]])
    pred = torch.tensor([[1, 2, 3], [2, 3, 1]])
    logits = torch.full((2, 3, 4), -1.0).scatter(-1, pred.unsqueeze(-1), 2.0)
    logits[1, 2, 3] = 0.5  # the label's logit, below the prediction's: a loss that differs from sample 0's
    return logits, labels, torch.tensor([1.0, -1.0]), torch.tensor([0.5, 0.0])


def test_act_loss_by_hand():
    logits, labels, q_halt, q_continue = batch()
    p = act_loss(logits, labels, q_halt, q_continue, loss="softmax")
    assert p.n_cells.tolist() == [3, 2]
    assert p.cell_ok.tolist() == [[True, True, True], [True, False, False]]
    assert p.seq_ok.tolist() == [True, False]
    tok = softmax_cross_entropy(logits, labels, torch.float64)
    assert p.lm.item() == pytest.approx(tok[0].sum().item() / 3 + tok[1].sum().item() / 2, rel=1e-12)
    # BCE(1, target 1) = BCE(-1, target 0) = log(1 + e^-1)
    assert p.q_halt.item() == pytest.approx(2 * math.log1p(math.exp(-1)), rel=1e-6)
    assert p.q_continue.item() == 0.0
    assert p.total.item() == pytest.approx(p.lm.item() + 0.5 * p.q_halt.item(), rel=1e-12)
    stable = act_loss(logits, labels, q_halt, q_continue)  # the default is the reference's stablemax
    tok = stablemax_cross_entropy(logits, labels)
    assert stable.lm.item() == pytest.approx(tok[0].sum().item() / 3 + tok[1].sum().item() / 2, rel=1e-12)
    with pytest.raises(ValueError, match="unknown loss"):
        act_loss(logits, labels, q_halt, q_continue, loss="hinge")


def test_q_continue_target_and_loss():
    # not the last step: the better of the next halt and continue logits; the last: the next halt logit
    target = q_continue_target(torch.tensor([1.0, -3.0]), torch.tensor([2.0, 4.0]), torch.tensor([False, True]))
    assert torch.allclose(target, torch.sigmoid(torch.tensor([2.0, -3.0])))
    logits, labels, q_halt, q_continue = batch()
    p = act_loss(logits, labels, q_halt, q_continue, loss="softmax", q_continue_target=target)
    s = torch.sigmoid(torch.tensor([2.0, -3.0]))
    want = -(s * torch.log(torch.sigmoid(q_continue)) + (1 - s) * torch.log(1 - torch.sigmoid(q_continue))).sum()
    assert p.q_continue.item() == pytest.approx(want.item(), rel=1e-5)
    assert p.total.item() == pytest.approx(p.lm.item() + 0.5 * (p.q_halt.item() + p.q_continue.item()), rel=1e-6)
