"""Maze data: the generator's mazes are what it claims, the shortest-path check, dihedral transforms, CSV."""

import numpy as np
import pytest

from trm.cli import main
from trm.data import augmenter, load_dataset, validator
from trm.data import maze
from trm.data.dihedral import INVERSE, augment_square, dihedral


def grid(rows: list[str]) -> np.ndarray:
    return maze.encode_text("".join(rows))


def generate(style, seed=3):
    return maze.generate_mazes(40, size=10, style=style, wall_density=0.35, loop_prob=0.1, min_path=14, seed=seed,
                               batch=512, progress=False)


@pytest.fixture(scope="module", params=["random", "carved"])
def small(request):
    return generate(request.param)


@pytest.mark.parametrize("size", [9, 10, 30])
def test_carved_maze_is_a_spanning_tree(size):
    rng = np.random.default_rng(size)
    for _ in range(5):
        open_ = maze.carve(size, rng)
        # a tree on the cells: connected, and open cells = cells + (cells - 1) passages
        cells = open_.sum()
        n_cells = cells - (cells - 1) // 2
        src = np.zeros_like(open_)
        src[tuple(np.argwhere(open_)[0])] = True
        assert (maze.bfs_distances(open_[None], src[None])[0] >= 0).sum() == cells
        assert cells == 2 * n_cells - 1 and n_cells == ((size + 1) // 2) ** 2
        loopy = maze.carve(size, rng, loop_prob=1.0)
        assert loopy.sum() > cells  # every inner wall between neighbouring cells opened


def test_generated_mazes_have_long_shortest_paths(small):
    inputs, labels, lengths, unique = small
    assert inputs.shape == labels.shape == (40, 100)
    for q, a, n, u in zip(inputs, labels, lengths, unique):
        assert (q == maze.START).sum() == 1 and (q == maze.GOAL).sum() == 1
        length, is_unique = maze.path_stats(q, 10)
        assert length == n > 14 and is_unique == u
        assert maze.is_shortest_path(q, a, 10)
        assert (a == maze.PATH).sum() == n - 1  # path cells between S and G


@pytest.mark.parametrize("style", ["random", "carved"])
def test_generator_is_seeded(style):
    small, again, other = generate(style), generate(style), generate(style, seed=4)
    assert np.array_equal(small[0], again[0]) and np.array_equal(small[1], again[1])
    assert not np.array_equal(small[0], other[0])


def test_impossible_threshold_is_refused():
    with pytest.raises(ValueError, match="longer than"):
        maze.generate_mazes(1, size=4, min_path=16, progress=False)
    with pytest.raises(ValueError, match="only 0"):
        maze.generate_mazes(1, size=6, style="random", wall_density=0.9, min_path=20, batch=64, progress=False)


def test_shortest_path_check_and_uniqueness():
    q = grid(["S  ",
              "   ",
              "  G"])
    assert maze.path_stats(q, 3) == (4, False)  # six shortest paths in an open 3x3
    along_top = grid(["Soo",
                      "  o",
                      "  G"])
    down_left = grid(["S  ",
                      "o  ",
                      "ooG"])
    zigzag = grid(["So ",
                   " oo",
                   "  G"])
    for a in (along_top, down_left, zigzag):
        assert maze.is_shortest_path(q, a, 3)
    assert not maze.is_shortest_path(q, grid(["So ", "  o", "  G"]), 3)  # broken chain
    assert not maze.is_shortest_path(q, grid(["Soo", " oo", "  G"]), 3)  # an extra cell
    assert not maze.is_shortest_path(q, grid(["So#", "  o", "  G"]), 3)  # changes the maze
    corridor = grid(["S#G",
                     " # ",
                     "   "])
    assert maze.path_stats(corridor, 3) == (6, True)
    assert maze.path_stats(grid(["S#G", "## ", "   "]), 3) == (-1, False)


def test_dihedral_transforms_and_inverses():
    g = np.arange(12).reshape(1, 3, 4)
    sq = np.arange(16).reshape(4, 4)
    outs = {dihedral(sq, k).tobytes() for k in range(8)}
    assert len(outs) == 8  # all eight symmetries differ
    for k in range(8):
        assert np.array_equal(dihedral(dihedral(sq, k), INVERSE[k]), sq)
        assert np.array_equal(dihedral(dihedral(g, k), INVERSE[k]), g)
    with pytest.raises(ValueError):
        dihedral(sq, 8)


def test_augmentation_keeps_mazes_valid(small):
    inputs, labels, _, _ = small
    x, y = augment_square(inputs, labels, 10, np.random.default_rng(0))
    assert not np.array_equal(x, inputs)
    for q, a in zip(x, y):
        assert maze.is_shortest_path(q, a, 10)


def test_csv_round_trip_and_dataset(tmp_path, small):
    inputs, labels, lengths, _ = small
    path = tmp_path / "mazes.csv"
    with open(path, "w") as f:
        f.write("source,question,answer,rating\n")
        for q, a, n in zip(inputs, labels, lengths):
            f.write(f"gen,{maze.to_text(q, 10).replace(chr(10), '')},{maze.to_text(a, 10).replace(chr(10), '')},{n}\n")
    Q, A, R = maze.read_csv(path)
    assert np.array_equal(Q, inputs) and np.array_equal(A, labels) and np.array_equal(R, lengths)
    out = maze.build_maze(tmp_path / "ds", csvs=[path], test=10, train=0, progress=False)
    ds = load_dataset(out)
    assert len(ds["test"]) == 10 and len(ds["train"]) == 30 and ds.meta["vocab_size"] == 6
    aug = augmenter(ds.meta)
    x, y = aug(np.asarray(ds["train"].inputs), np.asarray(ds["train"].labels), np.random.default_rng(1))
    valid = validator(ds.meta)
    assert valid(x, y).all()
    broken = y.copy()
    broken[:, :] = np.where(broken == maze.PATH, maze.OPEN, broken)
    assert not valid(x, broken).any()


def test_bad_csv_is_refused(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("source,question,answer,rating\nx,S?G#,SoG#,1\n")
    with pytest.raises(ValueError, match="unexpected character"):
        maze.read_csv(bad)


def test_cli_builds_and_refuses(tmp_path, capsys):
    assert main(["data", "maze", "--out", str(tmp_path / "m"), "--size", "8", "--min-path", "10",
                 "--train", "20", "--test", "5", "--quiet"]) == 0
    assert "unique shortest path" in capsys.readouterr().out
    ds = load_dataset(tmp_path / "m")
    assert ds.meta["task"] == "maze" and len(ds["train"]) == 20 and ds.seq_len == 64
    assert main(["data", "maze", "--out", str(tmp_path / "n"), "--size", "5", "--min-path", "30", "--quiet"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "longer than" in err[0]
