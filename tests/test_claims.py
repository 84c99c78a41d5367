"""The claims table's machinery on a smoke spec: 4x4 Sudoku, a 4-step model, runs of seconds."""

import json
import math
import os
from dataclasses import replace
from pathlib import Path

import pytest

import trm
from trm import claims as cl
from trm import claims_spec
from trm.claims import (Arm, Claim, Close, Higher, Lower, Range, Spec, Stats, aggregate, build_data, execute,
                        next_argv, plan, verdict)
from trm.claims_report import write_report

TESTBED = cl.Testbed(preset="sudoku4-cpu", size=4, train_puzzles=40, test_puzzles=12, minutes=0.5, steps=4,
                     flags=("--d", "16", "--heads", "2", "--n", "1", "--T", "1", "--N_sup", "2", "--puzzle_emb_dim",
                            "16", "--batch_size", "8", "--eval_every", "0", "--dtype", "fp32"))
BASE = Arm("base")
SMOKE = Spec(TESTBED, (
    Claim("ema", "smoke", "1% vs 2%", "no EMA is worse", (BASE, Arm("no-ema", ("--ema", "0"))), claims_spec.EXACT,
          Lower("no-ema", "base")),
    Claim("sampled", "smoke", "-", "K noisy rollouts on base's checkpoints",
          (BASE, Arm("noisy", ("--K", "2", "--sigma", "0.3", "--limit", "6"), "eval", on="base")),
          claims_spec.BEST_Q, Range("noisy", 0.0)),
    Claim("later", "smoke", "-", "waits", (BASE, Arm("new-flag", ("--no-such-flag",))), claims_spec.EXACT,
          Close("new-flag", "base", 0.05), waits_for="another issue (--no-such-flag)"),
), seeds=(0, 1))
PROVENANCE = {"machine": {"cpu": "smoke CPU", "logical_cpus": 2, "flags": ["avx2"], "fp32_1thread_gflops": 1.0,
                          "bf16_1thread_gflops": None}, "git_commit": "0123abc"}


def in_process(argv, stdout, stderr):
    """A run in this process: no interpreter and torch import per run (the subprocess path is tested below)."""
    import contextlib

    from trm.cli import main
    with open(stdout, "a") as fo, open(stderr, "a") as fe, contextlib.redirect_stdout(fo), \
            contextlib.redirect_stderr(fe):
        return main(argv)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """The ema and sampled claims run once at seeds 0, 1: 4 train runs (base is shared) and 2 evaluations."""
    cache = tmp_path_factory.mktemp("claims") / "cache"
    p = plan(SMOKE, cache, list(SMOKE.claims[:2]), [0, 1])
    build_data(SMOKE, p.data, workers=1)
    outcome = execute(p, launch=in_process, provenance=PROVENANCE, log=lambda *a: None)
    return cache, p, outcome


def test_every_arm_and_seed_runs_once_and_records_what_traces_it(swept):
    cache, p, outcome = swept
    assert not outcome.failed and not outcome.reused
    assert sorted(r.kind for r in outcome.ran) == ["eval", "eval", "train", "train", "train", "train"]
    assert p.of[("ema", "base", 0)] is p.of[("sampled", "base", 0)]  # shared, not run twice
    for r in outcome.ran:
        rec = json.loads(r.record_path.read_text())
        assert rec["machine"]["cpu"] == "smoke CPU" and rec["returncode"] == 0 and rec["command"][0] == "trm"
        if r.kind == "train":
            cfg = json.loads((r.dir / "config.json").read_text())
            assert {"git_commit", "environment", "command"} <= set(cfg)
            assert cfg["train"]["threads"] == 1 and cfg["train"]["budget_clock"] == "train"
            assert json.loads((r.dir / "eval.json").read_text())["step"] == 4
    seeds = {json.loads((p.of[("ema", "no-ema", s)].dir / "config.json").read_text())["train"]["seed"] for s in (0, 1)}
    assert seeds == {0, 1}
    assert 0 <= p.of[("sampled", "noisy", 1)].result()["scores"][-1]["best-q@K"] <= 1


