"""ARC answers from augmented predictions, voted over the versions as HRM and TRM do (arXiv 2510.04871).

Every test row of an ARC dataset is one version (dihedral x colour permutation) of one test pair. A prediction
is cropped (`arc.decode`), mapped back to the original task (`arc.invert`), and the answers of all versions of
a pair vote: ranked by count, ties broken by the mean sigmoid(q_halt). pass@k: the true output is among the
first k answers; a task's score is the fraction of its test pairs solved; pass@k of a set is the mean task score.

Votes are counted per evaluation (one checkpoint) by default. The reference pools the votes of every evaluation
of a run, which mixes checkpoints into each number; `pool` does that on request, from saved predictions.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

import numpy as np

from .atomic import atomic_file, atomic_write_json
from .data import arc
from .data.format import DatasetError, Split, load_dataset

PASS_KS = (1, 2, 5, 10, 100, 1000)
Candidates = dict  # (task index, pair index) -> list of (grid or None, q_halt logit)


def vote(candidates: list[tuple[np.ndarray | None, float]]) -> list[tuple[np.ndarray, int, float]]:
    """Distinct answers as (grid, votes, mean sigmoid(q_halt)), best first. None (no grid) never votes."""
    groups: dict[bytes, list] = {}
    for grid, q in candidates:
        if grid is None:
            continue
        g = groups.setdefault(np.array(grid.shape, dtype=np.int16).tobytes() + grid.tobytes(), [grid, 0, 0.0])
        g[1] += 1
        g[2] += 1.0 / (1.0 + np.exp(-q))
    return [(g, n, s / n) for g, n, s in sorted(groups.values(), key=lambda g: (-g[1], -g[2] / g[1]))]


def candidates(split: Split, predictions: np.ndarray, q_halt: np.ndarray, into: Candidates | None = None) -> Candidates:
    """Invert the predictions of the first len(predictions) rows of an ARC test split, grouped by test pair."""
    n = len(predictions)
    ks = np.asarray(split.extras["dihedral"][:n])
    perms = np.asarray(split.extras["colour_perm"][:n])
    tasks, pairs = np.asarray(split.extras["task_index"][:n]), np.asarray(split.extras["pair_index"][:n])
    out = into if into is not None else defaultdict(list)
    for i in range(n):
        grid = arc.decode(predictions[i])
        out[int(tasks[i]), int(pairs[i])].append(
            (None if grid is None else arc.invert(grid, int(ks[i]), perms[i]), float(q_halt[i])))
    return out


def score(test_tasks: dict, cands: Candidates, ks=PASS_KS) -> dict:
    """pass@k over the test pairs that have candidates; "ranked": {task id: [answers per pair]} for submissions."""
    order, outputs = test_tasks["order"], test_tasks["outputs"]
    solved: dict[str, dict[int, list[bool]]] = {}
    ranked: dict[str, dict[int, list]] = defaultdict(dict)
    for (t, p), cs in sorted(cands.items()):
        tid = order[t]
        answers = [g for g, _, _ in vote(cs)]
        ranked[tid][p] = answers
        truth = outputs[tid][p]
        hit = next((i for i, g in enumerate(answers) if truth is not None and _same(g, truth)), None)
        rec = solved.setdefault(tid, {k: [] for k in ks})
        for k in ks:
            rec[k].append(hit is not None and hit < k)
    result = {f"pass@{k}": float(np.mean([np.mean(r[k]) for r in solved.values()])) if solved else 0.0 for k in ks}
    result.update(tasks=len(solved), pairs=sum(len(r[ks[0]]) for r in solved.values()),
                  task_scores={tid: {f"pass@{k}": float(np.mean(r[k])) for k in ks[:2]} for tid, r in solved.items()},
                  ranked=ranked)
    return result


def _same(a: np.ndarray, b) -> bool:
    b = np.asarray(b)
    return a.shape == b.shape and bool((a == b).all())


def submission(test_tasks: dict, ranked: dict) -> dict:
    """Kaggle format: {task id: [{"attempt_1": grid, "attempt_2": grid} per test pair]}, every test task and pair
    ([[0]] where there is no answer)."""
    def attempt(answers, i):
        return answers[i].astype(int).tolist() if len(answers) > i else [[0]]
    return {tid: [{"attempt_1": attempt(ranked.get(tid, {}).get(p, []), 0),
                   "attempt_2": attempt(ranked.get(tid, {}).get(p, []), 1)} for p in range(len(outs))]
            for tid, outs in test_tasks["outputs"].items()}


# --- saved predictions, for pooling -----------------------------------------------------------------------
def rows_key(split: Split) -> str:
    """Identifies the rows of an ARC test split (which version of which pair each row is)."""
    h = hashlib.blake2b(digest_size=16)
    for k in ("task_index", "pair_index", "dihedral", "colour_perm"):
        h.update(np.ascontiguousarray(split.extras[k]).tobytes())
    h.update(np.ascontiguousarray(split.puzzle_ids).tobytes())
    return h.hexdigest()


def save_predictions(path, split: Split, predictions: np.ndarray, q_halt: np.ndarray) -> None:
    with atomic_file(path) as tmp:
        np.savez_compressed(tmp, predictions=predictions.astype(np.uint8), q_halt=q_halt.astype(np.float32),
                            rows_key=np.array(rows_key(split)))


def pool(split: Split, cands: Candidates, paths) -> Candidates:
    """Add the votes of earlier evaluations (their saved predictions) of the same test split."""
    key = rows_key(split)
    for p in paths:
        try:
            saved = np.load(p)
            preds, q, saved_key = saved["predictions"], saved["q_halt"], str(saved["rows_key"])
        except (OSError, ValueError, KeyError) as e:
            raise DatasetError(f"{p}: not a saved ARC prediction file ({type(e).__name__})") from None
        if saved_key != key:
            raise DatasetError(f"{p} holds predictions for another test split: cannot pool its votes")
        candidates(split, preds, q, into=cands)
    return cands


def vote_and_submit(split: Split, dataset_dir, predictions: np.ndarray, q_halt: np.ndarray, submission_path,
                    pool_with=()) -> dict:
    """Score the votes of one evaluation's predictions (plus those saved by earlier evaluations, `pool_with`),
    write the Kaggle submission to `submission_path`, and save these predictions beside it
    (<stem>_predictions.npz) so that a later evaluation can pool them. Returns pass@k, tasks, pairs,
    task_scores, and where the files went."""
    cands = pool(split, candidates(split, predictions, q_halt), pool_with)
    tt = arc.read_test_tasks(dataset_dir)
    r = score(tt, cands)
    sub = Path(submission_path)
    atomic_write_json(sub, submission(tt, r.pop("ranked")))
    saved = sub.with_name(f"{sub.stem}_predictions.npz")
    save_predictions(saved, split, predictions, q_halt)
    votes = f"{1 + len(pool_with)} evaluations, pooled" if pool_with else "this checkpoint"
    return {**r, "votes": votes, "submission": str(sub), "predictions": str(saved)}


# --- checks and single tasks ------------------------------------------------------------------------------
def oracle(dataset_dir) -> dict:
    """The lossless-pipeline check: the true outputs of every version, mapped back and voted, must give
    pass@1 = 1 on every test pair; the test inputs must map back to the original inputs as well."""
    ds = load_dataset(dataset_dir)
    if ds.meta.get("task") != "arc":
        raise DatasetError(f"{dataset_dir} is not an ARC dataset")
    split, tt = ds["test"], arc.read_test_tasks(dataset_dir)
    labels = np.asarray(split.labels)
    result = score(tt, candidates(split, labels, np.zeros(len(labels))))
    inputs_back = candidates(split, np.asarray(split.inputs), np.zeros(len(labels)))
    first_inputs = {}  # the original test inputs are not stored: every version must agree with version 0's
    bad = 0
    for (t, p), cs in inputs_back.items():
        grids = [g for g, _ in cs]
        ref = first_inputs.setdefault((t, p), grids[0])
        bad += sum(g is None or not _same(g, ref) for g in grids)
    result["inputs_not_recovered"] = bad
    result["rows"] = len(labels)
    del result["ranked"]
    return result


def predict(model, inputs: np.ndarray, puzzle_ids: np.ndarray, *, D: int | None = None, dtype: str = "auto",
            sampler=None) -> tuple[np.ndarray, np.ndarray]:
    """Each row's answer after D supervision steps (all D, as in evaluation) and its q_halt logit. With a
    trm.sampling.SamplerConfig: K rollouts per version and the one its select rule picks (PTRM); without, the
    one deterministic rollout (K = 1, sigma 0) of the same sampler."""
    from .sampling import SamplerConfig, sample
    r = sample(model, inputs, puzzle_ids, sampler or SamplerConfig(K=1, D=D or 0), dtype=dtype, keep_selected=True)
    return r.selected, r.selected_q


def solve(model, task: arc.Task, dataset_dir=None, *, augments: int = 8, seed: int = 0, **predict_args) -> dict:
    """Two attempts per test pair of one task.

    If `dataset_dir` holds the task among its test tasks (same content, any id), its versions there are used:
    their puzzle embeddings were trained on the task's demonstrations. Otherwise the task is new to the model:
    `augments` fresh versions run with the blank embedding (row 0, never trained), the model's answer before any
    test-time adaptation (docs/data.md: `--freeze-weights`)."""
    rows, name = None, task.id
    if dataset_dir is not None and (Path(dataset_dir) / arc.TEST_TASKS).is_file():
        tt = arc.read_test_tasks(dataset_dir)
        fp = arc.fingerprint(task)
        match = [i for i, tid in enumerate(tt["order"]) if tt.get("fingerprints", {}).get(tid) == fp]
        if match:
            name = tt["order"][match[0]]
            split = load_dataset(dataset_dir)["test"]
            rows = np.flatnonzero(np.asarray(split.extras["task_index"]) == match[0])
            inputs, ids = np.asarray(split.inputs[rows]), np.asarray(split.puzzle_ids[rows])
            ks, perms = np.asarray(split.extras["dihedral"][rows]), np.asarray(split.extras["colour_perm"][rows])
            pair = np.asarray(split.extras["pair_index"][rows])
    if rows is None:
        vs = arc.versions(task, augments, seed)
        inputs = np.stack([arc.encode(arc.transform(x, k, perm)) for k, perm in vs for x, _ in task.test])
        ks = np.array([k for k, _ in vs for _ in task.test])
        perms = np.stack([perm for _, perm in vs for _ in task.test])
        pair = np.array([p for _ in vs for p in range(len(task.test))])
        ids = np.zeros(len(inputs), dtype=np.int64)
    preds, q = predict(model, inputs, ids, **predict_args)
    by_pair = defaultdict(list)
    for i in range(len(preds)):
        g = arc.decode(preds[i])
        by_pair[int(pair[i])].append((None if g is None else arc.invert(g, int(ks[i]), perms[i]), float(q[i])))
    result = {"task": name, "trained_versions": rows is not None, "versions": len(preds) // len(task.test),
              "pairs": []}
    for p, (_, truth) in enumerate(task.test):
        ranked = vote(by_pair[p])
        rec = {"attempts": [g.astype(int).tolist() for g, _, _ in ranked[:2]],
               "votes": [n for _, n, _ in ranked[:2]], "confidence": [round(c, 4) for _, _, c in ranked[:2]]}
        if truth is not None:
            rec["correct"] = any(_same(g, truth) for g, _, _ in ranked[:2])
        result["pairs"].append(rec)
    return result
