"""Maze data: the bit-packed searches agree with a plain BFS, the long-pair finder with brute force, the samplers
with the distributions they name, the labels with the tie-break, and the CSV reader and CLI refuse bad input."""

import json

import numpy as np
import pytest

from trm.cli import main
from trm.data import augmenter, load_dataset, maze, validator


def grid(rows: list[str]) -> np.ndarray:
    return maze.encode_text("".join(rows))


def one_hot(cells, shape):
    src = np.zeros((len(cells), *shape), dtype=bool)
    src.reshape(len(cells), -1)[np.arange(len(cells)), cells] = True
    return src


@pytest.fixture(scope="module")
def mazes():
    return maze.generate_mazes(60, size=12, min_path=25, seed=3, batch=512, progress=False)


def test_bit_bfs_matches_plain_bfs():
    rng = np.random.default_rng(0)
    open_ = rng.random((200, 13, 13)) >= 0.35
    cells = np.array([rng.choice(np.flatnonzero(o.reshape(-1))) for o in open_])
    src = one_hot(cells, (13, 13))
    dist = maze.bfs_distances(open_, src)
    reached, layers, last = maze.bfs_bits(maze.pack(open_), maze.pack(src))
    assert np.array_equal(maze.unpack(reached, 13), dist >= 0)
    assert np.array_equal(layers, dist.max((1, 2)))
    assert np.array_equal(maze.unpack(last, 13), dist == dist.max((1, 2))[:, None, None])
    limit = rng.integers(0, 8, 200)
    reached, layers, last = maze.bfs_bits(maze.pack(open_), maze.pack(src), limit=limit)
    assert np.array_equal(maze.unpack(reached, 13), (dist >= 0) & (dist <= limit[:, None, None]))
    assert np.array_equal(layers, np.minimum(limit, dist.max((1, 2))))


@pytest.mark.parametrize("size, min_path, density", [(6, 5, 0.2), (9, 12, 0.3), (12, 25, 0.4)])
def test_long_pairs_are_every_pair_farther_than_min_path(size, min_path, density):
    rng = np.random.default_rng(size)
    open_ = rng.random((120, size, size)) >= density
    g, src, partners = maze.long_pairs(open_, min_path, rng)
    found = {(int(i), int(s)): set(np.flatnonzero(maze.unpack(p, size))) for i, s, p in zip(g, src, partners)}
    expected = {}
    for b in range(len(open_)):
        cells = np.flatnonzero(open_[b])
        dist = maze.bfs_distances(np.broadcast_to(open_[b], (len(cells), size, size)), one_hot(cells, (size, size)))
        for c, d in zip(cells, dist.reshape(len(cells), -1)):
            if (d > min_path).any():
                expected[(b, int(c))] = set(np.flatnonzero(d > min_path))
    assert found == expected and len(expected) > 20


def test_generated_mazes_are_hard_and_labelled_by_the_tie_break(mazes):
    inputs, labels = mazes["inputs"], mazes["labels"]
    assert inputs.shape == labels.shape == (60, 144)
    assert ((inputs == maze.START).sum(1) == 1).all() and ((inputs == maze.GOAL).sum(1) == 1).all()
    q = inputs.reshape(-1, 12, 12)
    dist = maze.bfs_distances(q != maze.WALL, q == maze.START)
    length = np.where(q == maze.GOAL, dist, -1).max((1, 2))
    assert (length > 25).all() and np.array_equal(length, mazes["path_length"])
    assert maze.valid_paths(inputs, labels, 12).all()
    assert np.array_equal(labels, maze.label(inputs, 12))
    assert mazes["unique_shortest_path"].mean() < 0.5  # random walls leave several shortest paths