def test_a_second_invocation_reuses_every_run(swept):
    cache, p, _ = swept
    stamps = {r.key: r.result_path.stat().st_mtime_ns for r in p.runs.values()}
    again = execute(plan(SMOKE, cache, list(SMOKE.claims[:2]), [0, 1]), provenance=PROVENANCE, log=lambda *a: None)
    assert again.ran == [] and len(again.reused) == 6
    assert stamps == {r.key: r.result_path.stat().st_mtime_ns for r in p.runs.values()}


def test_killed_runs_are_resumed_not_restarted_two_at_a_time_in_subprocesses(swept, monkeypatch):
    cache, p, _ = swept
    killed = [p.of[("ema", "no-ema", 1)], p.of[("ema", "base", 0)]]
    for run in killed:
        (run.dir / "eval.json").unlink()  # killed in its final evaluation: the checkpoint is there, no result
    argv = next_argv(killed[0])
    assert argv[:3] == ["train", "--resume", str(killed[0].dir)] and argv[-4:] == ["--time-budget", "0", "--steps", "4"]
    src = str(Path(trm.__file__).resolve().parents[1])  # the subprocesses import this tree's trm
    monkeypatch.setenv("PYTHONPATH", src + os.pathsep + os.environ.get("PYTHONPATH", ""))
    again = execute(plan(SMOKE, cache, list(SMOKE.claims[:2]), [0, 1]), jobs=2, provenance=PROVENANCE,
                    log=lambda *a: None)
    assert sorted(r.key for r in again.ran) == sorted(r.key for r in killed) and len(again.reused) == 4
    for run in killed:
        assert json.loads((run.dir / "eval.json").read_text())["step"] == 4  # evaluated, not trained further
        assert "--resume" in json.loads((run.dir / "config.json").read_text())["command"]


def test_the_store_carries_finished_runs_to_a_new_machine_and_retrains_only_what_a_missing_run_needs(swept, tmp_path):
    cache, p, _ = swept
    store = tmp_path / "results"
    synced = execute(plan(SMOKE, cache, list(SMOKE.claims[:2]), [0, 1], store=store), provenance=PROVENANCE,
                     log=lambda *a: None)
    assert synced.ran == [] and len(list(store.glob("*.json"))) == 6  # runs made before the store: copied into it
    fresh = plan(SMOKE, tmp_path / "empty-cache", list(SMOKE.claims[:2]), [0, 1], store=store)
    assert cl.pending(fresh) == []  # a new machine: nothing to run
    for claim in SMOKE.claims[:2]:
        assert aggregate(claim, fresh, [0, 1]).keys() == aggregate(claim, p, [0, 1]).keys()
        for arm, r in aggregate(claim, fresh, [0, 1]).items():
            assert r.stats.values == aggregate(claim, p, [0, 1])[arm].stats.values
    assert fresh.of[("ema", "base", 0)].record()["machine"]["cpu"] == "smoke CPU"
    noisy = fresh.of[("sampled", "noisy", 1)]
    noisy.stored_path.unlink()  # a run on a checkpoint that this machine does not have: train it again first
    base = noisy.parent
    assert [[r.key for r in u] for u in cl.pending(fresh)] == [[base.key, noisy.key]]
    build_data(SMOKE, fresh.data, workers=1)
    again = execute(fresh, launch=in_process, provenance=PROVENANCE, log=lambda *a: None)
    assert [r.key for r in again.ran] == [base.key, noisy.key] and not again.failed and len(again.reused) == 4
    assert base.has_checkpoint() and noisy.stored_path.is_file() and cl.pending(fresh) == []
    assert json.loads(noisy.stored_path.read_text())["record"]["command"][:2] == ["trm", "eval"]


