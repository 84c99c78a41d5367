"""Deterministic evaluation: D steps for every sample, per-step accuracy, rows without a scored cell."""

import numpy as np
import torch

from trm.data.format import Split
from trm.evaluate import evaluate, join_blocks, score_rows, summarise
from trm.model import TRM, ModelConfig


def test_unscored_rows_are_left_out_and_D_can_exceed_N_sup():
    torch.manual_seed(0)
    model = TRM(ModelConfig(vocab_size=6, seq_len=4, d=16, heads=2, mixer="mlp", pos="none", n=1, T=1, N_sup=2,
                            puzzle_emb_len=1, puzzle_emb_dim=16))
    rng = np.random.default_rng(0)
    inputs = rng.integers(1, 6, (6, 4)).astype(np.uint8)
    labels = rng.integers(1, 6, (6, 4)).astype(np.uint8)
    labels[3:] = 0  # three rows whose answers nobody knows
    m = evaluate(model, Split(inputs, labels, np.zeros(6, np.int32)), D=5, dtype="fp32")
    assert m["n"] == 6 and m["n_scored"] == 3 and len(m["exact_accuracy_by_step"]) == 5
    assert 0 <= m["cell_accuracy"] <= 1 and 0 <= m["exact_accuracy"] <= 1  # finite: no 0/0 from unscored rows
    # the same three scored rows alone give the same numbers
    alone = evaluate(model, Split(inputs[:3], labels[:3], np.zeros(3, np.int32)), D=5, dtype="fp32")
    assert alone["exact_accuracy_by_step"] == m["exact_accuracy_by_step"]
    assert alone["cell_accuracy_by_step"] == m["cell_accuracy_by_step"]
    for k in ("exact_accuracy_at_halt", "halt_rate", "q_halt_accuracy", "halting_precision"):
        assert alone[k] == m[k], k  # the halting head is judged on scored rows only


def test_row_blocks_gathered_in_order_give_the_whole_evaluation():
    """What a process group does (each rank a block of rows, gathered in rank order) equals one process
    evaluating every row: the figures, per-step curves, halting scores, rating buckets and answers."""
    torch.manual_seed(1)
    model = TRM(ModelConfig(vocab_size=6, seq_len=4, d=16, heads=2, mixer="mlp", pos="none", n=1, T=1, N_sup=3,
                            puzzle_emb_len=1, puzzle_emb_dim=16))
    rng = np.random.default_rng(1)
    n = 23
    inputs = rng.integers(1, 6, (n, 4)).astype(np.uint8)
    split = Split(inputs, rng.integers(1, 6, (n, 4)).astype(np.uint8), np.zeros(n, np.int32),
                  {"ratings": rng.integers(0, 20, n)})
    guess = evaluate(model, split, dtype="fp32", keep_predictions=True)["predictions"]
    split.labels[::2] = guess[::2]  # every other row right, so exact figures are not all zero
    split.labels[5] = 0  # and one row without an answer
    whole = evaluate(model, split, dtype="fp32", keep_predictions=True, batch_size=4,
                     validity=lambda x, p: p[:, 0] > 2)
    assert 0 < whole["exact_accuracy"] < 1
    kw = dict(D=3, dtype="fp32", keep_predictions=True, batch_size=5, validity=lambda x, p: p[:, 0] > 2)
    blocks = [score_rows(model, split, range(lo, hi), **kw) for lo, hi in ((0, 7), (7, 7), (7, 23))]
    gathered = summarise(join_blocks(blocks), split, 3)
    assert gathered.keys() == whole.keys()
    for k in whole:
        if isinstance(whole[k], np.ndarray):
            assert np.array_equal(gathered[k], whole[k]), k
        else:
            assert gathered[k] == whole[k], k
