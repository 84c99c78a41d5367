"""ARC data and answers: transforms and their inverses, the canvas, versions, the builder's splits and overlap rules,
voting and pass@k, and the lossless augment -> invert -> vote pipeline on the real evaluation sets."""

import json

import numpy as np
import pytest

from trm import arc_eval
from trm.cli import main
from trm.data import arc, load_dataset
from trm.data.format import DatasetError
from trm.data.recipes import shared_data_root

ROOT = shared_data_root() / "arc"
ARC1 = dict(zip(("train_collections", "test_collections"), arc.COLLECTIONS["arc1"]))
needs_arc = pytest.mark.skipif(not ROOT.is_dir(), reason=f"ARC JSON not found at {ROOT}")


def random_grid(rng, h=None, w=None):
    h, w = h or int(rng.integers(1, 31)), w or int(rng.integers(1, 31))
    return rng.integers(0, 10, (h, w)).astype(np.int8)


def random_perm(rng):
    return np.concatenate([[0], rng.permutation(9) + 1]).astype(np.int8)


def task(rng, n_train=2, n_test=1, outputs=True):
    return arc.Task("t", [(random_grid(rng, 3, 4), random_grid(rng, 4, 3)) for _ in range(n_train)],
                    [(random_grid(rng, 2, 5), random_grid(rng, 5, 2) if outputs else None) for _ in range(n_test)])


def test_every_transform_and_colour_permutation_inverts():
    rng = np.random.default_rng(0)
    for k in range(8):
        for _ in range(10):
            g, perm = random_grid(rng), random_perm(rng)
            t = arc.transform(g, k, perm)
            assert np.array_equal(arc.invert(t, k, perm), g)
            assert np.array_equal(t == 0, arc.transform((g == 0).astype(np.int8), k, arc.IDENTITY) == 1)  # 0 fixed
            assert t.shape == (g.shape[::-1] if k in (1, 3, 6, 7) else g.shape)
            # recolouring and turning commute; the colour map alone is perm[g]
            assert np.array_equal(t, perm[arc.transform(g, k, arc.IDENTITY)])
    g = np.array([[0, 1], [2, 3]], dtype=np.int8)
    perm = np.array([0, 5, 6, 7, 1, 2, 3, 4, 8, 9], dtype=np.int8)
    assert arc.transform(g, 6, perm).tolist() == [[0, 6], [5, 7]]  # transpose of [[0, 5], [6, 7]]


def test_canvas_round_trip_and_crop():
    rng = np.random.default_rng(1)
    for h, w in [(1, 1), (30, 30), (30, 1), (1, 30), (7, 12)]:
        g = random_grid(rng, h, w)
        tokens = arc.encode(g)
        assert tokens.shape == (900,) and np.array_equal(arc.decode(tokens), g)
        canvas = tokens.reshape(30, 30)
        assert (canvas[h, : w + 1] == arc.EOS).all() if h < 30 else True
        assert (canvas[: h + 1, w] == arc.EOS).all() if w < 30 else True
        assert (canvas[h + 1:] == arc.PAD).all() and (canvas[:, w + 1:] == arc.PAD).all()
    shifted = arc.encode(g := random_grid(rng, 5, 4), 3, 7).reshape(30, 30)
    assert np.array_equal(shifted[3:8, 7:11] - 2, g) and (shifted[:3] == 0).all() and (shifted[:, :7] == 0).all()
    assert arc.decode(np.zeros(900, dtype=np.uint8)) is None
    # a ragged prediction: the largest top-left rectangle whose rows are all colour (the reference's crop)
    ragged = np.full((30, 30), arc.PAD, dtype=np.uint8)
    ragged[0, :6] = ragged[1, :6] = 5
    ragged[2:9, :3] = 7
    assert arc.decode(ragged).shape == (9, 3)  # 9 x 3 = 27 beats 2 x 6 = 12
    ragged[2:9, :3] = arc.EOS
    assert arc.decode(ragged).shape == (2, 6)