def test_resume_gives_a_run_the_training_time_it_has_left(tmp_path, monkeypatch):
    import trm.checkpoint as ck
    run = plan(SMOKE, tmp_path, [SMOKE.claims[0]], [0]).of[("ema", "base", 0)]
    assert next_argv(run) == run.argv  # no checkpoint (killed before the first): a fresh start
    (run.dir / "checkpoint").mkdir(parents=True)
    monkeypatch.setattr(ck, "resolve_checkpoint", lambda d: Path(d) / "checkpoint")
    monkeypatch.setattr(ck, "load_train_state", lambda c: {"step": 2, "horizon": 10, "train_seconds": 12.0})
    assert next_argv(run)[-2:] == ["--time-budget", f"{(30 - 12) / 60:.4f}"]


def _claim(rule, arms=("a", "b")):
    return Claim("c", "s", "-", "-", tuple(Arm(a) for a in arms), claims_spec.EXACT, rule)


def _results(**values):
    return {a: cl.ArmResult(Arm(a), Stats(tuple(v)), list(range(len(v))), [], []) for a, v in values.items()}


@pytest.mark.parametrize("a, b, want", [
    ([0.50, 0.52, 0.51], [0.80, 0.82, 0.81], "holds"),           # a clearly lower
    ([0.80, 0.82, 0.81], [0.50, 0.52, 0.51], "does not hold"),   # a clearly higher
    ([0.50, 0.70, 0.60], [0.55, 0.75, 0.65], "inconclusive"),    # 5 points apart, SE 8 points
    ([0.50, 0.52], [0.80, 0.82], "inconclusive (2 seeds)"),       # clear, but below 3 seeds
    ([], [0.8, 0.8, 0.8], "not run"),
])
def test_lower_weighs_the_difference_against_two_standard_errors(a, b, want):
    c = _claim(Lower("a", "b"))
    assert verdict(c, _results(a=a, b=b)) == want


def test_the_other_rules_and_the_statistics():
    s = Stats((0.5, 0.6, 0.7))
    assert math.isclose(s.mean, 0.6) and math.isclose(s.std, 0.1) and math.isclose(s.se, 0.1 / math.sqrt(3))
    c = _claim(Higher("a", "b"))
    assert verdict(c, _results(a=[0.8, 0.81, 0.82], b=[0.5, 0.51, 0.52])) == "holds"
    c = _claim(Close("a", "b", 0.05))
    assert verdict(c, _results(a=[0.80, 0.81, 0.82], b=[0.81, 0.82, 0.83])) == "holds"
    assert verdict(c, _results(a=[0.80, 0.81, 0.82], b=[0.60, 0.61, 0.62])) == "does not hold"
    assert verdict(c, _results(a=[0.70, 0.80, 0.90], b=[0.75, 0.85, 0.95])) == "inconclusive"
    c = _claim(Range("a", 0.4, 0.8), arms=("a",))
    assert [verdict(c, _results(a=v)) for v in ([0.6, 0.61, 0.62], [0.9, 0.91, 0.92], [0.75, 0.85, 0.8])] == \
        ["holds", "does not hold", "inconclusive"]


def test_the_report_has_one_row_per_claim_with_its_command_and_a_verdict(swept, tmp_path):
    cache, _, _ = swept
    full = plan(SMOKE, cache, list(SMOKE.claims), [0, 1])
    assert len(aggregate(SMOKE.claims[0], full, [0, 1])["base"].stats.values) == 2
    out = write_report(SMOKE, full, [0, 1], tmp_path / "docs" / "claims.md")
    text = out.read_text()
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and "`trm claims --claims" in ln]
    assert [r.split("|")[1].strip() for r in rows] == ["ema", "sampled", "later"]
    assert "**inconclusive (2 seeds)**" in rows[0] and "1% vs 2%" in rows[0] and "**waiting" in rows[2]
    assert "`trm train --preset sudoku4-cpu --d 16" in text and "--ema 0 --data DATA --seed 0" in text
    assert "`trm eval --checkpoint CKPT --data DATA --json" in text
    assert "smoke CPU" in text and "0123abc" in text and "2 SE" in text
    assert "| base | train | the checkpoints the arms below score |" in text  # sampled's source arm, no number
    assert "The 6 runs behind this table took" in text and "None: every row with a verdict agrees" in text
    # a step budget is what decides (the minutes only cap it): the testbed's text and each row's budget say so
    assert "Every training run: 4 optimizer steps" in text and "4 steps (<= 0.5 min) x 4 train runs" in rows[0]
    unbounded = replace(SMOKE, testbed=replace(TESTBED, steps=cl.STEPS_UNBOUNDED))
    text = write_report(unbounded, plan(unbounded, cache, list(SMOKE.claims), [0, 1]), [0, 1], out).read_text()
    assert "Every training run: 0.5 minutes of training time" in text and "| 0.5 min x 4 train runs" in text


