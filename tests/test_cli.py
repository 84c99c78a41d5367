"""The `trm` command: outputs other tools rely on, and one-line refusals of bad input (never a traceback)."""

import argparse
import importlib
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from trm.cli import main
from trm.cli.common import add_field_flags, field_comments
from trm.data.sudoku import build_sudoku
from trm.model import ModelConfig
from trm.train import TrainConfig

from conftest import TINY, tiny_sudoku_run

PUZZLE = "4.....8.5.3..........7......2.....6.....8.4......1.......6.3.7.5..2.....1.4......"



@pytest.fixture(scope="module")
def run9(tmp_path_factory):
    """A 9x9 checkpoint (2 steps of a tiny model: the CLI is under test here, not learning)."""
    return tiny_sudoku_run(tmp_path_factory, 9, generate=12, test=4)


@pytest.mark.parametrize("preset, want", [("sudoku-extreme-mlp", "5028866"), ("sudoku-extreme-att", "6828034"),
                                          ("sudoku-extreme-hrm", "27275266")])
def test_params_last_line(cli, preset, want):
    code, out, _ = cli("params", "--preset", preset)
    lines = out.strip().splitlines()
    assert code == 0 and lines[-1] == want
    assert any("puzzle-embedding table" in ln for ln in lines)


def test_presets_lists_the_named_runs(cli):
    _, out, _ = cli("presets")
    for name in ("sudoku-extreme-mlp", "sudoku-extreme-att", "sudoku6-cpu", "sudoku9-cpu"):
        assert name in out


def test_run_records(run9):
    run, _ = run9
    cfg = json.loads((run / "config.json").read_text())
    assert {"model", "train", "git_commit", "environment", "command"} <= set(cfg)
    assert cfg["environment"]["torch"] and cfg["environment"]["device"] == "cpu"
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["final_eval"]["exact_accuracy"] >= 0
    for f in ("model.safetensors", "config.json", "train_state.pt"):
        assert (run / "checkpoint" / f).is_file()


def test_eval_json(cli, run9):
    run, data = run9
    code, out, _ = cli("eval", "--checkpoint", run, "--data", data, "--json", "--D", "5")
    m = json.loads(out)
    assert code == 0 and {"exact_accuracy", "cell_accuracy", "mean_halt_steps", "halting_precision"} <= set(m)
    assert len(m["exact_accuracy_by_step"]) == 5  # D beyond the training N_sup = 2
    assert sum(v["n"] for v in m["exact_accuracy_by_rating"].values()) == m["n"] == 4  # Sudoku ratings


@pytest.mark.parametrize("form", ["flat", "zeros", "grid", "file"])
def test_solve_json(cli, run9, tmp_path, form):
    run, _ = run9
    text = {"flat": PUZZLE, "zeros": PUZZLE.replace(".", "0"), "file": PUZZLE,
            "grid": "\n".join(PUZZLE[r * 9:r * 9 + 9] for r in range(9))}[form]
    arg = text
    if form == "file":
        arg = tmp_path / "p.txt"
        arg.write_text(text + "\n")
    code, out, _ = cli("solve", "--checkpoint", run, "--json", arg)
    d = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and len(d["solution"]) == 81 and isinstance(d["valid"], bool)
    assert {"steps", "confidence", "obeys_rules", "keeps_givens"} <= set(d)


def test_solve_trace_shows_every_step(cli, run9):
    code, out, _ = cli("solve", "--checkpoint", run9[0], "--json", "--trace", "--no-halt", "--D", "3", PUZZLE)
    d = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and d["steps"] == 3 and len(d["trace"]) == 3
    final = [int(c) for c in d["solution"]]
    assert d["trace"][-1]["valid"] == d["valid"]
    # wrong cells are counted against the unique solution found by trm's exact solver
    from trm.data.sudoku import parse_puzzle, solve
    truth = solve(parse_puzzle(PUZZLE), 9)[0][0]
    assert d["trace"][-1]["wrong_cells"] == sum(a != b for a, b in zip(final, truth))
    code, out, _ = cli("solve", "--checkpoint", run9[0], "--trace", "--no-halt", "--D", "2", PUZZLE)
    assert code == 0 and "step  2: q_halt" in out


