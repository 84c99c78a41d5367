"""Multi-process training (torchrun, gloo, CPU): 2 processes train the same model as 1 process.

The ACT carry is refilled in global slot order and halting exploration draws for the global batch, so a run
with 2 processes of 8 slots sees exactly the data of a run with 1 process of 16 slots; only the order of the
gradient all-reduce differs, hence a float tolerance rather than bit equality.

torchrun reads abbreviated options itself (`--d` would match its `--duplicate-...`): a `--` before the trm
arguments hands them over untouched."""

import json
import os
import subprocess
import sys

import pytest
from safetensors.torch import load_file

ARGS = ["--preset", "sudoku4-cpu", "--d", "32", "--heads", "2", "--n", "2", "--T", "2", "--N_sup", "3",
        "--puzzle_emb_dim", "32", "--batch_size", "16", "--steps", "6", "--checkpoint_every", "3",
        "--eval_every", "0", "--dtype", "fp32", "--ema", "0", "--warmup_steps", "1", "--quiet"]


def run(cmd):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    # a worker's own last words come before torchrun's summary of the failure: show both
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[:3000] + "\n...\n" + r.stderr[-1000:]
    return r.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="gloo via torchrun is not set up on Windows here")
def test_two_processes_match_one(sort_data, tmp_path):
    one = tmp_path / "one"
    two = tmp_path / "two"
    run([sys.executable, "-m", "trm.cli", "--", "train", *ARGS, "--data", str(sort_data), "--out", str(one)])
    out = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "trm.cli", "--", "train", *ARGS, "--data", str(sort_data), "--out", str(two)])
    assert "2 processes" in out
    a = load_file(one / "checkpoint" / "model.safetensors")
    b = load_file(two / "checkpoint" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] - b[k]).abs().max() < 1e-4, (k, (a[k] - b[k]).abs().max())
    # the puzzle embeddings (sign-SGD on the rows a batch touched, all-reduced apart from the weights) moved
    # from their zero start, and identically: the loop above compared them too
    emb = [k for k in a if k.startswith("puzzle_emb")]
    assert emb and all(a[k].abs().amax(-1).gt(0).sum() == 3 for k in emb)  # all 3 puzzle ids were trained
    # and the weights really moved: agreement is not that of two untouched initialisations
    three = tmp_path / "three"
    run([sys.executable, "-m", "trm.cli", "train", *ARGS, "--steps", "1", "--data", str(sort_data), "--out", str(three)])
    c = load_file(three / "checkpoint" / "model.safetensors")
    assert max((a[k] - c[k]).abs().max() for k in a) > 1e-3
    # the final evaluation ran on both ranks, a half each, and was gathered: the whole test split was scored
    e1, e2 = (json.loads((d / "eval.json").read_text()) for d in (one, two))
    assert e1["n"] == e2["n"] == 64
    assert abs(e1["cell_accuracy"] - e2["cell_accuracy"]) <= 2 / (64 * 8)  # equal weights up to 1e-4
