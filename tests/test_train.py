import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TINY
from trm import train as train_mod
from trm.carry import ExampleStream
from trm.checkpoint import CheckpointError, load_model, resolve_checkpoint
from trm.model import ModelConfig
from trm.optim import SignSGDEmbedding, lr_at
from trm.model.trm import PuzzleEmbedding
from trm.runtime import init_distributed as real_init
from trm.train import Diverged, RunStopped, StepStats, Trainer, TrainConfig

MODEL = dict(d=32, heads=4, mixer="mlp", pos="none", n=2, T=2, N_sup=3, puzzle_emb_len=1, puzzle_emb_dim=32)


def trainer(data, out, resume="", **kw):
    cfg = dict(data=str(data), out=str(out), batch_size=16, steps=12, lr=1e-3, warmup_steps=3, optimizer="adamw",
               weight_decay=0.1, loss="softmax", ema=0.9, eval_every=0, checkpoint_every=5, log_every=2,
               dtype="fp32", puzzle_emb_lr=1e-2, puzzle_emb_weight_decay=0.1)
    cfg.update(kw)
    if resume:
        return Trainer(ModelConfig(), TrainConfig(), resume=str(resume), overrides={"steps": cfg["steps"]},
                       progress=False)
    return Trainer(ModelConfig(**MODEL), TrainConfig(**cfg), progress=False)


def state(t):
    return {k: v.clone() for k, v in t.model.state_dict().items()}


def test_carry_refill_resets_only_halted_slots(sort_data, tmp_path):
    t = trainer(sort_data, tmp_path / "run")
    t.train_step()
    s = t.act
    before_inputs = s.inputs.clone()
    s.halted[:] = False
    s.halted[[1, 4]] = True
    s.carry.y[:] = 7.0
    s.refill(t.step)
    assert torch.equal(s.carry.y[1, 0], t.model.y_init) and torch.equal(s.carry.z[4, 0], t.model.z_init)
    keep = [i for i in range(16) if i not in (1, 4)]
    assert torch.all(s.carry.y[keep] == 7.0) and torch.equal(s.inputs[keep], before_inputs[keep])
    assert s.steps[1] == 0 and s.steps[4] == 0 and not s.halted.any()
    assert not torch.equal(s.inputs[[1, 4]], before_inputs[[1, 4]])


def test_slots_halt_at_N_sup(sort_data, tmp_path):
    t = trainer(sort_data, tmp_path / "run", halt_explore_prob=0.0)
    for _ in range(2):
        assert t.train_step()["stats"].halted == 0
    stats = t.train_step()["stats"]
    assert torch.all(t.act.halted)  # q_halt starts at -5: nothing halts before N_sup = 3
    assert torch.all(t.act.steps == 3)
    assert stats.samples == 16 and stats.halted == 16 and stats.steps == 48
    assert stats.metrics()["mean_steps"] == 3.0


def test_same_seed_same_result(sort_data, tmp_path):
    a, b = trainer(sort_data, tmp_path / "a"), trainer(sort_data, tmp_path / "b")
    for _ in range(6):
        a.train_step(), b.train_step()
    for k, v in state(a).items():
        assert torch.equal(v, state(b)[k]), k


def test_resume_is_equivalent_to_an_uninterrupted_run(sort_data, tmp_path):
    full = trainer(sort_data, tmp_path / "full", steps=12)
    full.fit()
    part = trainer(sort_data, tmp_path / "part", steps=5)  # "killed" right after the step-5 checkpoint
    part.fit()
    resumed = trainer(sort_data, tmp_path / "part", resume=tmp_path / "part", steps=12)
    assert resumed.step == 5
    resumed.fit()
    a, b = state(full), state(resumed)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ema_a = load_model(tmp_path / "full")[0].state_dict()
    ema_b = load_model(tmp_path / "part")[0].state_dict()
    for k in ema_a:
        assert torch.equal(ema_a[k], ema_b[k]), k
    steps = [json.loads(l)["step"] for l in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)