@pytest.mark.parametrize("puzzle, words", [
    (PUZZLE[:80], "80 cells"),
    (PUZZLE[:10] + "?" + PUZZLE[11:], "stray character"),
    ("44" + PUZZLE[2:], "two 4s in row 1"),
])
def test_solve_refuses_bad_puzzles(cli, run9, puzzle, words):
    code, out, err = cli("solve", "--checkpoint", run9[0], puzzle)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_refuses_missing_truncated_and_mismatched_checkpoints(cli, run9, tmp_path):
    code, _, err = cli("solve", "--checkpoint", tmp_path / "nothing", PUZZLE)
    assert code == 2 and len(err.strip().splitlines()) == 1
    broken = tmp_path / "broken"
    subprocess.run(["cp", "-r", str(run9[0]), str(broken)], check=True)
    w = broken / "checkpoint" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    code, _, err = cli("solve", "--checkpoint", broken, PUZZLE)
    assert code == 2 and len(err.strip().splitlines()) == 1
    four = build_sudoku(tmp_path / "four", size=4, generate=10, test=3, workers=1, progress=False)
    code, _, err = cli("eval", "--checkpoint", run9[0], "--data", four)
    assert code == 2 and "does not fit the model" in err


@pytest.mark.parametrize("argv, words", [
    (["train", "--preset", "nope"], "unknown preset"),
    (["train", "--preset", "sudoku6-cpu", "--data", "/no/such/data"], "no dataset"),
    (["data", "sudoku", "--out", "x"], "no source"),
    (["data", "sudoku", "--out", "x", "--list", "/no/such/list"], "no such file"),
    (["eval", "--checkpoint", "/no/run", "--data", "/no/data"], "error"),
    (["train", "--preset", "sudoku6-cpu", "--bogus", "1"], "unrecognized arguments: --bogus"),
    (["train", "--preset", "sudoku6-cpu", "--lr", "fast"], "invalid float value"),
    (["data", "sudoku", "--out", "x", "--generate", "5", "--train", "-1"], "--train must be >= 0"),
])
def test_one_line_errors(cli, argv, words):
    code, _, err = cli(*argv)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1


def test_train_refuses_an_existing_run_and_resumes_it(cli, run9):
    run, data = run9
    code, _, err = cli("train", "--preset", "sudoku9-cpu", "--data", data, "--out", run, *TINY)
    assert code == 2 and "--resume" in err
    code, out, _ = cli("train", "--resume", run, "--steps", "3", "--quiet")
    assert code == 0 and "resuming" in out and "step 3" in out


def test_help_shows_each_fields_source_comment_and_default(cli):
    code, out, _ = cli("train", "--help")
    text = " ".join(out.split())  # argparse wraps help lines at the terminal width
    assert code == 0
    assert "--lr_min_ratio FLOAT, --lr-min-ratio FLOAT cosine floor as a fraction of lr (1.0 = constant after " \
           "warmup, as published) (default 1.0)" in text
    # a comment continued on the next line (TrainConfig.init_from) is read whole
    assert "its architecture; not its puzzle embeddings, which belong to its own dataset's identifiers) " \
           "(default )" in text
    assert "--d INT hidden size (default 512)" in text and "--lr FLOAT peak learning rate, reached after the warm-up (default 0.0001)" in text
    code, out, _ = cli("params", "--help")
    assert code == 0 and "--N_sup INT, --N-sup INT supervision steps (the most a sample runs in training; all of them in eval) (default 16)" in " ".join(out.split())


@dataclass
class _Commented:
    """A docstring: not a field comment."""
    a: int = 1             # the first
                           # and its second line
    b: str = "x"
    # a comment of its own, at the fields' indentation: not b's
    c: float = 0.5         # about c
    # not c's either
    d: tuple = field(default=(1,  # inside the default
                              2))  # after it

    def method(self):
        e: int = 3  # a local, not a field
        return e


def test_field_comments_read_continuations_and_nothing_else(monkeypatch):
    assert field_comments(_Commented) == {"a": "the first and its second line", "c": "about c",
                                          "d": "inside the default after it"}
    assert field_comments(TrainConfig)["time_budget"].endswith("fitted to the steps that the budget allows")

    def no_source(obj):
        raise OSError("could not get source code")
    monkeypatch.setattr("inspect.getsource", no_source)
    assert field_comments(ModelConfig) == {}
    parser = argparse.ArgumentParser()
    add_field_flags(parser, ModelConfig, "model")
    assert "(default 512)" in parser.format_help() and "hidden size" not in parser.format_help()


