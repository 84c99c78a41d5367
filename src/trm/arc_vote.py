"""ARC answers from augmented predictions (REFERENCE.md section 3): invert every version's prediction back to
the original task, vote by count, break ties by the mean sigmoid(q_halt), score pass@k per test pair, and a
task's score = the fraction of its test pairs solved. Votes are pooled within one call (one checkpoint); pool
across checkpoints by passing their predictions together."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from .data.arc import decode, invert

PASS_KS = (1, 2, 5, 10, 100, 1000)


def vote(candidates: list[tuple[np.ndarray | None, float]]) -> list[np.ndarray]:
    """Distinct answers ranked by vote count, then by mean sigmoid(q_halt). None (no grid) never votes."""
    groups: dict[bytes, list] = {}
    for grid, q in candidates:
        if grid is None:
            continue
        key = np.array(grid.shape, dtype=np.int16).tobytes() + grid.tobytes()
        g = groups.setdefault(key, [grid, 0, 0.0])
        g[1] += 1
        g[2] += 1.0 / (1.0 + np.exp(-q))
    ranked = sorted(groups.values(), key=lambda g: (-g[1], -g[2] / g[1]))
    return [g[0] for g in ranked]


def _same(a: np.ndarray, b) -> bool:
    b = np.asarray(b)
    return a.shape == b.shape and bool((a == b).all())


def score(dataset_dir, test_split, predictions: np.ndarray, q_halt: np.ndarray, ks=PASS_KS) -> dict:
    """predictions: (N, 900) tokens for the N rows of the test split (any subset order-aligned with it)."""
    meta = json.loads((Path(dataset_dir) / "test_tasks.json").read_text())
    order, outputs = meta["order"], meta["outputs"]
    n = len(predictions)
    cands: dict[tuple[int, int], list] = defaultdict(list)
    for i in range(n):
        grid = decode(predictions[i])
        if grid is not None:
            grid = invert(grid, int(test_split.extras["dihedral"][i]), np.asarray(test_split.extras["colour_perm"][i]))
        cands[int(test_split.extras["task_index"][i]), int(test_split.extras["pair_index"][i])].append(
            (grid, float(q_halt[i])))
    per_task: dict[str, dict] = {}
    ranked_all: dict[str, list] = {}
    for (t, p), cs in sorted(cands.items()):
        tid = order[t]
        truth = outputs[tid][p]
        ranked = vote(cs)
        ranked_all.setdefault(tid, []).append(ranked)
        rec = per_task.setdefault(tid, {k: [] for k in ks})
        for k in ks:
            rec[k].append(truth is not None and any(_same(a, truth) for a in ranked[:k]))
    result = {f"pass@{k}": float(np.mean([np.mean(r[k]) for r in per_task.values()])) if per_task else 0.0
              for k in ks}
    result["tasks"] = len(per_task)
    result["pairs"] = sum(len(r[ks[0]]) for r in per_task.values())
    result["task_scores"] = {tid: {f"pass@{k}": float(np.mean(r[k])) for k in (1, 2) if k in r}
                             for tid, r in per_task.items()}
    result["_ranked"] = ranked_all
    return result


def submission(ranked: dict[str, list[list[np.ndarray]]]) -> dict:
    """Kaggle format: {task_id: [{"attempt_1": grid, "attempt_2": grid} per test pair]} ([[0]] when empty)."""
    def att(r, i):
        return r[i].astype(int).tolist() if len(r) > i else [[0]]
    return {tid: [{"attempt_1": att(r, 0), "attempt_2": att(r, 1)} for r in pairs] for tid, pairs in ranked.items()}


def oracle(dataset_dir) -> dict:
    """Feed the true (augmented) outputs through invert -> vote: a lossless pipeline scores pass@1 = 1."""
    from .data.format import load_dataset
    ds = load_dataset(dataset_dir)
    split = ds["test"]
    labels = np.asarray(split.labels)
    return score(dataset_dir, split, labels, np.zeros(len(labels)))