def test_a_row_that_does_not_hold_is_listed_with_its_reading(swept, tmp_path, monkeypatch):
    import trm.claims_report as report
    cache = swept[0]
    spec = replace(SMOKE, claims=(replace(SMOKE.claims[0], reading="the budget is too short"), *SMOKE.claims[1:]))
    monkeypatch.setattr(report, "verdict", lambda c, arms: "does not hold" if c.name == "ema" else "holds")
    text = write_report(spec, plan(spec, cache, list(spec.claims), [0, 1]), [0, 1], tmp_path / "c.md").read_text()
    assert "- **ema** (does not hold): the budget is too short" in text
    assert "Verdict: **does not hold**. Reading: the budget is too short" in text


def test_claims_selects_a_subset_and_reuses_the_cache(swept, cli, monkeypatch, tmp_path):
    cache = swept[0]
    monkeypatch.setattr(claims_spec, "SPEC", SMOKE)
    sub = plan(SMOKE, cache, SMOKE.select(["sampled"]), [0, 1])
    assert {r.kind for r in sub.runs.values()} == {"train", "eval"} and len(sub.runs) == 4
    code, out, err = cli("claims", "--claims", "sampled", "--cache", cache, "--out", tmp_path / "claims.md")
    assert code == 0, err
    assert "runs: 0 run, 4 reused, 0 failed" in out and (tmp_path / "claims.md").is_file()
    assert len(list((tmp_path / "claims" / "results").glob("*.json"))) == 4  # the store beside --out, for git
    code, out, err = cli("claims", "--claims", "sampled", "--cache", cache, "--out", tmp_path / "b" / "claims.md",
                         "--store", "none")
    assert code == 0, err
    assert not (tmp_path / "b" / "claims").exists()
    code, out, _ = cli("claims", "--claims", "ema,later", "--seeds", "5", "--cache", cache, "--dry-run")
    assert code == 0
    assert "later: waits" not in out  # named: it runs
    assert sum(ln.startswith("new ") for ln in out.splitlines()) == 3 and "trm train --preset sudoku4-cpu" in out
    assert "3 of 3 runs to do" in out and "CPU-minutes" in out
    code, out, _ = cli("claims", "--cache", cache, "--dry-run")
    assert "later: waits for another issue" in out and "0 of 6 runs to do" in out
    # a budget in steps (calibration) is other runs, with that --steps on their command line
    code, out, _ = cli("claims", "--claims", "ema", "--seeds", "0", "--steps", "3", "--cache", cache, "--dry-run")
    assert code == 0 and "2 of 2 runs to do" in out and out.count("--steps 3 ") == 2


@pytest.mark.parametrize("argv, words", [
    (["--claims", "ema,nope"], "unknown claim 'nope'"),
    (["--claims", ","], "--claims takes"),
    (["--seeds", "0,x"], "--seeds takes comma-separated integers"),
    (["--seeds", "1,1"], "--seeds takes distinct"),
    (["--minutes", "0"], "--minutes must be > 0"),
    (["--jobs", "0"], "--jobs must be >= 1"),
    (["--steps", "0"], "--steps must be >= 1"),
])
def test_bad_requests_are_one_line_errors(cli, monkeypatch, tmp_path, argv, words):
    monkeypatch.setattr(claims_spec, "SPEC", SMOKE)
    code, out, err = cli("claims", "--cache", tmp_path / "c", "--dry-run", *argv)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1