def test_train_state_keeps_its_layout(sort_data, tmp_path):
    """The keys of train_state.pt: older checkpoints (without "schedule" and "train_seconds") still resume."""
    trainer(sort_data, tmp_path / "run", steps=2).fit()
    st = torch.load(resolve_checkpoint(tmp_path / "run") / "train_state.pt", weights_only=True)
    assert set(st) == {"step", "model", "optimizer", "ema", "stream", "gen", "slots", "elapsed", "world_size",
                       "horizon", "schedule", "train_seconds"}
    assert set(st["slots"]) == {"inputs", "labels", "puzzle_ids", "steps", "halted", "y", "z"}
    assert st["slots"]["z"].shape == (16, 1 + 8, 32) and st["slots"]["halted"].dtype == torch.bool


def test_step_stats_add_by_name_and_average():
    a = StepStats(loss=4.0, lm_loss=3.0, samples=2.0, halted=1.0, exact=1.0, cell=0.5, steps=3.0, q_halt_correct=2.0)
    b = StepStats(loss=2.0, lm_loss=1.0, samples=2.0, halted=3.0, exact=0.0, cell=1.5, steps=3.0, q_halt_correct=1.0)
    s = a + b
    assert s == StepStats.from_tensor(s.as_tensor()) and s.halted == 4.0
    m = s.metrics()
    assert (m["loss"], m["lm_loss"], m["q_halt_accuracy"]) == (1.5, 1.0, 0.75)  # per slot
    assert (m["exact_accuracy"], m["cell_accuracy"], m["mean_steps"]) == (0.25, 0.5, 1.5)  # per ended episode


def test_resume_refuses_a_model_change_and_a_broken_checkpoint(sort_data, tmp_path):
    t = trainer(sort_data, tmp_path / "run", steps=2)
    t.fit()
    with pytest.raises(ValueError, match="cannot change"):
        Trainer(ModelConfig(), TrainConfig(), resume=str(tmp_path / "run"), overrides={"lr": 1.0}, progress=False)
    f = resolve_checkpoint(tmp_path / "run") / "model.safetensors"
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated"):
        load_model(tmp_path / "run")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nothing")


@pytest.mark.parametrize("kw", [dict(loss="stablemax", optimizer="adam_atan2"), dict(q_continue_loss=True)])
def test_training_variants_run_and_reduce_the_loss(sort_data, tmp_path, kw):
    t = trainer(sort_data, tmp_path / "run", steps=40, lr=3e-3, **kw)
    first = t.train_step()["stats"].metrics()["loss"]
    for _ in range(38):
        t.train_step()
    last = t.train_step()["stats"].metrics()["loss"]
    assert math.isfinite(last) and last < first
    if kw.get("q_continue_loss"):
        assert t.train_step()["stats"].q_continue_loss > 0  # the continue loss is really computed


def test_sign_sgd_touches_only_rows_in_the_batch():
    emb = PuzzleEmbedding(6, 4)
    emb.weight.fill_(1.0)
    emb.train()
    rows = emb(torch.tensor([1, 3, 3]))
    (rows * torch.tensor([1.0, -1.0, 2.0, 0.5])).sum().backward()
    SignSGDEmbedding(emb, lr=0.1, weight_decay=0.5).step()
    w = emb.weight
    assert torch.all(w[[0, 2, 4, 5]] == 1.0)
    # decay 1 - 0.1*0.5, then minus lr * sign(summed grad)
    assert torch.allclose(w[1], torch.tensor([0.95 - 0.1, 0.95 + 0.1, 0.95 - 0.1, 0.95 - 0.1]))


