"""An ARC run at toy scale, end to end: training, votes and a Kaggle submission from `trm eval`, `trm solve` on a
task file, test-time adaptation with --freeze-weights, and the EMA copy sharing the puzzle-embedding table."""

import json

import numpy as np
import pytest
from safetensors.torch import load_file

from trm.cli import main
from trm.data import arc
from trm.data.recipes import shared_data_root
from trm.model import ModelConfig
from trm.train import TrainConfig, Trainer

ROOT = shared_data_root() / "arc"
ARC1 = dict(zip(("train_collections", "test_collections"), arc.COLLECTIONS["arc1"]))
pytestmark = pytest.mark.skipif(not ROOT.is_dir(), reason=f"ARC JSON not found at {ROOT}")
# 900-token canvases: attention costs the square of that, so the model is as small as the code allows
TINY = ["--d", "8", "--heads", "1", "--n", "1", "--T", "1", "--N_sup", "1", "--puzzle_emb_dim", "8",
        "--batch_size", "4", "--eval_every", "0", "--dtype", "fp32", "--quiet"]



@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("arcrun")
    data = arc.build_arc(d / "data", root=ROOT, **ARC1, augments=2, task_limit=4, seed=0, progress=False)
    assert main(["train", "--preset", "arc1-cpu", "--data", str(data), "--out", str(d / "run"), "--steps", "2",
                 *TINY]) == 0
    test_id = arc.read_test_tasks(data)["order"][0]
    challenge = json.loads((ROOT / "arc-agi_evaluation_challenges.json").read_text())[test_id]
    (d / "task.json").write_text(json.dumps(challenge))
    return d, data, test_id


def test_eval_votes_and_writes_a_submission(cli, run):
    d, data, test_id = run
    code, out, _ = cli("eval", "--checkpoint", d / "run", "--data", data, "--json")
    r = json.loads(out)["arc"]
    assert code == 0 and r["votes"] == "this checkpoint" and {f"pass@{k}" for k in (1, 2, 1000)} <= set(r)
    sub = json.loads((d / "run" / "submission.json").read_text())
    tt = arc.read_test_tasks(data)
    assert set(sub) == set(tt["order"]) and all(len(sub[t]) == len(tt["outputs"][t]) for t in sub)
    assert all(set(p) == {"attempt_1", "attempt_2"} for pairs in sub.values() for p in pairs)
    code, out, _ = cli("eval", "--checkpoint", d / "run", "--data", data, "--json", "--pool-with",
                       r["predictions"], "--submission", d / "pooled.json")
    assert code == 0 and json.loads(out)["arc"]["votes"] == "2 evaluations, pooled"
    code, _, err = cli("eval", "--checkpoint", d / "run", "--data", data, "--split", "train")
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_ptrm_on_arc_picks_within_each_version_then_votes(cli, run, tmp_path):
    """K rollouts per augmented version, best-Q within each, then the usual vote across versions (PTRM on ARC)."""
    d, data, test_id = run
    code, out, _ = cli("eval", "--checkpoint", d / "run", "--data", data, "--json", "--sampler", "ptrm-arc",
                       "--K", "3", "--D", "2", "--submission", tmp_path / "sub.json")
    m = json.loads(out)
    assert code == 0 and m["sampler"]["K"] == 3 and m["sampler"]["sigma"] == 0.2 and m["sampler"]["D"] == 2
    assert {"pass@1", "pass@2"} <= set(m["arc"]) and (tmp_path / "sub.json").is_file()
    assert m["scores"][-1]["pass@K"] >= m["scores"][-1]["best-q@K"]  # row level, before the vote
    code, out, _ = cli("solve", d / "task.json", "--checkpoint", d / "run", "--json", "--K", "2",
                       "--sigma", "0.2")
    assert code == 0 and json.loads(out)["versions"] == 2


def test_solve_prints_two_attempts(cli, run, tmp_path):
    d, _, test_id = run
    code, out, _ = cli("solve", d / "task.json", "--checkpoint", d / "run", "--json")
    r = json.loads(out)
    assert code == 0 and r["task"] == test_id and r["trained_versions"] and r["versions"] == 2
    assert all(len(p["attempts"]) <= 2 and "correct" not in p for p in r["pairs"])
    code, out, _ = cli("solve", d / "task.json", "--checkpoint", d / "run")
    assert code == 0 and "test pair 1" in out  # attempts, or "no answer" from a 2-step model
    other = json.loads((ROOT / "arc-agi_evaluation2_challenges.json").read_text())
    (tmp_path / "new.json").write_text(json.dumps(next(iter(other.values()))))
    code, out, _ = cli("solve", tmp_path / "new.json", "--checkpoint", d / "run", "--json", "--augments", "3")
    assert code == 0 and not json.loads(out)["trained_versions"] and json.loads(out)["versions"] == 3
    (tmp_path / "bad.json").write_text("[1, 2]")
    code, _, err = cli("solve", tmp_path / "bad.json", "--checkpoint", d / "run")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not an ARC task" in err


def test_freeze_weights_trains_only_the_new_puzzle_embeddings(cli, run):
    d, _, _ = run
    new = arc.build_arc(d / "new", test_task_files=[d / "task.json"], augments=3, progress=False)
    code, _, _ = cli("train", "--preset", "arc1-cpu", "--data", new, "--out", d / "tta", "--steps", "3",
                     "--init-from", d / "run", "--freeze-weights", *TINY[-7:])
    assert code == 0
    before, after = load_file(d / "run" / "checkpoint" / "model.safetensors"), \
        load_file(d / "tta" / "checkpoint" / "model.safetensors")
    assert set(before) == set(after)
    for k in before:
        if k != "puzzle_emb.weight":
            assert np.array_equal(before[k].numpy(), after[k].numpy()), k
    table = after["puzzle_emb.weight"].numpy()
    assert table.shape[0] == 4 and (table[0] == 0).all() and (table[1:] != 0).any(1).all()  # row 0 never trained
    code, _, err = cli("train", "--preset", "arc1-cpu", "--data", new, "--out", d / "x", "--freeze-weights",
                       *TINY[-7:])
    assert code == 2 and "--init-from" in err


def test_ema_copy_shares_the_puzzle_embedding_table(sort_data, tmp_path):
    cfg = TrainConfig(data=str(sort_data), out=str(tmp_path / "r"), batch_size=8, steps=2, ema=0.9, dtype="fp32",
                      warmup_steps=0, eval_every=0)
    t = Trainer(ModelConfig(d=16, heads=2, n=1, T=1, N_sup=2, puzzle_emb_len=1, puzzle_emb_dim=16), cfg,
                progress=False)
    assert t.ema_model.puzzle_emb.weight is t.model.puzzle_emb.weight
    assert t.ema_model.embed_tokens.weight.data_ptr() != t.model.embed_tokens.weight.data_ptr()
    t.train_step()
    assert (t.eval_model().puzzle_emb.weight != 0).any()  # sign-SGD's update is what the EMA weights see