def test_a_spec_naming_a_missing_arm_is_refused_in_one_line(cli, monkeypatch):
    bad = Spec(TESTBED, (Claim("x", "s", "-", "-", (BASE,), claims_spec.EXACT, Lower("typo", "base")),))
    monkeypatch.setattr(claims_spec, "SPEC", bad)
    code, _, err = cli("claims", "--list")
    assert code == 2 and "claim x refers to arm typo" in err and len(err.strip().splitlines()) == 1


def test_the_real_spec_is_valid_and_plans_shared_runs_once(tmp_path):
    claims_spec.SPEC.validate()
    p = plan(claims_spec.SPEC, tmp_path, [c for c in claims_spec.SPEC.claims if not c.waits_for], [0, 1, 2])
    trains = [r for r in p.runs.values() if r.kind == "train"]
    # TRM, its 11 rivals, the fixed-point (two claims share it) and the SSD arm (two claims): each seed once
    assert len(trains) == 3 * 14
    assert all("--time-budget" in r.argv and r.argv[r.argv.index("--threads") + 1] == "1" for r in trains)


def test_machine_record_names_the_cpu_and_its_matmul_rate():
    from trm.runtime import machine_record
    m = machine_record(seconds=0.05)
    assert m["cpu"] and m["fp32_1thread_gflops"] > 0 and isinstance(m["flags"], list)


def test_a_sweep_claim_reads_its_points_and_plots_its_curve(tmp_path):
    """The real width-against-depth claim on synthetic sweep.json files: verdict, rows and the plot."""
    full = plan(claims_spec.SPEC, tmp_path / "cache", list(claims_spec.SPEC.claims), [0, 1, 2])
    for s in (0, 1, 2):
        run = full.of[("width-beats-depth", "width", s)]
        assert run is full.of[("width-beats-depth", "depth", s)]  # one sweep, two numbers
        rows = [{"D": D, "K": 1, "deterministic": True, "noise": "none", "sigma": 0.0, "stop_after": 0,
                 "best-q@K": 0.5 + 0.01 * i + 0.001 * s, "calls_per_puzzle": 10 * D}
                for i, D in enumerate((4, 8, 16, 32, 64))]
        rows += [{"D": 16, "K": K, "deterministic": False, "noise": "z", "sigma": 0.3, "stop_after": 0,
                  "best-q@K": 0.6 + 0.05 * K + 0.002 * s, "calls_per_puzzle": 160 * K} for K in (1, 2, 4)]
        run.dir.mkdir(parents=True)
        (run.dir / "sweep.json").write_text(json.dumps({"rows": rows}))
    out = write_report(claims_spec.SPEC, full, [0, 1, 2], tmp_path / "docs" / "claims.md")
    row = next(ln for ln in out.read_text().splitlines() if ln.startswith("| width-beats-depth |"))
    assert "width 80.2 ± 0.2% vs depth 54.1 ± 0.1%" in row and "**holds**" in row
    assert (tmp_path / "docs" / "claims" / "width-beats-depth.png").stat().st_size > 1000
    assert "](claims/width-beats-depth.png)" in out.read_text()


def test_a_changed_preset_is_a_new_run(tmp_path, monkeypatch):
    """The key holds what the preset resolves to: after a preset changes, its old runs are not reused."""
    from trm import presets
    before = plan(SMOKE, tmp_path, [SMOKE.claims[0]], [0]).of[("ema", "base", 0)].key
    p = presets.PRESETS["sudoku4-cpu"]
    monkeypatch.setitem(presets.PRESETS, "sudoku4-cpu", replace(p, train=replace(p.train, lr=p.train.lr * 2)))
    after = plan(SMOKE, tmp_path, [SMOKE.claims[0]], [0]).of[("ema", "base", 0)].key
    assert after != before
    monkeypatch.setitem(presets.PRESETS, "sudoku4-cpu", p)
    assert plan(SMOKE, tmp_path, [SMOKE.claims[0]], [0]).of[("ema", "base", 0)].key == before