def test_lr_schedule_warmup_then_cosine():
    assert lr_at(0, base=1.0, warmup=10, total=110, min_ratio=0.1) == 0.0
    assert lr_at(5, base=1.0, warmup=10, total=110, min_ratio=0.1) == 0.5
    assert lr_at(10, base=1.0, warmup=10, total=110, min_ratio=0.1) == pytest.approx(1.0)
    assert lr_at(110, base=1.0, warmup=10, total=110, min_ratio=0.1) == pytest.approx(0.1)
    assert lr_at(60, base=1.0, warmup=10, total=110, min_ratio=1.0) == 1.0


def test_lr_schedule_holds_the_peak_then_decays_over_the_last_fraction():
    kw = dict(base=1.0, warmup=10, total=110, min_ratio=0.1, decay_fraction=0.25)
    assert lr_at(5, **kw) == 0.5  # the warm-up is unchanged
    assert lr_at(10, **kw) == lr_at(85, **kw) == 1.0  # the peak held until the last quarter (steps 85-110)
    assert lr_at(85 + 12.5, **kw) == pytest.approx(0.55)  # half-way down that quarter's cosine
    assert lr_at(110, **kw) == pytest.approx(0.1) and lr_at(200, **kw) == pytest.approx(0.1)
    full = dict(kw, decay_fraction=1.0)
    assert [lr_at(s, **full) for s in range(0, 120, 7)] == \
        [lr_at(s, base=1.0, warmup=10, total=110, min_ratio=0.1) for s in range(0, 120, 7)]


def test_example_stream_is_seeded_and_resumable():
    a = ExampleStream(10, seed=3)
    first = a.take(7)
    st = a.state()
    rest = a.take(9)
    b = ExampleStream(10, seed=3)
    b.load_state(st)
    assert (b.take(9) == rest).all()
    assert sorted(first.tolist() + rest[:3].tolist()) == list(range(10))


def test_time_budget_stops_cleanly_with_a_checkpoint_and_a_final_eval(sort_data, tmp_path):
    t = trainer(sort_data, tmp_path / "run", steps=10**6, time_budget=0.02)  # 1.2 seconds
    result = t.fit()
    assert 0 < t.step < 10**6 and result["step"] == t.step
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["step"] == t.step
    assert load_model(tmp_path / "run")[1]["step"] == t.step


# --- one run per folder, one writer per run ------------------------------------------------------------------
def test_a_new_run_refuses_a_folder_that_is_not_a_run(sort_data, tmp_path, cli):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"mine": 1}')
    with pytest.raises(CheckpointError, match="not a trm run"):
        trainer(sort_data, mine)
    code, _, err = cli("train", "--preset", "sudoku4-cpu", "--data", sort_data, "--out", mine, "--steps", "1",
                       *TINY)
    assert code == 2 and "not a trm run" in err and len(err.strip().splitlines()) == 1
    assert (mine / "config.json").read_text() == '{"mine": 1}' and [p.name for p in mine.iterdir()] == ["config.json"]
    with pytest.raises(CheckpointError, match="is a file"):
        trainer(sort_data, mine / "config.json")
    trainer(sort_data, tmp_path / "run", steps=1).fit()
    with pytest.raises(CheckpointError, match="checkpoint folder"):
        trainer(sort_data, tmp_path / "run" / "checkpoint")


def test_a_run_has_one_writer(sort_data, tmp_path):
    run = tmp_path / "run"
    first = trainer(sort_data, run, steps=2)
    with pytest.raises(ValueError, match=rf"run {run} is in use .*pid {os.getpid()}"):
        trainer(sort_data, run, steps=2)
    first.fit()  # releases the run when it ends
    again = trainer(sort_data, run, resume=run, steps=4)  # a resume takes the lock too
    with pytest.raises(ValueError, match="in use"):
        trainer(sort_data, run, resume=run, steps=4)
    again.close()
    trainer(sort_data, run, resume=run, steps=4).fit()