def test_versions_are_distinct_seeded_and_blind_to_test_outputs():
    rng = np.random.default_rng(2)
    t = task(rng)
    vs = arc.versions(t, 50, seed=0)
    assert len(vs) == 50 and vs[0][0] == 0 and (vs[0][1] == np.arange(10)).all()
    keys = {arc._hash_grids(arc._visible(t), k, p) for k, p in vs}
    assert len(keys) == 50
    again = arc.versions(t, 50, seed=0)
    assert all(k1 == k2 and (p1 == p2).all() for (k1, p1), (k2, p2) in zip(vs, again))
    # the test outputs play no part: an unseen task (outputs unknown) gets the same versions
    blind = arc.Task("t", t.train, [(x, None) for x, _ in t.test])
    assert all(k1 == k2 and (p1 == p2).all() for (k1, p1), (k2, p2) in zip(vs, arc.versions(blind, 50, seed=0)))
    zeros = np.zeros((2, 2), np.int8)
    assert len(arc.versions(arc.Task("m", [(zeros, zeros)], [(zeros, None)]), 50)) == 1  # all versions alike


def test_vote_ranks_by_count_then_mean_confidence():
    a, b, c = np.zeros((1, 1), np.int8), np.ones((1, 1), np.int8), np.full((1, 2), 2, np.int8)
    ranked = arc_eval.vote([(a, -5.0), (b, 5.0), (a, -5.0), (c, 9.0), (c, -9.0), (None, 9.0)])
    # c and a have 2 votes each, c the higher mean sigmoid(q) (0.5 against 0.007); b's one confident vote is last
    assert [g.tolist() for g, _, _ in ranked] == [c.tolist(), a.tolist(), b.tolist()]
    assert [n for _, n, _ in ranked] == [2, 2, 1] and ranked[0][2] == pytest.approx(0.5)


def test_pass_at_k_and_task_scores():
    g = [np.full((1, 1), v, np.int8) for v in range(6)]
    tt = {"order": ["x", "y"], "outputs": {"x": [[[3]], [[0]]], "y": [[[5]]]}}
    votes = lambda *ranks: [(g[v], 0.0) for i, v in enumerate(ranks) for _ in range(len(ranks) - i)]  # noqa: E731
    cands = {(0, 0): votes(0, 1, 2, 3), (0, 1): votes(0, 1), (1, 0): votes(4)}
    r = arc_eval.score(tt, cands)
    # x: pair 0 solved at rank 4, pair 1 at rank 1 -> x scores 0.5 at k=1, 2 and 1.0 from k=5; y never
    assert r["pass@1"] == r["pass@2"] == 0.25 and r["pass@5"] == 0.5 and r["pairs"] == 3 and r["tasks"] == 2
    assert r["task_scores"] == {"x": {"pass@1": 0.5, "pass@2": 0.5}, "y": {"pass@1": 0.0, "pass@2": 0.0}}
    sub = arc_eval.submission({"order": ["x", "y", "z"], "outputs": {**tt["outputs"], "z": [None]}}, r["ranked"])
    assert sub["x"][0] == {"attempt_1": [[0]], "attempt_2": [[1]]}
    assert sub["y"] == [{"attempt_1": [[4]], "attempt_2": [[0]]}] and sub["z"] == [{"attempt_1": [[0]],
                                                                                    "attempt_2": [[0]]}]


