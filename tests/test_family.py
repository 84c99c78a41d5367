"""The model family as flags of one TRM: which network runs each call, which calls carry gradients, what the
carry holds, and that every variant goes through training, evaluation, sampling and recording unchanged."""

import numpy as np
import pytest
import torch

from trm.analysis.record import record
from trm.evaluate import evaluate
from trm.model import TRM, ModelConfig, count_parameters
from trm.presets import PRESETS, get_preset
from trm.sampling import SamplerConfig, sample
from trm.train import Trainer, TrainConfig

BASE = dict(vocab_size=7, seq_len=9, num_puzzle_ids=3, d=16, heads=2, L=2, n=3, T=2, N_sup=3, puzzle_emb_len=1,
            puzzle_emb_dim=16, mixer="attention", pos="rope")
VARIANTS = {
    "trm": {},
    "hrm": dict(networks=2, grad="one_step"),
    "singlez": dict(recursion="singlez"),
    "multiz": dict(recursion="multiz"),
    "transformer": dict(recursion="none", T=1),
    "two-networks": dict(networks=2),
    "one-step": dict(grad="one_step"),
    "all-grad": dict(grad="all"),
}


def tiny(**kw):
    torch.manual_seed(0)
    return TRM(ModelConfig(**{**BASE, **kw}))


def batch(B=3):
    g = torch.Generator().manual_seed(1)
    return torch.randint(1, 7, (B, 9), generator=g), torch.randint(0, 3, (B,), generator=g)


def call_trace(model):
    """Run one training-mode supervision step; per call, (network index, whether it built a graph)."""
    calls = []
    hooks = [net.register_forward_hook(lambda m, i, o, k=k: calls.append((k, o.requires_grad)))
             for k, net in enumerate(model.networks())]
    model.train()
    inputs, ids = batch()
    _, out = model(model.initial_carry(3), inputs, ids)
    for h in hooks:
        h.remove()
    return calls, out


@pytest.mark.parametrize("name", VARIANTS)
def test_calls_networks_and_gradients_follow_the_flags(name):
    m = tiny(**VARIANTS[name])
    c = m.cfg
    calls, out = call_trace(m)
    assert len(calls) == m.calls_per_step == len(m.call_labels())
    assert sum(g for _, g in calls) == c.grad_calls_per_step
    nets = [k for k, _ in calls]
    labels = m.call_labels()
    # with two networks, every y-update runs the second one and every z-update the first
    assert nets == [int(c.networks == 2 and lab.endswith(".y")) for lab in labels]
    grads = [g for _, g in calls]
    k = c.calls_per_recursion
    if c.grad == "last":  # TRM: the last recursion, whole
        assert grads == [False] * (len(calls) - k) + [True] * k
    elif c.grad == "one_step":  # HRM: only the last z-update and the last y-update
        assert grads == [False] * (len(calls) - 2) + [True] * 2
    else:
        assert all(grads)
    out.logits.float().sum().backward()
    assert all(p.grad is not None for n, p in m.named_parameters() if n.startswith("net.0."))


def test_the_gradient_flags_change_gradients_not_values():
    inputs, ids = batch()
    outs = {}
    for grad in ("last", "one_step", "all"):
        m = tiny(grad=grad)
        m.train()
        _, out = m(m.initial_carry(3), inputs, ids)
        out.logits.float().square().sum().backward()
        outs[grad] = (out.logits.detach(), m.net[0].mlp.down.weight.grad.clone())
    for g in ("one_step", "all"):
        assert torch.equal(outs[g][0], outs["last"][0])
        assert not torch.allclose(outs[g][1], outs["last"][1])


def test_single_state_models_carry_one_state():
    for kw in (VARIANTS["singlez"], VARIANTS["transformer"]):
        m = tiny(**kw).eval()
        assert not hasattr(m, "y_init")
        inputs, ids = batch()
        carry = m.initial_carry(3)
        assert carry.y is carry.z
        new, out = m(carry, inputs, ids)
        assert new.y is new.z and torch.equal(out.logits, m.lm_head(new.z[:, 1:]))
        reset = m.reset_carry(new, torch.tensor([True, False, False]))
        assert reset.y is reset.z and torch.equal(reset.z[0, 0], m.z_init) and torch.equal(reset.z[1], new.z[1])


