"""ARC data: transforms and their inverses, the canvas encoding, the builder's splits, and the lossless
augment -> invert -> vote pipeline on the real evaluation sets."""

import json

import numpy as np
import pytest

from trm import arc_vote
from trm.cli import shared_data_root
from trm.data import arc, load_dataset
from trm.data.format import DatasetError

ROOT = shared_data_root() / "arc"
needs_arc = pytest.mark.skipif(not ROOT.is_dir(), reason=f"ARC JSON not found at {ROOT}")


def random_grid(rng, h=None, w=None):
    h, w = h or int(rng.integers(1, 31)), w or int(rng.integers(1, 31))
    return rng.integers(0, 10, (h, w)).astype(np.int8)


def test_every_transform_and_colour_permutation_inverts():
    rng = np.random.default_rng(0)
    for k in range(8):
        for _ in range(5):
            g = random_grid(rng)
            perm = np.concatenate([[0], rng.permutation(9) + 1]).astype(np.int8)
            t = arc.transform(g, k, perm)
            assert np.array_equal(arc.invert(t, k, perm), g)
            assert (t == 0).sum() == (g == 0).sum()  # colour 0 stays fixed
            if k in (1, 3, 6, 7):
                assert t.shape == g.shape[::-1]


def test_canvas_round_trip():
    rng = np.random.default_rng(1)
    for h, w in [(1, 1), (30, 30), (30, 1), (1, 30), (7, 12)]:
        g = random_grid(rng, h, w)
        tokens = arc.encode(g)
        assert tokens.shape == (900,) and np.array_equal(arc.decode(tokens), g)
        canvas = tokens.reshape(30, 30)
        if h < 30:
            assert (canvas[h, : w + 1] == arc.EOS).all()
        if w < 30:
            assert (canvas[: h + 1, w] == arc.EOS).all()
    g = random_grid(rng, 5, 4)
    shifted = arc.encode(g, 3, 7).reshape(30, 30)
    assert np.array_equal(shifted[3:8, 7:11] - 2, g) and (shifted[:3] == 0).all()
    assert arc.decode(np.zeros(900, dtype=np.uint8)) is None


def test_versions_are_distinct_and_start_with_the_task():
    rng = np.random.default_rng(2)
    task = arc.Task("t", [(random_grid(rng, 3, 4), random_grid(rng, 4, 3))], [(random_grid(rng, 2, 2), None)])
    vs = arc.versions(task, 50, rng)
    assert len(vs) == 50 and vs[0][0] == 0 and (vs[0][1] == np.arange(10)).all()
    assert len({arc._task_key(task, k, p) for k, p in vs}) == 50
    mono = arc.Task("m", [(np.zeros((2, 2), np.int8), np.zeros((2, 2), np.int8))], [(np.zeros((2, 2), np.int8), None)])
    assert len(arc.versions(mono, 50, rng)) == 1  # every transform of an all-black square task is the same


def test_vote_ranks_by_count_then_confidence():
    a, b, c = np.zeros((1, 1), np.int8), np.ones((1, 1), np.int8), np.full((1, 2), 2, np.int8)
    ranked = arc_vote.vote([(a, -5.0), (b, 5.0), (a, -5.0), (c, 9.0), (None, 9.0)])
    assert [r.tolist() for r in ranked] == [a.tolist(), c.tolist(), b.tolist()]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("arc") / "ds"
    return arc.build_arc(out, root=ROOT, augments=6, task_limit=8, seed=0, progress=False)


@needs_arc
def test_builder_splits(small):
    ds = load_dataset(small)
    meta, tr, te = ds.meta, ds["train"], ds["test"]
    assert ds.seq_len == 900 and ds.vocab_size == 12 and meta["tasks"] == {"train": 8, "test": 2}
    assert int(np.max(tr.puzzle_ids)) < ds.num_puzzle_ids and int(np.min(tr.puzzle_ids)) >= 1
    assert set(np.unique(te.puzzle_ids)) <= set(np.unique(tr.puzzle_ids))  # test versions have their demos
    # the test outputs of test tasks are never trained on: no training label of that version equals one
    train_rows = {(int(p), arc.decode(_untranslate(lbl)).tobytes()) for p, lbl in zip(tr.puzzle_ids, tr.labels)}
    for p, lbl in zip(te.puzzle_ids, te.labels):
        assert (int(p), arc.decode(lbl).tobytes()) not in train_rows


def _untranslate(tokens):
    g = np.asarray(tokens).reshape(30, 30)
    rows, cols = np.nonzero(g >= 2)
    return np.pad(g[rows.min():, cols.min():], ((0, rows.min()), (0, cols.min())))


@needs_arc
def test_overlapping_collections_are_refused(tmp_path):
    with pytest.raises(DatasetError, match="force-overlap"):
        arc.build_arc(tmp_path / "x", root=ROOT, train_collections=("training2",), test_collections=("evaluation",),
                      augments=1, progress=False)


@needs_arc
@pytest.mark.parametrize("collection", ["evaluation", "evaluation2"])
def test_oracle_is_lossless(tmp_path, collection):
    out = arc.build_arc(tmp_path / collection, root=ROOT, train_collections=(), test_collections=(collection,),
                        augments=8, seed=1, progress=False)
    result = arc_vote.oracle(out)
    n_pairs = sum(len(v) for v in json.loads((out / "test_tasks.json").read_text())["outputs"].values())
    assert result["pairs"] == n_pairs and result["pass@1"] == 1.0
    assert all(s["pass@1"] == 1.0 for s in result["task_scores"].values())
    sub = arc_vote.submission(result["_ranked"])
    assert len(sub) == result["tasks"] and all("attempt_2" in p for v in sub.values() for p in v)
