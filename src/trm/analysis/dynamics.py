"""Statistics of recursion trajectories: numpy only, so they can be tested on trajectories with known answers.

A trajectory is the state s_t = (y_t, z_t) after supervision step t = 1..D. What is measured (thresholds are
arguments, documented in docs/analysis.md, and every number behind a verdict goes into the report):

  trajectory modes    quick success / delayed success / failure (the PTRM paper's three, arXiv 2605.19943)
  settle steps        the step from which a sequence (answer, active features) no longer changes
  attractor kind      fixed point / cycle with its period / neither, from lag distances ||s_t - s_{t-p}||
                      relative to ||s_t|| over the last `tail` steps
  loss plateaus       the step from which the loss stays within a band around its final value
  finite-time largest Lyapunov exponent
                      slope of log ||s_t - s'_t|| over t for two trajectories started eps apart, fitted
                      before the distance saturates (positive: nearby runs separate; negative: they merge)
"""

from __future__ import annotations

import numpy as np

MODES = ("quick", "delayed", "failure")
KINDS = ("fixed", "cycle", "neither")


def _rms(a: np.ndarray, axis=-1) -> np.ndarray:
    return np.sqrt(np.mean(np.square(a, dtype=np.float64), axis=axis))


def settle_step(x: np.ndarray) -> np.ndarray:
    """x (R, D, ...) -> (R,) the first step (1-based) from which x equals its value at the last step."""
    R, D = x.shape[:2]
    differs = ~(x == x[:, -1:]).reshape(R, D, -1).all(-1)
    last = np.where(differs.any(1), D - 1 - np.argmax(differs[:, ::-1], axis=1), -1)  # 0-based, -1 = never
    return last + 2


def true_from(flags: np.ndarray) -> np.ndarray:
    """flags (R, D) bool -> (R,) the first step (1-based) from which every flag is true; D + 1 if the last is false."""
    R, D = flags.shape
    false = ~flags.astype(bool)
    last = np.where(false.any(1), D - 1 - np.argmax(false[:, ::-1], axis=1), -1)
    return last + 2


def trajectory_modes(exact: np.ndarray, quick: int = 2) -> np.ndarray:
    """exact (R, D) per-step correctness -> (R,) index into MODES.

    quick: correct at the last step and at every step from `quick` on; delayed: correct at the last step but
    only settled later; failure: wrong at the last step."""
    from_step = true_from(exact)
    final = exact[:, -1].astype(bool)
    return np.where(~final, 2, np.where(from_step <= quick, 0, 1)).astype(np.int64)


def lag_distances(states: np.ndarray, max_lag: int) -> np.ndarray:
    """states (..., D, F) -> (..., D, max_lag): RMS ||s_t - s_{t-p}|| for p = 1..max_lag (NaN before step p+1)."""
    D = states.shape[-2]
    out = np.full(states.shape[:-2] + (D, max_lag), np.nan)
    for p in range(1, max_lag + 1):
        if p < D:
            out[..., p:, p - 1] = _rms(states[..., p:, :] - states[..., :-p, :])
    return out


def classify(lag: np.ndarray, norm: np.ndarray, tol: float = 0.01, tail: int = 4) -> dict[str, np.ndarray]:
    """Attractor kind of each trajectory from its lag distances.

    lag (R, D, max_lag) as lag_distances gives; norm (R, D) RMS of s_t. Over the last `tail` steps:
    fixed point if ||s_t - s_{t-1}|| < tol * ||s_t|| at every one; else a cycle of the smallest period p >= 2
    with ||s_t - s_{t-p}|| < tol * ||s_t|| at every one; else neither.
    Returns kind (R,) index into KINDS, period (R,) (1 fixed, p cycle, 0 neither), step (R,) the largest relative
    step distance in the tail, and best (R,) the smallest over p of the largest relative lag-p distance."""
    lag = np.asarray(lag, np.float64)
    R, D, P = lag.shape
    tail = min(tail, D - 1)
    if tail < 1:
        raise ValueError("classifying needs at least 2 steps")
    rel = lag[:, -tail:] / np.maximum(np.asarray(norm, np.float64)[:, -tail:, None], 1e-12)
    worst = np.nan_to_num(rel, nan=np.inf).max(1)  # (R, P); a lag not yet defined in the tail never passes
    kind = np.full(R, 2, np.int64)
    period = np.zeros(R, np.int64)
    for p in range(P, 0, -1):  # smallest p wins
        ok = worst[:, p - 1] < tol
        period[ok] = p
    kind[period == 1] = 0
    kind[period >= 2] = 1
    return {"kind": kind, "period": period, "step": worst[:, 0], "best": worst.min(1)}