def test_vote_and_submit_writes_the_submission_and_pools_saved_votes(tmp_path):
    """Three synthetic tasks (no shared ARC data needed): the true outputs as one evaluation's predictions, the
    inputs as another's; alone the second solves nothing, pooled with the first's saved votes it solves all."""
    rng = np.random.default_rng(3)
    files = []
    for i in range(3):
        t = task(rng, n_test=2 if i == 0 else 1)
        f = tmp_path / f"task{i}.json"
        f.write_text(json.dumps({part: [{"input": x.tolist(), "output": y.tolist()} for x, y in pairs]
                                 for part, pairs in (("train", t.train), ("test", t.test))}))
        files.append(f)
    data = arc.build_arc(tmp_path / "ds", test_task_files=files, augments=4, progress=False)
    split = load_dataset(data)["test"]
    truth, wrong = np.asarray(split.labels), np.asarray(split.inputs)
    r = arc_eval.vote_and_submit(split, data, truth, np.zeros(len(truth)), tmp_path / "right.json")
    assert r["pass@1"] == 1.0 and r["tasks"] == 3 and r["pairs"] == 4 and r["votes"] == "this checkpoint"
    tt = arc.read_test_tasks(data)
    sub = json.loads((tmp_path / "right.json").read_text())
    assert all(sub[t][p]["attempt_1"] == tt["outputs"][t][p] for t in tt["order"] for p in range(len(sub[t])))
    assert r["predictions"] == str(tmp_path / "right_predictions.npz")
    q = np.full(len(wrong), -5.0)  # as many votes as the truth, less confident: the pooled truth wins the tie
    alone = arc_eval.vote_and_submit(split, data, wrong, q, tmp_path / "wrong.json")
    pooled = arc_eval.vote_and_submit(split, data, wrong, q, tmp_path / "pooled.json", pool_with=[r["predictions"]])
    assert alone["pass@1"] == 0.0 and pooled["pass@1"] == 1.0 and pooled["votes"] == "2 evaluations, pooled"


def _untranslate(tokens):
    g = np.asarray(tokens).reshape(30, 30)
    rows, cols = np.nonzero(g >= 2)
    return np.pad(g[rows.min():, cols.min():], ((0, rows.min()), (0, cols.min())))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return arc.build_arc(tmp_path_factory.mktemp("arc") / "ds", root=ROOT, **ARC1, augments=6, task_limit=8, seed=0,
                         progress=False)


@needs_arc
def test_builder_splits(small):
    ds, tt = load_dataset(small), arc.read_test_tasks(small)
    meta, tr, te = ds.meta, ds["train"], ds["test"]
    assert ds.seq_len == 900 and ds.vocab_size == 12 and meta["tasks"] == {"train": 8, "test": 2}
    train_ids, test_ids = set(np.unique(tr.puzzle_ids)), set(np.unique(te.puzzle_ids))
    assert min(train_ids) >= 1 and max(train_ids) < ds.num_puzzle_ids == len(train_ids) + 1
    assert test_ids <= train_ids  # every test version has its demonstrations in training
    assert any(_untranslate(x).tobytes() != np.asarray(x).tobytes() for x in tr.inputs)  # translated
    collection = arc.load_collection(ROOT, "evaluation")
    for i, tid in enumerate(tt["order"]):
        rows = np.flatnonzero(np.asarray(te.extras["task_index"]) == i)
        t = collection[tid]
        assert len(rows) == 6 * len(t.test) and tt["fingerprints"][tid] == arc.fingerprint(t)
        for j in rows:  # each test row is its version of its pair; the output never appears in training
            k, perm, p = int(te.extras["dihedral"][j]), te.extras["colour_perm"][j], int(te.extras["pair_index"][j])
            assert np.array_equal(arc.invert(arc.decode(te.inputs[j]), k, perm), t.test[p][0])
            assert np.array_equal(arc.invert(arc.decode(te.labels[j]), k, perm), t.test[p][1])
            same_id = np.flatnonzero(np.asarray(tr.puzzle_ids) == te.puzzle_ids[j])
            assert len(same_id) == len(t.train)  # the demonstrations only
            for r in same_id:
                assert arc.decode(_untranslate(tr.inputs[r])).tobytes() != arc.decode(te.inputs[j]).tobytes()