def test_multiz_carries_n_latents_each_with_its_own_start():
    m = tiny(**VARIANTS["multiz"]).eval()
    carry = m.initial_carry(2)
    assert carry.z.shape == (2, 3, 10, 16) and carry.y.shape == (2, 10, 16)
    assert all(torch.equal(carry.z[0, i, 5], m.z_init[i]) for i in range(3))
    assert not torch.equal(m.z_init[0], m.z_init[1])
    new, _ = m(carry, *batch(2))
    assert all(not torch.equal(new.z[:, i], carry.z[:, i]) for i in range(3))  # every latent was rewritten
    reset = m.reset_carry(new, torch.tensor([False, True]))
    assert torch.equal(reset.z[1], carry.z[1]) and torch.equal(reset.z[0], new.z[0])


def test_hrm_is_the_paper_size_and_the_others_count_honestly():
    assert count_parameters(TRM(get_preset("sudoku-extreme-hrm").model))["trainable"] == 27_275_266
    base = count_parameters(tiny())["trainable"]
    # one more network doubles the blocks; the state variants add no weights
    assert count_parameters(tiny(networks=2))["trainable"] - base == sum(
        p.numel() for p in tiny().net.parameters())
    for name in ("singlez", "multiz", "transformer", "one-step"):
        assert count_parameters(tiny(**VARIANTS[name]))["trainable"] == base


@pytest.mark.parametrize("kw,msg", [(dict(recursion="loop"), "recursion"), (dict(networks=3), "networks"),
                                    (dict(grad="some"), "grad"), (dict(recursion="singlez", networks=2), "networks")])
def test_bad_variant_flags_are_one_line_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        tiny(**kw)


@pytest.mark.parametrize("name", ["hrm", "singlez", "multiz", "transformer"])
def test_every_variant_trains_evaluates_samples_and_records(name, sort_data, tmp_path):
    model_kw = {**BASE, **VARIANTS[name], "vocab_size": 6, "seq_len": 8, "d": 16}
    cfg = TrainConfig(data=str(sort_data), out=str(tmp_path / "run"), batch_size=8, steps=4, lr=1e-3,
                      warmup_steps=1, optimizer="adamw", loss="softmax", ema=0.9, eval_every=0, checkpoint_every=2,
                      log_every=2, dtype="fp32", q_continue_loss=name == "hrm")
    t = Trainer(ModelConfig(**model_kw), cfg, progress=False)
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    result = t.fit()
    assert result["step"] == 4 and 0 <= result["exact_accuracy"] <= 1
    after = t.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("net."))
    model = t.eval_model()
    ds = t.test_split
    m = evaluate(model, ds, D=3, batch_size=16, dtype="fp32")
    assert m["n"] == len(ds)
    inputs, ids, labels = np.asarray(ds.inputs[:4]), np.asarray(ds.puzzle_ids[:4]), np.asarray(ds.labels[:4])
    r = sample(model, inputs, ids, SamplerConfig(K=3, D=3, sigma=0.5), labels=labels, dtype="fp32")
    assert r.q.shape == (4, 1, 3) and r.calls_per_step == model.calls_per_step
    rec = record(model, inputs, ids, SamplerConfig(K=1, D=3), labels=labels, latent=True, full_rows=2, dtype="fp32")
    assert rec["latent_mean"].shape == (4, 3, model.calls_per_step, 16)
    assert rec["z_full"].shape == (2, 3, model.cfg.total_len, 16)
    # the last call of a supervision step writes what the heads read
    np.testing.assert_allclose(rec["latent_mean"][:, :, -1], rec["y_mean"], atol=2e-3)


def test_single_state_sampling_refuses_noise_on_y():
    m = tiny(**VARIANTS["singlez"]).eval()
    inputs, ids = batch()
    with pytest.raises(ValueError, match="one state"):
        sample(m, inputs.numpy(), ids.numpy(), SamplerConfig(K=2, D=2, sigma=0.3, noise="y"), dtype="fp32")


def test_family_presets_exist_and_build():
    for name in ("sudoku-extreme-hrm", "sudoku-extreme-singlez", "sudoku-extreme-multiz", "sudoku6-hrm-cpu",
                 "sudoku6-singlez-cpu", "sudoku6-multiz-cpu", "sudoku6-transformer-cpu"):
        assert name in PRESETS
    p = get_preset("sudoku6-hrm-cpu")
    assert (p.model.networks, p.model.grad, p.train.q_continue_loss) == (2, "one_step", True)