def test_a_fixed_checkpoint_is_sampled_at_each_seed_and_a_missing_one_waits(swept, tmp_path, monkeypatch):
    """Checkpoint arms (PTRM on a 9x9 checkpoint the claims did not train): an eval per noise seed on a
    preset's dataset, built when missing; arms with the same flags share a run; a missing checkpoint is a
    'waiting' verdict, not a failure."""
    from trm import presets
    cache, p, _ = swept
    ckpt = p.of[("ema", "base", 0)].dir
    small = replace(presets.PRESETS["sudoku4-cpu"], data={"size": 4, "generate": 40, "test": 12, "seed": 0})
    monkeypatch.setitem(presets.PRESETS, "smoke4", small)
    flags = ("--K", "2", "--sigma", "0.3", "--limit", "6")

    def claim(name, path):
        z = Arm("z", flags, "eval", checkpoint=str(path), data="smoke4")
        return Claim(name, "smoke", "-", "q picks", (z, Arm("random", flags, "eval", checkpoint=str(path),
                                                               data="smoke4", metric=claims_spec.RANDOM_PICK)),
                     claims_spec.BEST_Q, Higher("z", "random"))
    spec = Spec(TESTBED, (claim("fixed", ckpt), claim("gone", tmp_path / "no-such-run")), seeds=(0, 1, 2))
    spec.validate()
    fp = plan(spec, tmp_path / "cache", list(spec.claims), [0, 1, 2])
    runs = [fp.of[("fixed", "z", s)] for s in range(3)]
    assert all(fp.of[("fixed", "random", s)] is runs[s] for s in range(3))  # one run a seed, two metrics
    assert [r.argv[-2:] for r in runs] == [["--seeds", "0"], ["--seeds", "1"], ["--seeds", "2"]]
    assert fp.of[("gone", "z", 0)].waiting and [r.key for u in cl.pending(fp) for r in u] == [r.key for r in runs]
    cl.build_datasets(fp, log=lambda *a: None)
    assert all((d / "meta.json").is_file() for d in fp.datasets)
    out = execute(fp, launch=in_process, provenance=PROVENANCE, log=lambda *a: None)
    assert sorted(r.key for r in out.ran) == sorted(r.key for r in runs) and not out.failed
    arms = aggregate(spec.claims[0], fp, [0, 1, 2])
    assert arms["z"].stats.n == 3 and arms["random"].stats.n == 3
    assert all(0 <= v <= 1 for v in arms["random"].stats.values)
    assert verdict(spec.claims[0], arms) in ("holds", "does not hold", "inconclusive")
    assert verdict(spec.claims[1], aggregate(spec.claims[1], fp, [0, 1, 2])).startswith("waiting (checkpoint ")
    report = write_report(spec, fp, [0, 1, 2], tmp_path / "claims.md").read_text()
    assert "3 runs on fixed checkpoints" in report and "DATA(smoke4)" in report


def test_the_report_names_a_shared_checkpoint_as_the_repo_sees_it(monkeypatch, tmp_path):
    """A fixed checkpoint in the shared folder reads ../shared/... in the table, wherever this machine keeps it."""
    from trm import claims_report
    monkeypatch.setattr(claims_report, "shared_data_root", lambda: tmp_path / "shared" / "data")
    assert claims_report._portable(str(tmp_path / "shared" / "runs" / "a")) == "../shared/runs/a"
    assert claims_report._portable(str(tmp_path / "shared-other" / "a")) == str(tmp_path / "shared-other" / "a")
    assert claims_report._portable("--K") == "--K"


