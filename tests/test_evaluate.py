"""Deterministic evaluation: D steps for every sample, per-step accuracy, rows without a scored cell."""

import numpy as np
import torch

from trm.data.format import Split
from trm.evaluate import evaluate
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