def test_the_entry_point_and_the_names_tests_import_resolve():
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    module, name = re.search(r'^trm = "(.+)"$', pyproject, re.M).group(1).split(":")
    assert getattr(importlib.import_module(module), name) is main
    from trm.cli import shared_data_root
    from trm.data.recipes import shared_data_root as owner
    assert shared_data_root is owner


def test_console_script_runs():
    r = subprocess.run([sys.executable, "-m", "trm.cli", "solve", "--checkpoint", "/no/run", PUZZLE],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("trm: error:") and "Traceback" not in r.stderr


# --- bad values refused before work starts (config validation, test-time flags, data that fits) -------------
@pytest.mark.parametrize("flag, value, words", [
    ("--batch_size", "0", "batch_size must be >= 1 (got 0)"),
    ("--heads", "0", "heads must be >= 1 (got 0)"),
    ("--expansion", "0", "expansion must be > 0 (got 0.0)"),
    ("--log_every", "0", "log_every must be >= 1 (got 0)"),
    ("--checkpoint_every", "0", "checkpoint_every must be >= 1 (got 0)"),
    ("--eval_batch_size", "0", "eval_batch_size must be >= 1 (got 0)"),
    ("--steps", "-5", "steps must be >= 1 (got -5)"),
    ("--ema", "2", "ema must be in [0, 1) (0 = off) (got 2.0)"),
    ("--lr_min_ratio", "-2", "lr_min_ratio must be in [0, 1] (a fraction of lr) (got -2.0)"),
    ("--lr_decay_fraction", "0", "lr_decay_fraction must be in (0, 1] (a fraction of the schedule) (got 0.0)"),
])
def test_train_refuses_bad_values_before_loading_anything(cli, tmp_path, flag, value, words):
    code, _, err = cli("train", "--preset", "sudoku4-cpu", "--data", tmp_path / "none", "--out", tmp_path / "r",
                       "--quiet", flag, value)
    assert code == 2 and err == f"trm: error: {words}\n"  # not "no dataset at ...": checked first
    assert not (tmp_path / "r").exists()


def test_train_refuses_a_batch_that_cannot_fit(cli, sort_data, tmp_path, monkeypatch):
    monkeypatch.setattr("trm.model.memory.available_bytes", lambda device: 4 * 2**30)
    code, _, err = cli("train", "--preset", "sudoku4-cpu", "--data", sort_data, "--out", tmp_path / "r", "--quiet",
                       "--batch_size", "100000")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "batch_size 100000 needs about" in err and "4.0 GiB available: use a smaller --batch_size" in err


@pytest.mark.parametrize("argv, words", [
    (["solve", "--D", "-4", PUZZLE], "--D must be >= 1 (got -4)"),
    (["solve", "--D", "0", PUZZLE], "--D must be >= 1 (got 0)"),  # used to mean the default, silently
    (["eval", "--D", "0"], "--D must be >= 1 (got 0)"),
    (["eval", "--limit", "-1"], "--limit must be >= 0 (0 = all) (got -1)"),
    (["eval", "--batch-size", "0"], "--batch-size must be >= 1 (got 0)"),
    (["sweep", "--limit", "-3"], "--limit must be >= 0 (0 = all) (got -3)"),  # reported n = -3
    (["sweep", "--memory-gb", "0"], "--memory-gb must be > 0"),
    (["analyze", "--D", "0"], "--D must be >= 1 (got 0)"),
])
def test_test_time_flags_refuse_non_positive_values(cli, run9, tmp_path, argv, words):
    run, data = run9
    extra = [] if argv[0] == "solve" else ["--data", data]
    if argv[0] in ("sweep", "analyze"):
        extra += ["--out", tmp_path / "out", "--quiet"]
    code, _, err = cli(argv[0], "--checkpoint", run, *extra, *argv[1:])
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def maze_shaped_like_run9(tmp_path_factory):
    """A dataset of 81 cells and 11 tokens, as the 9x9 Sudoku checkpoint's, that says it holds mazes."""
    from trm.data.format import write_dataset
    rng = np.random.default_rng(0)
    x = rng.integers(2, 7, (4, 81)).astype(np.uint8)
    split = {"inputs": x, "labels": x, "puzzle_ids": np.zeros(4, np.int32)}
    return write_dataset(tmp_path_factory.mktemp("maze") / "maze9",
                         {"task": "maze", "size": 9, "seq_len": 81, "vocab_size": 11, "num_puzzle_ids": 1},
                         {"train": split, "test": split})


@pytest.mark.parametrize("command", ["eval", "solve", "sweep", "analyze"])
def test_data_of_another_task_is_refused(cli, run9, maze_shaped_like_run9, tmp_path, command):
    extra = {"solve": ["--index", "0"], "eval": ["--quiet"], "sweep": ["--out", tmp_path / "out", "--quiet"],
             "analyze": ["--out", tmp_path / "out", "--quiet"]}[command]
    code, _, err = cli(command, "--checkpoint", run9[0], "--data", maze_shaped_like_run9, *extra)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "holds maze 9x9 puzzles and does not fit the model, trained on sudoku 9x9" in err
    assert not (tmp_path / "out").exists()


def test_data_fit_falls_back_to_the_training_datasets_meta(cli, run9, maze_shaped_like_run9, tmp_path):
    old = tmp_path / "old"
    subprocess.run(["cp", "-r", str(run9[0]), str(old)], check=True)
    config = old / "checkpoint" / "config.json"
    cfg = json.loads(config.read_text())
    del cfg["data_meta"]  # a run recorded without its dataset's meta: read the training dataset's meta.json
    config.write_text(json.dumps(cfg))
    code, _, err = cli("eval", "--checkpoint", old, "--data", maze_shaped_like_run9)
    assert code == 2 and "trained on sudoku 9x9" in err
    code, _, _ = cli("eval", "--checkpoint", old, "--data", run9[1], "--quiet", "--limit", "1")
    assert code == 0


def test_solve_refuses_data_of_another_size(cli, run9, tmp_path):
    four = build_sudoku(tmp_path / "four", size=4, generate=10, test=3, workers=1, progress=False)
    code, _, err = cli("solve", "--checkpoint", run9[0], "--data", four, "--index", "0")
    assert code == 2 and "does not fit the model" in err and len(err.strip().splitlines()) == 1


def test_sweep_cache_is_keyed_by_the_checkpoint(cli, run9, tmp_path):
    from safetensors.torch import load_file, save_file
    run, data = run9
    other = tmp_path / "other"
    subprocess.run(["cp", "-r", str(run), str(other)], check=True)
    w = other / "checkpoint" / "model.safetensors"
    weights = load_file(w)
    weights["q_head.bias"] = weights["q_head.bias"] + 1.0  # another model of the same shape
    save_file(weights, w)
    grid = ["--data", data, "--K", "1", "--sigma", "0", "--D", "2", "--seeds", "0", "--limit", "2", "--quiet"]

    def q_of(ckpt, out):
        assert cli("sweep", "--checkpoint", ckpt, "--out", out, *grid)[0] == 0
        return np.load(out / "runs" / "deterministic.npz")["q"]

    first = q_of(run, tmp_path / "shared")
    second = q_of(other, tmp_path / "shared")  # same --out: must not be served the first checkpoint's runs
    assert np.allclose(second, q_of(other, tmp_path / "fresh")) and not np.allclose(first, second)
    source = json.loads((tmp_path / "shared" / "sweep.json").read_text())["source"]
    assert source["checkpoint"].startswith(str(other.resolve())) and source["split"] == "test"


@pytest.mark.parametrize("command", ["sweep", "analyze"])
def test_plots_without_matplotlib_are_refused_before_the_compute(cli, run9, tmp_path, monkeypatch, command):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    code, _, err = cli(command, "--checkpoint", run9[0], "--data", run9[1], "--out", tmp_path / "out", "--quiet")
    assert code == 2 and "pip install matplotlib" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_closed_output_pipe_ends_quietly():
    p = subprocess.Popen([sys.executable, "-m", "trm.cli", "presets"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.close()  # `trm presets | head` with head already gone
    err = p.stderr.read().decode()
    assert p.wait() in (0, 141) and err == ""  # was "trm: error: BrokenPipeError: ..." or a traceback