@needs_arc
def test_arc1_builds_by_default_without_its_one_leak(tmp_path, capsys):
    """ARC-1 training task 40853293 is evaluation task 070dd51e under another id: its test pair is left out of
    training; the rest builds. ARC-2's training2 holds 376 ARC-1 evaluation tasks: refused, one line."""
    assert main(["data", "arc", "--out", str(tmp_path / "a1"), "--augments", "1", "--quiet"]) == 0
    assert "40853293 pair [2]" in capsys.readouterr().out
    meta = json.loads((tmp_path / "a1" / "meta.json").read_text())
    assert meta["dropped_leaking_pairs"] == {"40853293": [2]} and meta["tasks"] == {"train": 560, "test": 400}
    assert main(["data", "arc", "--out", str(tmp_path / "x"), "--train-collection", "training2",
                 "--test-collection", "evaluation", "--augments", "1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "376 test tasks are also training tasks" in err[0]
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x.*"))
    arc2_train = {**arc.load_collection(ROOT, "training2"), **arc.load_collection(ROOT, "concept")}
    shared, leaks = arc.check_overlap(arc2_train, arc.load_collection(ROOT, "evaluation2"))
    assert shared == [] and leaks == {}  # ARC-2 as built by --version arc2 is clean


@needs_arc
@pytest.mark.parametrize("collection, pairs", [("evaluation", 419), ("evaluation2", 172)])
def test_oracle_is_lossless_on_every_test_pair(tmp_path, collection, pairs):
    out = arc.build_arc(tmp_path / collection, root=ROOT, train_collections=(), test_collections=(collection,),
                        augments=8, seed=1, progress=False)
    r = arc_eval.oracle(out)
    assert r["pairs"] == pairs and r["pass@1"] == 1.0 and r["inputs_not_recovered"] == 0
    assert all(s["pass@1"] == 1.0 for s in r["task_scores"].values())
    ks = np.load(out / "test" / "dihedral.npy")
    assert set(ks.tolist()) == set(range(8))  # every transform took part
    # the check can fail: a row whose stored transform is wrong is caught
    ks[np.flatnonzero(ks == 1)[0]] = 3
    np.save(out / "test" / "dihedral.npy", ks)
    r = arc_eval.oracle(out)
    assert r["pass@1"] < 1.0 or r["inputs_not_recovered"] > 0


@needs_arc
def test_pooling_adds_votes_of_the_same_split_only(small, tmp_path):
    split = load_dataset(small)["test"]
    labels = np.asarray(split.labels)
    wrong = np.zeros_like(labels)
    wrong[:, 0] = 3  # every version answers [[1]]
    arc_eval.save_predictions(tmp_path / "p.npz", split, labels, np.zeros(len(labels)))
    cands = arc_eval.candidates(split, wrong, np.full(len(labels), 5.0))
    assert arc_eval.score(arc.read_test_tasks(small), cands)["pass@1"] == 0.0
    pooled = arc_eval.pool(split, cands, [tmp_path / "p.npz", tmp_path / "p.npz"])  # 2 x truth outvote [[1]]
    assert arc_eval.score(arc.read_test_tasks(small), pooled)["pass@1"] == 1.0
    other = load_dataset(arc.build_arc(tmp_path / "other", root=ROOT, **ARC1, augments=6, task_limit=8, seed=5,
                                       progress=False))["test"]
    with pytest.raises(DatasetError, match="another test split"):
        arc_eval.pool(other, {}, [tmp_path / "p.npz"])


def test_bad_input_is_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "arc-agi_broken_challenges.json").write_text('{"t": {"train": [{"input": [[1, 2], [3]]}]}}')
    (tmp_path / "task.json").write_text('{"train": [], "test": []}')
    for argv, message in [(["--root", str(tmp_path), "--test-collection", "missing"], "not found"),
                          (["--root", str(tmp_path), "--test-collection", "broken"], "broken_challenges.json"),
                          (["--task", str(tmp_path / "task.json")], "demonstration and test pairs"),
                          (["--augments", "0"], "--augments")]:
        assert main(["data", "arc", "--out", str(tmp_path / "x"), "--quiet", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
