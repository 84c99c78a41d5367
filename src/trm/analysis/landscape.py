"""PCA landscapes of recursion trajectories (the PTRM paper's view, arXiv 2605.19943), by SVD, no sklearn.

Across puzzles: one PCA of every (row, step) state summary (the mean over answer tokens of y or z), so all
trajectories share axes. Per puzzle: a PCA of that puzzle's full states (all tokens, flattened) over its steps
and rollouts, which shows how one run moves, where it settles and how far apart noisy rollouts end up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PCA:
    mean: np.ndarray        # (F,)
    components: np.ndarray  # (k, F) unit rows
    explained: np.ndarray   # (k,) share of the variance along each component

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, np.float64) - self.mean) @ self.components.T


def fit_pca(x: np.ndarray, k: int = 2, max_rows: int = 20000, seed: int = 0) -> PCA:
    """PCA of the rows of x (N, F) from a thin SVD of the centred data (a seeded subsample of max_rows rows)."""
    x = np.asarray(x, np.float64).reshape(-1, np.shape(x)[-1])
    if len(x) > max_rows:
        x = x[np.random.default_rng(seed).choice(len(x), max_rows, replace=False)]
    mean = x.mean(0)
    xc = x - mean
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    var = s ** 2
    k = min(k, len(s))
    total = var.sum()
    explained = var[:k] / total if total > 0 else np.zeros(k)
    # a deterministic sign: the largest entry of each component is positive
    sign = np.sign(vt[np.arange(k), np.abs(vt[:k]).argmax(1)])
    return PCA(mean=mean, components=vt[:k] * sign[:, None], explained=explained)