@pytest.mark.parametrize("arm,words", [
    (Arm("x", (), "train", checkpoint="runs/a", data="sudoku4-cpu"), "an eval or sweep of that checkpoint"),
    (Arm("x", (), "eval", checkpoint="runs/a", data="no-such-preset"), "needs checkpoint= and data="),
    (Arm("x", ("--seeds", "3"), "eval", checkpoint="runs/a", data="sudoku4-cpu"), "its seeds are the claim's"),
])
def test_a_bad_checkpoint_arm_is_refused_in_one_line(arm, words):
    spec = Spec(TESTBED, (Claim("c", "s", "-", "-", (arm,), claims_spec.EXACT, Range("x", 0.0)),))
    with pytest.raises(ValueError, match=words):
        spec.validate()


def test_two_settings_of_one_checkpoint_are_judged_on_their_paired_differences(tmp_path):
    """Arms that score the same checkpoint at each seed (PTRM's noisy and deterministic numbers of one run) move
    together with the checkpoint: their per-seed differences decide, not the spread between checkpoints."""
    def run(key, parent=None):
        return cl.Run(key, "eval" if parent else "train", tmp_path / key, [], {}, 0.0, parent)
    evals = [run(f"e{s}", run(f"t{s}")) for s in range(3)]
    a, b = (0.50, 0.70, 0.60), (0.49, 0.685, 0.595)  # 0.5-1.5 points apart at each seed, the seeds 10 apart
    arms = {"a": cl.ArmResult(Arm("a", (), "eval", on="t"), Stats(a), [0, 1, 2], evals, []),
            "b": cl.ArmResult(Arm("b", (), "eval", on="t"), Stats(b), [0, 1, 2], evals, [])}
    c = _claim(Higher("a", "b"))
    assert cl.paired(c, arms) and verdict(c, arms) == "holds"
    assert verdict(_claim(Close("a", "b", 0.02)), arms) == "holds"
    apart = {k: replace(v, runs=[run(f"{k}{s}") for s in range(3)]) for k, v in arms.items()}  # two train arms
    assert not cl.paired(c, apart) and verdict(c, apart) == "inconclusive"
    other = {**arms, "b": replace(arms["b"], runs=[run(f"x{s}", run(f"u{s}")) for s in range(3)])}
    assert not cl.paired(c, other)  # other checkpoints


def test_a_memory_claim_measures_presets_without_training_and_plots_every_arm(tmp_path):
    """Memory arms (`trm params --backward-memory`): one measurement a seed, the result from its printed JSON,
    no train run; the curve draws the `also` arms beside the rule's."""
    small = ("--d", "16", "--heads", "2", "--T", "1", "--N_sup", "2", "--puzzle_emb_dim", "16", "--batch", "2",
             "--backward-memory", "2,4")
    ratio = claims_spec.Metric("ratio", cl.path("ratio_last_to_first"))
    curve = cl.Curve("implicit", "memory", "depth", "MB", lambda r: {"": ([x["depth"] for x in r["rows"]],
                                                                        [x["saved_mb"] for x in r["rows"]])},
                     also=("unrolled",), yscale=1.0)
    claim = Claim("memory", "smoke", "-", "constant", (Arm("implicit", small, "memory", preset="sudoku6-deq-cpu"),
                  Arm("unrolled", ("--fp_grad", "unroll", *small), "memory", preset="sudoku6-deq-cpu")),
                  ratio, Range("implicit", 0.95, 1.05), curve=curve)
    spec = Spec(TESTBED, (claim,), seeds=(0, 1, 2))
    spec.validate()
    p = plan(spec, tmp_path / "cache", [claim], [0, 1, 2], store=tmp_path / "store")
    assert not [r for r in p.runs.values() if r.kind == "train"]
    assert p.of[("memory", "implicit", 1)].argv[-3:] == ["--seed", "1", "--json"]
    out = execute(p, launch=in_process, provenance=PROVENANCE, log=lambda *a: None)
    assert len(out.ran) == 6 and not out.failed
    arms = aggregate(claim, p, [0, 1, 2])
    assert arms["implicit"].stats.values == (1.0, 1.0, 1.0) and min(arms["unrolled"].stats.values) > 1.5
    assert verdict(claim, arms) == "holds"
    assert len(list((tmp_path / "store").glob("memory-*.json"))) == 6
    report = write_report(spec, p, [0, 1, 2], tmp_path / "docs" / "claims.md").read_text()
    assert "6 memory measurements (no training)" in report and "`trm params --preset sudoku6-deq-cpu" in report
    assert (tmp_path / "docs" / "claims" / "memory.png").stat().st_size > 1000
    bad = Spec(TESTBED, (replace(claim, arms=(Arm("implicit", small, "memory", on="x"),)),))
    with pytest.raises(ValueError, match="a memory arm measures a preset"):
        bad.validate()