# --- resume: the run folder, the runtime flags, a torn metrics line ------------------------------------------
def test_resume_from_the_checkpoint_folder_continues_the_run(sort_data, tmp_path):
    run = tmp_path / "run"
    trainer(sort_data, run, steps=5).fit()
    t = trainer(sort_data, run, resume=run / "checkpoint", steps=7)
    assert t.run_dir == run and t.step == 5
    t.fit()
    assert not (run / "checkpoint" / "checkpoint").exists() and load_model(run)[1]["step"] == 7


def test_resume_refuses_a_dataset_rebuilt_with_other_content(sort_data, tmp_path):
    import numpy as np

    run = tmp_path / "run"
    trainer(sort_data, run, steps=5).fit()
    assert json.loads((run / "config.json").read_text())["data_fingerprint"]
    labels = Path(sort_data) / "train" / "labels.npy"
    a = np.load(labels)
    np.save(labels, a[::-1].copy())  # same shapes and vocabulary, other content
    meta = json.loads((Path(sort_data) / "meta.json").read_text())
    meta.pop("fingerprint", None)  # as a rebuild by hand, or an older trm, leaves it
    (Path(sort_data) / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="not the one run .* trained on"):
        trainer(sort_data, run, resume=run, steps=7)


def test_resume_honours_the_threads_and_device_given_now(sort_data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    trainer(sort_data, run, steps=2).fit()
    asked = []
    monkeypatch.setattr(train_mod, "init_distributed", lambda device: asked.append(device) or real_init(device))
    torch.set_num_threads(2)
    try:
        Trainer(ModelConfig(), TrainConfig(), resume=str(run), overrides={"threads": 1, "device": "cpu"},
                progress=False).close()
        assert torch.get_num_threads() == 1 and asked == ["cpu"]
    finally:
        torch.set_num_threads(1)  # as conftest sets it


def test_resume_drops_a_torn_last_metrics_line(sort_data, tmp_path, capsys):
    run = tmp_path / "run"
    trainer(sort_data, run, steps=4).fit()
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "loss": 0.12')  # killed halfway through a record
    trainer(sort_data, run, resume=run, steps=6).fit()
    assert "torn last line" in capsys.readouterr().err
    steps = [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 6


def test_read_metrics_skips_a_torn_last_line_while_a_run_writes(tmp_path):
    from trm.train import read_metrics
    m = tmp_path / "metrics.jsonl"
    m.write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "eval": {"exact_accuracy": 0.25}}\n{"step": 3, "lo')
    assert [r["step"] for r in read_metrics(m)] == [1, 2]
    assert read_metrics(m)[1]["eval"]["exact_accuracy"] == 0.25


# --- NaN and signals ---------------------------------------------------------------------------------------
def _at_step(monkeypatch, step, action):
    """Run `action(trainer)` right after training step `step` (before its checks, logs and checkpoint)."""
    real = Trainer.train_step

    def train_step(self):
        r = real(self)
        if self.step == step:
            action(self)
        return r
    monkeypatch.setattr(Trainer, "train_step", train_step)


def _poison(t):
    with torch.no_grad():
        next(t.model.parameters()).fill_(float("nan"))


def test_a_nan_loss_stops_the_run_and_keeps_the_last_finite_checkpoint(sort_data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    _at_step(monkeypatch, 6, _poison)  # the loss of step 7 is NaN
    with pytest.raises(Diverged, match="loss is NaN at step 7") as e:
        trainer(sort_data, run).fit()
    assert e.value.code != 0 and "step 5" in str(e.value)
    model, cfg = load_model(run)
    assert cfg["step"] == 5 and all(v.isfinite().all() for v in model.state_dict().values())
    assert not (run / "eval.json").exists()


def test_weights_that_are_not_finite_are_never_checkpointed(sort_data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    _at_step(monkeypatch, 5, _poison)  # the update of step 5 itself went wrong: its checkpoint would hold NaN
    with pytest.raises(Diverged, match="not finite after step 5"):
        trainer(sort_data, run).fit()
    with pytest.raises(CheckpointError):
        resolve_checkpoint(run)


def test_sigterm_saves_and_exits_with_its_code(sort_data, tmp_path, monkeypatch, cli):
    run = tmp_path / "run"
    _at_step(monkeypatch, 1, lambda t: os.kill(os.getpid(), signal.SIGTERM))
    code, _, err = cli("train", "--preset", "sudoku4-cpu", "--data", sort_data, "--out", run, "--steps", "50",
                       *TINY)
    assert code == 128 + signal.SIGTERM and len(err.strip().splitlines()) == 1
    assert f"stopped by SIGTERM at step 1; checkpoint saved, resume with trm train --resume {run}" in err
    assert load_model(run)[1]["step"] == 1 and not (run / "eval.json").exists()


def test_ctrl_c_stops_cleanly_and_the_handlers_are_put_back(sort_data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    before = signal.getsignal(signal.SIGINT)
    _at_step(monkeypatch, 3, lambda t: os.kill(os.getpid(), signal.SIGINT))
    with pytest.raises(RunStopped, match="stopped by SIGINT at step 3") as e:
        trainer(sort_data, run).fit()
    assert e.value.code == 130 and load_model(run)[1]["step"] == 3
    assert signal.getsignal(signal.SIGINT) is before
    trainer(sort_data, run, resume=run, steps=5).fit()  # and it resumes


# --- a kill during a checkpoint write ------------------------------------------------------------------------
KILLED = """
import os, signal, sys
import torch
from trm import atomic, checkpoint
from trm.model import ModelConfig
from trm.train import Trainer, TrainConfig
model, cfg, where = {model!r}, {cfg!r}, {where!r}
torch.set_num_threads(1)
real_save, real_replace = torch.save, os.replace

def save(obj, f, *a, **k):  # the step-10 checkpoint dies with half its train_state.pt written
    real_save(obj, f, *a, **k)
    if obj["step"] == 10 and where == "write":
        os.truncate(f, os.path.getsize(f) // 2)
        os.kill(os.getpid(), signal.SIGKILL)

def replace(src, dst):  # ... or right after the step-5 checkpoint moved aside, before the new one moved in
    real_replace(src, dst)
    if str(dst).endswith("checkpoint.old") and where == "swap":
        os.kill(os.getpid(), signal.SIGKILL)

checkpoint.torch.save, atomic.os.replace = save, replace
Trainer(ModelConfig(**model), TrainConfig(**cfg), progress=False).fit()
"""


@pytest.mark.parametrize("where", ["write", "swap"])
def test_sigkill_during_a_checkpoint_write_resumes_to_the_same_weights(sort_data, tmp_path, where):
    cfg = dict(data=str(sort_data), out=str(tmp_path / "killed"), batch_size=16, steps=12, lr=1e-3, warmup_steps=3,
               optimizer="adamw", weight_decay=0.1, loss="softmax", ema=0.9, eval_every=0, checkpoint_every=5,
               log_every=2, dtype="fp32", puzzle_emb_lr=1e-2, puzzle_emb_weight_decay=0.1)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(train_mod.__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-c", KILLED.format(model=MODEL, cfg=cfg, where=where)], env=env,
                       capture_output=True, text=True, timeout=1200)  # a loaded machine: minutes
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    killed = tmp_path / "killed"
    assert any(p.name.endswith(".tmp") for p in killed.iterdir())  # the killed writer's temporary
    resumed = trainer(sort_data, killed, resume=killed, steps=12)
    assert resumed.step == 5
    resumed.fit()
    full = trainer(sort_data, tmp_path / "full", steps=12)
    full.fit()
    for a, b in [(state(full), state(resumed)),
                 (load_model(tmp_path / "full")[0].state_dict(), load_model(killed)[0].state_dict())]:
        for k in a:
            assert torch.equal(a[k], b[k]), k
    assert sorted(p.name for p in killed.iterdir()) == ["checkpoint", "config.json", "eval.json", "metrics.jsonl",
                                                        "train.lock"]  # the stale temporary is gone
