import numpy as np
import pytest
import torch

from trm.data.format import write_dataset

# one thread: the tiny models here gain nothing from two, and two threads on a loaded 2-core machine wait on
# each other (a test that takes 2 s on idle cores took over 60 s beside a training run)
torch.set_num_threads(1)


def make_sort_dataset(path, n_train=256, n_test=64, seq_len=8, vocab=6, seed=0):
    """A toy task in the common format: the label is the sorted input (tokens 2..vocab-1)."""
    rng = np.random.default_rng(seed)

    def split(n):
        x = rng.integers(2, vocab, (n, seq_len)).astype(np.uint8)
        return {"inputs": x, "labels": np.sort(x, axis=1), "puzzle_ids": rng.integers(0, 3, n).astype(np.int32)}

    return write_dataset(path, {"task": "toy", "seq_len": seq_len, "vocab_size": vocab, "num_puzzle_ids": 3},
                         {"train": split(n_train), "test": split(n_test)})


@pytest.fixture
def sort_data(tmp_path):
    return make_sort_dataset(tmp_path / "sort")


@pytest.fixture
def cli(capsys):
    """Run `trm ARGS...` in-process: returns (exit code, stdout, stderr)."""
    from trm.cli import main

    def run(*argv):
        code = main([str(a) for a in argv])
        out = capsys.readouterr()
        return code, out.out, out.err
    return run


# a model as small as the CLI allows: the commands are under test, not learning
TINY = ["--d", "16", "--heads", "2", "--n", "1", "--T", "1", "--N_sup", "2", "--puzzle_emb_dim", "16",
        "--batch_size", "8", "--eval_every", "0", "--dtype", "fp32", "--quiet"]


def tiny_sudoku_run(tmp_path_factory, size: int, generate: int, test: int):
    """A Sudoku dataset from the generator and a 2-step checkpoint of the sudoku{size}-cpu preset on it."""
    from trm.cli import main
    from trm.data.sudoku import build_sudoku
    d = tmp_path_factory.mktemp(f"sudoku{size}")
    data = build_sudoku(d / "data", size=size, generate=generate, test=test, workers=1, progress=False)
    assert main(["train", "--preset", f"sudoku{size}-cpu", "--data", str(data), "--out", str(d / "run"),
                 "--steps", "2", *TINY]) == 0
    return d / "run", data


def tiny_maze_run(tmp_path_factory):
    """A 9x9 maze dataset and a 2-step checkpoint of the maze15-cpu preset on it."""
    from trm.cli import main
    d = tmp_path_factory.mktemp("maze9")
    assert main(["data", "maze", "--out", str(d / "data"), "--size", "9", "--min-path", "14", "--train", "16",
                 "--test", "3", "--quiet"]) == 0
    assert main(["train", "--preset", "maze15-cpu", "--data", str(d / "data"), "--out", str(d / "run"),
                 "--steps", "2", *TINY]) == 0
    return d / "run", d / "data"


def tiny_arc_tasks():
    """Two small ARC tasks (flip left-right, recolour 1 -> 2), with their test outputs."""
    def pair(x, f):
        return {"input": x, "output": f(x)}
    flip = lambda g: [row[::-1] for row in g]  # noqa: E731
    recolour = lambda g: [[2 if v == 1 else v for v in row] for row in g]  # noqa: E731
    grids = [[[1, 0, 0], [0, 3, 0]], [[0, 1], [4, 1], [1, 1]], [[5, 1, 1, 0]], [[1], [0], [7]]]
    return {"t_flip": {"train": [pair(g, flip) for g in grids[:3]], "test": [pair(grids[3], flip)]},
            "t_recolour": {"train": [pair(g, recolour) for g in grids[1:]], "test": [pair(grids[0], recolour)]}}


def tiny_arc_run(tmp_path_factory):
    """An ARC dataset built from two made-up tasks (trained on as the training and the evaluation collection)
    and a 2-step checkpoint of the arc1-cpu preset on it; returns (run, data, the evaluation task's JSON)."""
    import json
    from trm.cli import main
    from trm.data import arc
    d = tmp_path_factory.mktemp("arc")
    tasks = tiny_arc_tasks()
    for name, tid in (("training", "t_flip"), ("evaluation", "t_recolour")):
        t = tasks[tid]
        (d / f"arc-agi_{name}_challenges.json").write_text(json.dumps(
            {tid: {"train": t["train"], "test": [{"input": p["input"]} for p in t["test"]]}}))
        (d / f"arc-agi_{name}_solutions.json").write_text(json.dumps({tid: [p["output"] for p in t["test"]]}))
    data = arc.build_arc(d / "data", root=d, train_collections=("training",), test_collections=("evaluation",),
                         augments=2, seed=0, progress=False)
    tiny = ["--d", "8", "--heads", "1", "--n", "1", "--T", "1", "--N_sup", "1", "--puzzle_emb_dim", "8",
            "--batch_size", "4", "--eval_every", "0", "--dtype", "fp32", "--quiet"]
    assert main(["train", "--preset", "arc1-cpu", "--data", str(data), "--out", str(d / "run"), "--steps", "2",
                 *tiny]) == 0
    return d / "run", data, tasks["t_recolour"]