def step_cosine(lag: np.ndarray, tail: int = 4) -> np.ndarray:
    """Mean cosine between successive steps' moves s_t - s_{t-1} and s_{t-1} - s_{t-2} over the tail, from lag
    distances alone (||a + b||^2 = ||a||^2 + ||b||^2 + 2 a.b). About -1 for a 2-cycle, +1 for a steady drift,
    0 for a random walk. (R,); NaN where the moves vanish."""
    lag = np.asarray(lag, np.float64)
    d1, d1_prev, d2 = lag[:, 2:, 0], lag[:, 1:-1, 0], lag[:, 2:, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = (d2 ** 2 - d1 ** 2 - d1_prev ** 2) / (2 * d1 * d1_prev)
    cos = cos[:, -tail:]
    ok = np.isfinite(cos)
    count = ok.sum(1)
    return np.where(count > 0, np.where(ok, cos, 0).sum(1) / np.maximum(count, 1), np.nan)


def plateau(loss: np.ndarray, rel: float = 0.05, abs_tol: float = 0.01) -> np.ndarray:
    """loss (R, D) -> (R,) the first step (1-based) from which |loss_t - loss_D| <= rel * loss_D + abs_tol."""
    loss = np.asarray(loss, np.float64)
    band = rel * np.abs(loss[:, -1:]) + abs_tol
    return true_from(np.abs(loss - loss[:, -1:]) <= band)


def lyapunov(dist: np.ndarray, norm: np.ndarray, sat: float = 0.1, floor: float = 1e-6) -> dict[str, np.ndarray]:
    """Finite-time largest Lyapunov exponent (per supervision step) of pairs of trajectories.

    dist (R, D+1): RMS distance between the two trajectories at t = 0 (the initial perturbation) .. D; norm
    (R, D+1) or a scalar: RMS size of the state. The exponent is the least-squares slope of log dist over
    t = 0..t_end, where t_end is the first step at which the distance saturates (>= sat * norm) or collapses to
    the numerical floor (<= floor * norm), else D. Returns lam (R,), t_end (R,) and growth (R,) = dist_D / dist_0.
    """
    dist = np.asarray(dist, np.float64)
    R, D1 = dist.shape
    norm = np.broadcast_to(np.asarray(norm, np.float64), dist.shape)
    stop = (dist >= sat * norm) | (dist <= floor * norm)
    stop[:, 0] = False
    t_end = np.where(stop.any(1), np.argmax(stop, axis=1), D1 - 1)
    t_end = np.maximum(t_end, 1)
    lam = np.empty(R)
    logd = np.log(np.maximum(dist, 1e-30))
    for i in range(R):
        t = np.arange(t_end[i] + 1, dtype=np.float64)
        lam[i] = np.polyfit(t, logd[i, : t_end[i] + 1], 1)[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        growth = dist[:, -1] / dist[:, 0]
    return {"lam": lam, "t_end": t_end, "growth": growth}


def summarise(values: np.ndarray, groups: np.ndarray, names=MODES) -> dict:
    """Median, mean, quartiles and count of `values` in each group (groups: index into names), NaNs left out."""
    out = {}
    for g, name in enumerate(names):
        v = np.asarray(values, np.float64)[groups == g]
        v = v[np.isfinite(v)]
        out[name] = {"n": int(v.size)} if v.size == 0 else {
            "n": int(v.size), "median": float(np.median(v)), "mean": float(v.mean()),
            "q25": float(np.quantile(v, 0.25)), "q75": float(np.quantile(v, 0.75))}
    return out
