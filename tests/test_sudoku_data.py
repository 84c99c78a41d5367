"""Sudoku data: parsing and its refusals, the solver (on the real hard lists too), minimal-puzzle generation,
validity-preserving augmentation, and the dataset builder (split, subsampling, dedup, CSV)."""

import csv
import itertools

import numpy as np
import pytest

from trm.data.format import load_dataset
from trm.data.recipes import shared_data_root
from trm.data.sudoku import (BOX, augment, build_sudoku, count_solutions, decode, encode, generate_minimal,
                             is_solution, keeps_givens, parse_puzzle, read_puzzle_list, solve, sudoku_pools)

PUZZLE = "4.....8.5.3..........7......2.....6.....8.4......1.......6.3.7.5..2.....1.4......"
SUDOKU_DIR = shared_data_root() / "sudoku"
needs_shared = pytest.mark.skipif(not SUDOKU_DIR.is_dir(), reason=f"shared Sudoku lists not found at {SUDOKU_DIR}")


# --- parsing --------------------------------------------------------------------------------------------
def test_parse_accepts_dots_zeros_and_grids():
    a = parse_puzzle(PUZZLE)
    assert a.shape == (81,) and (a > 0).sum() == 17
    assert np.array_equal(parse_puzzle(PUZZLE.replace(".", "0")), a)
    grid = "\n".join(" ".join(PUZZLE[r * 9:r * 9 + 9]) for r in range(9))
    assert np.array_equal(parse_puzzle(grid), a)
    assert parse_puzzle("1...\n..1.\n.1..\n...1".replace("\n", "")).shape == (16,)


@pytest.mark.parametrize("text, words", [
    (PUZZLE[:80], "found 80 cells"),
    (PUZZLE[:10] + "?" + PUZZLE[11:], "stray character '?'"),
    ("44" + PUZZLE[2:], "two 4s in row 1"),
    ("5" + "." * 15, "out of range"),
])
def test_parse_refuses_bad_input(text, words):
    with pytest.raises(ValueError, match=words):
        parse_puzzle(text)


# --- solver ---------------------------------------------------------------------------------------------
def check_solved(puzzle, size):
    sols, guesses = solve(puzzle, size, limit=2)
    assert len(sols) == 1, f"expected a unique solution, found {len(sols)}"
    assert is_solution(sols[0], size) and keeps_givens(puzzle, sols[0])
    return guesses


@needs_shared
@pytest.mark.parametrize("pool", ["17clue", "hard"])
def test_solver_on_the_shared_lists(pool):
    rng = np.random.default_rng(0)
    for path in sudoku_pools(SUDOKU_DIR)[pool]:
        texts = read_puzzle_list(path)
        ratings = [check_solved(parse_puzzle(texts[i]), 9) for i in rng.choice(len(texts), 15, replace=False)]
        if "forum_hardest" in path.name:  # every one of these needs search: the rating must see it
            assert min(ratings) > 0


def test_solver_counts_solutions_and_refuses_impossible_grids():
    assert count_solutions(np.zeros(81, np.int8), 9) == 2        # an empty grid: many, stops at the limit
    assert count_solutions(np.zeros(16, np.int8), 4, limit=300) == 288  # all 4x4 Sudoku grids
    # no two givens clash, yet no digit fits cell 1: 1-8 in its row, 9 in its column
    grid = np.zeros(81, np.int8)
    grid[1:9] = np.arange(1, 9)
    grid[9 * 4] = 9
    assert count_solutions(grid, 9) == 0


# --- generator ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [4, 6, 9])
def test_generated_puzzles_are_minimal(size):
    rng = np.random.default_rng(size)
    puzzle, solution = generate_minimal(size, rng)
    assert is_solution(solution, size) and keeps_givens(puzzle, solution)
    assert count_solutions(puzzle, size) == 1
    for cell in np.flatnonzero(puzzle):  # removing any given breaks uniqueness
        fewer = puzzle.copy()
        fewer[cell] = 0
        assert count_solutions(fewer, size) == 2