def test_generator_is_seeded():
    a, b, c = (maze.generate_mazes(10, size=10, min_path=14, seed=s, batch=256, progress=False)["inputs"]
               for s in (1, 1, 2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def _literal_rejection(n, size, min_path, density, seed):
    """Maze-Hard's recipe followed literally: random walls, S and G uniform among open cells, keep if long."""
    rng, out = np.random.default_rng(seed), []
    while len(out) < n:
        B = 4096
        open_ = rng.random((B, size, size)) >= rng.uniform(*density, B)[:, None, None]
        flat = open_.reshape(B, -1)
        s = np.where(flat, rng.random(flat.shape), -1).argmax(1)
        other = flat.copy()
        other[np.arange(B), s] = False
        g = np.where(other, rng.random(flat.shape), -1).argmax(1)
        d = maze.bfs_distances(open_, one_hot(s, (size, size))).reshape(B, -1)[np.arange(B), g]
        keep = (flat.sum(1) >= 2) & (d > min_path)
        out += list(d[keep])
    return np.array(out[:n], dtype=float)


def test_exact_sampler_matches_literal_rejection_and_default_differs():
    """The documented claims: `exact` is the literal-rejection distribution, the default (hard grids, each
    weighted alike) is another one, with shorter paths (grids with few long pairs count as much as rich ones)."""
    n, size, min_path, density = 800, 8, 14, (0.3, 0.5)
    literal = _literal_rejection(n, size, min_path, density, seed=0)
    exact = maze.generate_mazes(n, size=size, min_path=min_path, wall_density=density, exact=True, seed=1,
                                batch=1024, progress=False)
    default = maze.generate_mazes(n, size=size, min_path=min_path, wall_density=density, seed=1, batch=1024,
                                  progress=False)
    se = literal.std() * np.sqrt(2 / n)
    assert abs(exact["path_length"].mean() - literal.mean()) < 3 * se
    assert default["path_length"].mean() < literal.mean() - 6 * se
    assert exact["envelope_exceeded"] == 0 and 0 < exact["envelope"] <= 1


def test_impossible_requests_are_refused():
    with pytest.raises(ValueError, match="longer than"):
        maze.generate_mazes(1, size=4, min_path=15, progress=False)
    with pytest.raises(ValueError, match="lower --min-path"):
        maze.generate_mazes(1, size=6, wall_density=0.9, min_path=20, batch=64, progress=False)
    with pytest.raises(ValueError, match="LO:HI"):
        maze.parse_density("0.5:0.3")
    assert maze.parse_density("0.3:0.5") == (0.3, 0.5) and maze.parse_density("0.4") == 0.4


def test_tie_break_valid_paths_and_uniqueness():
    q = grid(["S  ",
              "   ",
              "  G"])
    # six shortest paths; walking back from G the rule prefers up, then left: G -> (1,2) -> (0,2) -> (0,1) -> S
    assert np.array_equal(maze.label(q[None], 3)[0], grid(["Soo", "  o", "  G"]))
    assert not maze.unique_shortest_paths(q[None], 3)[0]
    answers = [grid(r) for r in (["Soo", "  o", "  G"], ["S  ", "o  ", "ooG"], ["So ", " oo", "  G"],  # shortest
                                 ["So ", "  o", "  G"],    # broken chain
                                 ["Soo", " oo", "  G"],    # an extra cell
                                 ["So#", "  o", "  G"],    # changes the maze
                                 ["S  ", "   ", "  G"])]   # no path marked
    assert maze.valid_paths(np.stack([q] * 7), np.stack(answers), 3).tolist() == [True] * 3 + [False] * 4
    corridor = grid(["S#G", " # ", "   "])
    assert maze.unique_shortest_paths(corridor[None], 3)[0]
    walled = grid(["S#G", "## ", "   "])
    assert not maze.valid_paths(walled[None], walled[None], 3)[0]


def test_make_unique_leaves_one_shortest_path_of_the_same_length(mazes):
    inputs, labels = mazes["inputs"], mazes["labels"]
    assert not maze.unique_shortest_paths(inputs, 12).all()  # else this test checks nothing
    q = inputs.reshape(-1, 12, 12)
    open_ = q != maze.WALL
    starts, goals = (inputs == maze.START).argmax(1), (inputs == maze.GOAL).argmax(1)
    walled = maze.make_unique(open_, starts, goals, np.random.default_rng(0))
    assert not (walled & ~open_).any()  # walls only added
    path = (labels == maze.PATH).reshape(q.shape) | (q == maze.START) | (q == maze.GOAL)
    assert walled[path].all()  # the label's path stays open...
    new = np.where(walled, maze.OPEN, maze.WALL).astype(np.uint8).reshape(len(inputs), -1)
    new[np.arange(len(new)), starts], new[np.arange(len(new)), goals] = maze.START, maze.GOAL
    assert maze.unique_shortest_paths(new, 12).all()  # ...and is now the only shortest one,
    assert np.array_equal(maze.label(new, 12), np.where(new == maze.OPEN, labels, new))  # the same path, same length
    assert (~walled & open_).any()


def test_unique_path_generator_and_flag(tmp_path, capsys):
    g = maze.generate_mazes(40, size=12, min_path=25, unique_path=True, seed=3, batch=512, progress=False)
    assert g["unique_shortest_path"].all() and (g["path_length"] > 25).all()
    assert maze.valid_paths(g["inputs"], g["labels"], 12).all()
    out = tmp_path / "u"
    assert main(["data", "maze", "--out", str(out), "--size", "9", "--min-path", "14", "--train", "20",
                 "--test", "6", "--unique-path", "--quiet"]) == 0
    assert "100.0% with a unique shortest path" in capsys.readouterr().out
    assert load_dataset(out).meta["sources"][0]["unique_path"] is True
    assert main(["data", "maze", "--out", str(tmp_path / "c"), "--csv", str(out / "meta.json"),
                 "--unique-path", "--quiet"]) == 2
    assert "--unique-path" in capsys.readouterr().err


def test_augmentation_turns_and_relabels(mazes):
    inputs, labels = mazes["inputs"], mazes["labels"]
    x, y = maze.augment(inputs, labels, 12, np.random.default_rng(0))
    assert not np.array_equal(x, inputs)
    assert maze.valid_paths(x, y, 12).all() and np.array_equal(y, maze.label(x, 12))
    # the same mazes, as multisets of cells: each row is a turned copy of its original
    assert np.array_equal(np.sort(x, 1), np.sort(inputs, 1))


def test_csv_round_trip_and_splits(tmp_path, mazes):
    inputs, labels, lengths = mazes["inputs"], mazes["labels"], mazes["path_length"]
    maze.write_csv(tmp_path / "all.csv", inputs, labels, lengths)
    q, a, r = maze.read_csv(tmp_path / "all.csv")
    assert np.array_equal(q, inputs) and np.array_equal(a, labels) and np.array_equal(r, lengths)
    # one pool, split with the seed; a duplicate row is dropped
    maze.write_csv(tmp_path / "dup.csv", inputs[:5], labels[:5], lengths[:5])
    ds = load_dataset(maze.build_maze(tmp_path / "pool", csvs=[tmp_path / "all.csv", tmp_path / "dup.csv"], test=10,
                                      train=0, progress=False))
    assert len(ds["test"]) == 10 and len(ds["train"]) == 50 and ds.meta["sources"][0]["duplicates"] == 5
    assert ds.meta["augment"] == "dihedral" and ds.seq_len == 144 and ds.vocab_size == 6
    # Maze-Hard's own split: train.csv and test.csv; a maze in both stays on the test side
    maze.write_csv(tmp_path / "train.csv", inputs[:40], labels[:40], lengths[:40])
    maze.write_csv(tmp_path / "test.csv", inputs[35:], labels[35:], lengths[35:])
    ds = load_dataset(maze.build_maze(tmp_path / "given", csvs=[tmp_path / "train.csv"],
                                      test_csvs=[tmp_path / "test.csv"], progress=False))
    assert len(ds["train"]) == 35 and len(ds["test"]) == 25 and ds.meta["dropped_from_train"] == 5
    aug = augmenter(ds.meta)
    x, y = aug(np.asarray(ds["train"].inputs), np.asarray(ds["train"].labels), np.random.default_rng(1))
    assert validator(ds.meta)(x, y).all()


@pytest.mark.parametrize("row, message", [
    ("x,S?G#,SoG#,1", "unexpected character"),
    ("x,SSG#,SSG#,1", "one S and one G"),
    ("x,S G#,SoGo,1", "path cells marked"),
    ("x,S G,SoG,1", "square grid"),
])
def test_bad_csv_rows_are_refused_with_their_line(tmp_path, row, message):
    bad = tmp_path / "bad.csv"
    bad.write_text("source,question,answer,rating\n" + row + "\n")
    with pytest.raises(ValueError, match=f"bad.csv line 2: .*{message}"):
        maze.read_csv(bad)


def test_cli_builds_a_dataset_that_trains_and_refuses_bad_input(tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["data", "maze", "--out", str(out), "--size", "9", "--min-path", "14", "--train", "20",
                 "--test", "6", "--quiet"]) == 0
    assert "unique shortest path" in capsys.readouterr().out
    ds = load_dataset(out)
    assert ds.meta["task"] == "maze" and ds.meta["augment"] == "maze" and len(ds["train"]) == 20
    assert ds.seq_len == 81 and set(ds["test"].extras) == {"path_length", "unique_shortest_path"}
    x, y = augmenter(ds.meta)(np.asarray(ds["train"].inputs), np.asarray(ds["train"].labels),
                              np.random.default_rng(0))
    assert validator(ds.meta)(x, y).all()
    for argv, message in [(["--size", "5", "--min-path", "30"], "longer than"),
                          (["--wall-density", "high"], "wall density"),
                          (["--csv", str(tmp_path / "missing.csv")], "no such file"),
                          (["--size", "70"], "--size must be"),
                          ([], "already exists")]:
        target = out if message == "already exists" else tmp_path / "x"
        assert main(["data", "maze", "--out", str(target), "--quiet", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert json.loads((out / "meta.json").read_text())["splits"] == {"train": 20, "test": 6}