def test_the_attractor_metrics_read_an_analyze_report():
    r = {"N_sup": 16, "hypothesis": {"answer_settle_step": {"quick": {"n": 3, "mean": 1.0},
                                                            "delayed": {"n": 1, "mean": 5.0},
                                                            "failure": {"n": 2, "mean": 16.0}}},
         "sae": {"feature_kinds": {"quick": {"n": 2, "fixed": 2, "cycle": 0}, "delayed": {"n": 2, "fixed": 0,
                                                                                        "cycle": 1},
                                   "failure": {"n": 4, "fixed": 0, "cycle": 0}}}}
    assert claims_spec.ANSWER_SETTLES.read(r) == pytest.approx((3 * 1 + 5) / 4 / 16)
    assert claims_spec.FEATURES_SETTLE.read(r) == pytest.approx(3 / 4)
    assert math.isnan(claims_spec.ANSWER_SETTLES.read({"N_sup": 16, "hypothesis": {"answer_settle_step": {}}}))


def test_verify_reruns_from_an_empty_cache_and_checks_every_number_against_the_store(swept, cli, monkeypatch,
                                                                                   tmp_path):
    """`trm claims --verify`: the selected claims made again in a new cache, nothing taken from the store; each
    number the table reads is checked against the stored run's (exit 1 naming the run where one differs)."""
    cache = swept[0]
    monkeypatch.setattr(claims_spec, "SPEC", SMOKE)
    monkeypatch.setattr(cl, "subprocess_launch", lambda prefix=None: in_process)
    monkeypatch.setattr(cl, "provenance", lambda: PROVENANCE)
    out_md = tmp_path / "claims.md"
    code, _, err = cli("claims", "--claims", "sampled", "--cache", cache, "--out", out_md)  # fills the store
    assert code == 0, err
    store = tmp_path / "claims" / "results"
    stored = {f.name: f.read_bytes() for f in store.glob("*.json")}
    out_md.unlink()
    code, out, err = cli("claims", "--claims", "sampled", "--cache", tmp_path / "fresh", "--out", out_md, "--verify")
    assert code == 0, err
    assert "runs: 4 run, 0 reused" in out and "verify: 4 numbers equal the store's, 0 differ" in out
    assert not out_md.exists() and {f.name: f.read_bytes() for f in store.glob("*.json")} == stored
    eval_run = next(f for f in store.glob("eval-*.json"))
    doc = json.loads(eval_run.read_text())
    doc["result"]["scores"][-1]["best-q@K"] += 0.25
    eval_run.write_text(json.dumps(doc))
    code, out, err = cli("claims", "--claims", "sampled", "--cache", tmp_path / "fresh", "--out", out_md, "--verify")
    assert code == 1 and "differs sampled/noisy seed" in out and "1 numbers differ" in err
    code, _, err = cli("claims", "--cache", tmp_path / "fresh", "--store", "none", "--verify")
    assert code == 2 and "--verify checks the runs against a store" in err
    (tmp_path / "empty").mkdir()  # a store without these runs: nothing was checked, which is not a pass
    code, _, err = cli("claims", "--claims", "sampled", "--cache", tmp_path / "fresh", "--store", tmp_path / "empty",
                       "--verify")
    assert code == 1 and "nothing to verify" in err