# --- augmentation ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [4, 6, 9])
def test_augmentation_keeps_puzzles_valid(size):
    rng = np.random.default_rng(1)
    puzzle, solution = generate_minimal(size, rng)
    B = 200
    x, y = np.tile(encode(puzzle), (B, 1)), np.tile(encode(solution), (B, 1))
    ax, ay = augment(x, y, size, rng)
    assert len({r.tobytes() for r in ay}) > B // 2  # really transforms, a new transform per row
    for i in range(B):
        q, s = decode(ax[i]), decode(ay[i])
        assert is_solution(s, size), "augmented solution breaks a rule"  # a 6x6 transpose would fail here
        assert keeps_givens(q, s) and (q > 0).sum() == (puzzle > 0).sum()
    for i in range(5):  # and the augmented puzzle has that solution as its only one
        assert np.array_equal(solve(decode(ax[i]), size, limit=2)[0][0], decode(ay[i]))


@pytest.mark.parametrize("size", [4, 6, 9])
def test_transpose_only_with_square_boxes(size):
    # two givens in one row: after row/column shuffles they share a row, after a transpose a column
    x = np.ones((400, size * size), np.uint8)
    x[:, 0], x[:, 1] = 2, 3
    ax, _ = augment(x, x.copy(), size, np.random.default_rng(3))
    rows = [tuple(np.flatnonzero(r > 1) // size) for r in ax]
    same_row = sum(r[0] == r[1] for r in rows)
    if BOX[size][0] == BOX[size][1]:
        assert 100 < same_row < 300  # transposed about half the time
    else:
        assert same_row == 400  # 6x6: 2x3 boxes would become 3x2


# --- building datasets ----------------------------------------------------------------------------------
def write_list(path, puzzles):
    path.write_text("# a comment line\n" + "\n".join(puzzles) + "\n")
    return path


@pytest.fixture(scope="module")
def small_lists(tmp_path_factory):
    """Two lists of real 17-clue puzzles that share 5 puzzles (generated ones when the shared data is absent)."""
    d = tmp_path_factory.mktemp("lists")
    if SUDOKU_DIR.is_dir():
        texts = read_puzzle_list(SUDOKU_DIR / "puzzles2_17_clue")[:60]
    else:
        rng = np.random.default_rng(0)
        texts = ["".join(map(str, generate_minimal(9, rng)[0])) for _ in range(60)]
    return write_list(d / "a.txt", texts[:35]), write_list(d / "b.txt", texts[30:]), texts


def test_build_is_seeded_deduplicated_and_split_cleanly(tmp_path, small_lists):
    a, b, texts = small_lists
    ds_dir = build_sudoku(tmp_path / "one", lists=[a, b], test=10, seed=3, progress=False)
    ds = load_dataset(ds_dir)
    assert ds.meta["duplicates"] == 5 and len(ds["train"]) == 50 and len(ds["test"]) == 10
    train, test = ds["train"], ds["test"]
    assert not {r.tobytes() for r in train.inputs} & {r.tobytes() for r in test.inputs}
    for split in (train, test):
        for q, s in zip(split.inputs, split.labels):
            assert is_solution(decode(s), 9) and keeps_givens(decode(q), decode(s))
    again = load_dataset(build_sudoku(tmp_path / "two", lists=[a, b], test=10, seed=3, progress=False))
    assert np.array_equal(again["test"].inputs, test.inputs) and np.array_equal(again["train"].labels, train.labels)
    other = load_dataset(build_sudoku(tmp_path / "three", lists=[a, b], test=10, seed=4, progress=False))
    assert not np.array_equal(other["test"].inputs, test.inputs)
    sub = load_dataset(build_sudoku(tmp_path / "four", lists=[a, b], test=10, train=20, seed=3, progress=False))
    assert np.array_equal(sub["test"].inputs, test.inputs) and len(sub["train"]) == 20
    assert {r.tobytes() for r in sub["train"].inputs} <= {r.tobytes() for r in train.inputs}
    sub2 = load_dataset(build_sudoku(tmp_path / "five", lists=[a, b], test=10, train=20, seed=3, progress=False))
    assert np.array_equal(sub2["train"].inputs, sub["train"].inputs)


def test_build_refuses_to_overwrite_and_bad_splits(tmp_path, small_lists):
    a, _, _ = small_lists
    out = build_sudoku(tmp_path / "ds", lists=[a], test=5, progress=False)
    with pytest.raises(Exception, match="exists"):
        build_sudoku(out, lists=[a], test=5, progress=False)
    with pytest.raises(ValueError, match="--train"):
        build_sudoku(tmp_path / "x", lists=[a], test=5, train=1000, progress=False)
    with pytest.raises(ValueError, match="--test"):
        build_sudoku(tmp_path / "y", lists=[a], test=35, progress=False)


def test_csv_round_trip(tmp_path, small_lists):
    a, _, _ = small_lists
    ds = load_dataset(build_sudoku(tmp_path / "lists", lists=[a], test=5, seed=0, progress=False))
    path = tmp_path / "extreme.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["source", "question", "answer", "rating"])
        for split in ("train", "test"):
            s = ds[split]
            for q, y, r in zip(s.inputs, s.labels, s.extras["ratings"]):
                w.writerow(["mine", "".join(map(str, decode(q))).replace("0", "."), "".join(map(str, decode(y))), r])
    back = load_dataset(build_sudoku(tmp_path / "csv", csvs=[path], test=5, seed=0, progress=False))
    rows = lambda d: sorted((q.tobytes(), y.tobytes(), int(r)) for s in ("train", "test")  # noqa: E731
                            for q, y, r in zip(d[s].inputs, d[s].labels, d[s].extras["ratings"]))
    assert rows(back) == rows(ds)
    bad = tmp_path / "bad.csv"
    bad.write_text("question,answer\n1,2\n")
    with pytest.raises(ValueError, match="header"):
        build_sudoku(tmp_path / "bad", csvs=[bad], progress=False)


@pytest.mark.parametrize("size", [4, 6])
def test_generated_datasets(tmp_path, size):
    ds = load_dataset(build_sudoku(tmp_path / "gen", size=size, generate=40, test=10, seed=0, workers=1,
                                   progress=False))
    assert ds.meta["box"] == list(BOX[size]) and ds.seq_len == size * size and ds.vocab_size == size + 2
    assert len(ds["train"]) + len(ds["test"]) + ds.meta["duplicates"] == 40
    for q, y in itertools.islice(zip(ds["train"].inputs, ds["train"].labels), 10):
        assert count_solutions(decode(q), size) == 1 and np.array_equal(solve(decode(q), size)[0][0], decode(y))


def test_build_solves_only_what_the_splits_use(tmp_path, small_lists, monkeypatch):
    import trm.data.sudoku as sudoku
    a, b, _ = small_lists
    calls = []
    real = sudoku._solve_one
    monkeypatch.setattr(sudoku, "_solve_one", lambda args: calls.append(args) or real(args))
    ds = load_dataset(build_sudoku(tmp_path / "eval-only", lists=[a, b], test=7, train=0, progress=False))
    assert len(ds["train"]) == 0 and len(ds["test"]) == 7 and len(calls) == 7  # 7 of 60 solved
    calls.clear()
    load_dataset(build_sudoku(tmp_path / "sub", lists=[a, b], test=7, train=3, progress=False))
    assert len(calls) == 10


def test_build_replaces_puzzles_without_a_unique_solution(tmp_path, small_lists):
    _, _, texts = small_lists
    bad = ["." * 81, "12" + "." * 79]  # both have many solutions: skipped, and the next puzzles take their place
    path = write_list(tmp_path / "mixed.txt", texts[:10] + bad)
    ds = load_dataset(build_sudoku(tmp_path / "ds", lists=[path], test=5, seed=1, progress=False))
    assert ds.meta["rejected"] == 2 and len(ds["test"]) == 5 and len(ds["train"]) == 5
    ones = load_dataset(build_sudoku(tmp_path / "one", lists=[path], test=9, train=1, seed=1, progress=False))
    assert len(ones["test"]) == 9 and len(ones["train"]) == 1
