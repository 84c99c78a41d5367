"""`trm analyze`: every study of the recursion on one checkpoint and one split, as numbers (JSON-ready) and the
arrays the figures need. The report (figures, report.json, report.md) is written by report.py.

Runs, in order (each a `trm.sampling.sample` run recorded through record.py):
  1. the deterministic model (K=1, sigma=0) to D steps (default 2 * N_sup), every step recorded;
     trajectory modes and failures are judged at N_sup, the horizon the model was trained for
  2. pairs of trajectories started eps apart (initial-state noise) to N_sup steps: finite-time Lyapunov
  3. the deterministic failures again with K noisy rollouts: latent noise before every step (PTRM), and
     noise on the initial state only (the attractor study's intervention); "more steps" comes from run 1
  4. full states of `full_rows` puzzles drawn evenly from the three modes (failures first), rerun
     deterministically (the same trajectories as run 1): per-puzzle PCA and the sparse autoencoder's data.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..data.format import Split
from ..losses import IGNORE
from ..model import TRM
from ..sampling import SamplerConfig
from .dynamics import KINDS, MODES, classify, lyapunov, plateau, settle_step, step_cosine, summarise, \
    trajectory_modes
from .landscape import fit_pca
from .record import record
from .solver import residual_curves
from .sae import SAEConfig, feature_dynamics, train_sae


@dataclass
class AnalysisConfig:
    limit: int = 200           # puzzles analysed (the first N of the split that have scored cells)
    D: int = 0                 # steps recorded (0 = 2 * N_sup: the tail past N_sup shows where runs settle)
    latent_steps: bool = False  # also record every call of f (n z-updates and one y-update, T times a step)
    full_rows: int = 64        # puzzles whose full y, z are kept, evenly from the modes (per-puzzle PCA, SAE)
    max_lag: int = 6           # longest cycle period looked for
    tol: float = 0.01          # fixed point / cycle: lag distance below tol * state RMS over the tail
    tail: int = 4              # steps at the end that must satisfy it
    quick: int = 2             # quick success: correct from this step on
    eps: float = 1e-3          # Lyapunov: std of the initial-state perturbation
    sat: float = 0.1           # Lyapunov: fit before the pair distance reaches sat * state RMS
    K: int = 4                 # interventions: rollouts per failure
    sigma: float = 0.3         # interventions: latent noise before every step (PTRM's Sudoku setting)
    init_sigma: float = 1.0    # interventions: noise on the initial y, z only (their own scale is 1)
    max_failures: int = 100    # interventions: at most this many failures (the first ones)
    seed: int = 0
    dtype: str = "fp32"        # distances of 1e-3 do not survive bf16
    max_rows: int = 256        # rollouts run at once (memory: max_lag states of each)
    solver_iters: int = 64     # fixed-point models: iterations every z solve gets for the residual curves
    solver_rows: int = 64      # ... on the first this many puzzles
    sae: SAEConfig = field(default_factory=SAEConfig)

    def validate(self) -> None:
        checks = [(self.limit >= 1, "--limit must be >= 1", self.limit),
                  (self.D >= 0, "D must be >= 0 (0 = 2 * N_sup)", self.D),
                  (self.full_rows >= 0, "--full-rows must be >= 0", self.full_rows),
                  (self.max_lag >= 2, "--max-lag must be >= 2", self.max_lag),
                  (0 < self.tol < 1, "--tol must be in (0, 1)", self.tol),
                  (self.tail >= 1, "--tail must be >= 1", self.tail),
                  (self.quick >= 1, "--quick must be >= 1", self.quick),
                  (0 < self.eps < 1, "--eps must be in (0, 1)", self.eps),
                  (0 < self.sat <= 1, "--sat must be in (0, 1]", self.sat), (self.K >= 1, "--K must be >= 1", self.K),
                  (np.isfinite(self.sigma) and self.sigma >= 0, "--sigma must be a finite number >= 0", self.sigma),
                  (np.isfinite(self.init_sigma) and self.init_sigma >= 0, "--init-sigma must be a finite number >= 0",
                   self.init_sigma),
                  (self.max_failures >= 0, "--max-failures must be >= 0", self.max_failures),
                  (self.max_rows >= 2, "--max-rows must be >= 2", self.max_rows),
                  (self.dtype in ("fp32", "bf16", "auto"), "--dtype must be fp32, bf16 or auto", self.dtype),
                  (self.solver_iters >= 1, "--solver-iters must be >= 1", self.solver_iters),
                  (self.solver_rows >= 1, "--solver-rows must be >= 1", self.solver_rows)]
        for ok, msg, value in checks:
            if not ok:
                raise ValueError(f"{msg} (got {value})")
        self.sae.validate()


def _frac(a) -> float | None:
    a = np.asarray(a)
    return float(a.mean()) if a.size else None


def _kinds_by_mode(kind, period, modes) -> dict:
    out = {}
    for g, name in enumerate(MODES):
        sel = modes == g
        periods = period[sel & (kind == 1)]
        out[name] = {"n": int(sel.sum()), **{k: int((kind[sel] == i).sum()) for i, k in enumerate(KINDS)},
                     "periods": {str(p): int((periods == p).sum()) for p in np.unique(periods)}}
    return out


def _noisy(model, inputs, ids, labels, K, sigma, noise, N, cfg, progress, desc) -> dict:
    """K rollouts per puzzle with noise; per-puzzle pass, best-q, distinct final answers, spread over steps."""
    r = record(model, inputs, ids, SamplerConfig(K=K, sigma=sigma, D=N, noise=noise), labels=labels, seed=cfg.seed,
               max_lag=2, max_rows=cfg.max_rows, dtype=cfg.dtype, progress=progress, desc=desc)
    P = len(inputs)
    exact = np.asarray(r["exact"][:, -1]).reshape(P, K)
    q = np.asarray(r["q_halt"][:, -1]).reshape(P, K)
    pred = np.asarray(r["pred"][:, -1]).reshape(P, K, -1)
    best = exact[np.arange(P), q.argmax(1)]
    distinct = np.array([len(np.unique(pred[p], axis=0)) for p in range(P)])
    out = {"pass": exact.any(1), "best_q": best, "rollout_acc": exact.mean(1), "distinct": distinct,
           "y_mean": np.asarray(r["y_mean"], np.float32).reshape(P, K, N, -1), "exact_steps": np.asarray(r["exact"])}
    if K > 1:  # how far rollouts 1.. are from rollout 0 after each step, relative to the state size
        out["dist"] = (np.asarray(r["dist_to_first"]) / np.asarray(r["norm"])).reshape(P, K, N)[:, 1:]
    return out


def balanced_rows(modes: np.ndarray, n: int) -> np.ndarray:
    """Up to n rows taking turns between failures, delayed and quick successes (in order), sorted."""
    pools = [list(np.flatnonzero(modes == g)) for g in (2, 1, 0)]
    out = []
    while len(out) < n and any(pools):
        for pool in pools:
            if pool and len(out) < n:
                out.append(pool.pop(0))
    return np.array(sorted(out), dtype=np.int64)


def analyze(model: TRM, split: Split, cfg: AnalysisConfig, *, record_dir: str | Path | None = None,
            progress: bool = True) -> tuple[dict, dict]:
    """Run every study. Returns (results: numbers for report.json, figdata: arrays for the figures)."""
    cfg.validate()
    c = model.cfg
    N = c.N_sup
    D = cfg.D or 2 * N
    N = min(N, D)
    scored = np.flatnonzero((np.asarray(split.labels) != IGNORE).any(1))
    index = scored[: cfg.limit]
    if len(index) == 0:
        raise ValueError("the split has no puzzle with a scored cell to analyse")
    inputs = np.asarray(split.inputs[index]).astype(np.int64)
    labels = np.asarray(split.labels[index]).astype(np.int64)
    ids = np.asarray(split.puzzle_ids[index]).astype(np.int64)
    P = len(index)
    timings, t0 = {}, time.perf_counter()
    stages = tqdm(total=5, desc="analyze", disable=not progress, unit="stage")

    def stage(name):
        nonlocal t0
        now = time.perf_counter()
        timings[name] = round(now - t0, 2)
        t0 = now
        stages.update(1)

    # --- 1. the deterministic run ---------------------------------------------------------------------------
    stages.set_postfix_str("recording")
    rec = record(model, inputs, ids, SamplerConfig(K=1, D=D), labels=labels, seed=cfg.seed,
                 latent=cfg.latent_steps, max_lag=cfg.max_lag,
                 max_rows=cfg.max_rows, out=Path(record_dir) / "deterministic" if record_dir else None,
                 dtype=cfg.dtype, index=index, progress=progress, desc="deterministic")
    exact, q = np.asarray(rec["exact"]), np.asarray(rec["q_halt"])
    loss, cell = np.asarray(rec["loss"]), np.asarray(rec["cell_acc"])
    pred = np.asarray(rec["pred"])
    modes = trajectory_modes(exact[:, :N], cfg.quick)
    failures = np.flatnonzero(modes == 2)
    lag, norm = np.asarray(rec["lag_dist"]), np.asarray(rec["norm"])
    kinds = classify(lag, norm, tol=cfg.tol, tail=cfg.tail)
    cosine = step_cosine(lag, cfg.tail)
    plateau_from = plateau(loss[:, :N])
    answer_settle = settle_step(pred[:, :N])
    results = {
        "puzzles": P, "N_sup": c.N_sup, "D": D,
        "accuracy": {
            "exact_at_N_sup": float(exact[:, N - 1].mean()), "exact_at_D": float(exact[:, -1].mean()),
            "cell_at_N_sup": float(cell[:, N - 1].mean()),
            "exact_by_step": exact.mean(0).round(4).tolist(), "cell_by_step": cell.mean(0).round(4).tolist(),
            "loss_by_step": np.nanmean(loss, 0).round(4).tolist()},
        "modes": {
            "thresholds": {"quick": f"correct at step N_sup and at every step from {cfg.quick} on",
                           "delayed": f"correct at step N_sup, settled after step {cfg.quick}",
                           "failure": "wrong at step N_sup"},
            "counts": {m: int((modes == g).sum()) for g, m in enumerate(MODES)},
            "q_halt_at_N_sup": summarise(q[:, N - 1], modes),
            "cell_accuracy_at_N_sup": summarise(cell[:, N - 1], modes),
            "loss_at_N_sup": summarise(loss[:, N - 1], modes)},
        "attractors": {
            "rule": f"over the last {min(cfg.tail, D - 1)} of {D} steps: fixed point if ||s_t - s_(t-1)|| < "
                    f"{cfg.tol} * ||s_t|| at each; else cycle of the smallest period p in 2..{cfg.max_lag} with "
                    f"||s_t - s_(t-p)|| < {cfg.tol} * ||s_t||; else neither (s = (y, z), all tokens, RMS)",
            "tol": cfg.tol, "tail": cfg.tail, "max_lag": cfg.max_lag,
            "by_mode": _kinds_by_mode(kinds["kind"], kinds["period"], modes),
            "tail_step_distance": summarise(kinds["step"], modes),
            "best_lag_distance": summarise(kinds["best"], modes),
            "step_cosine": summarise(cosine, modes),
            "step_distance_by_step": {m: np.nanmedian(lag[modes == g, 1:, 0] / norm[modes == g, 1:], 0).tolist()
                                      for g, m in enumerate(MODES) if (modes == g).any()}},
        "plateaus": {
            "rule": "first step from which |loss_t - loss_N_sup| <= 0.05 * loss_N_sup + 0.01",
            "plateau_from": summarise(plateau_from, modes),
            "plateau_length": summarise(N - plateau_from + 1, modes),
            "loss_at_N_sup": summarise(loss[:, N - 1], modes)},
        "hypothesis": {"answer_settle_step": summarise(answer_settle, modes)},
    }
    figdata = {"modes": modes, "exact": exact, "q": q, "loss": loss, "cell": cell, "lag": lag, "norm": norm,
               "kind": kinds["kind"], "N": N, "D": D, "P": P, "index": index}
    if cfg.latent_steps:
        ch = np.asarray(rec["latent_change"])
        figdata["latent_change"] = ch
        figdata["latent_calls"] = rec.meta["latent_calls"]
        results["latent_steps"] = {
            "calls_per_step": len(rec.meta["latent_calls"]), "labels": rec.meta["latent_calls"],
            "median_change_by_call_at_N_sup": {m: np.nanmedian(ch[modes == g, N - 1], 0).tolist()
                                               for g, m in enumerate(MODES) if (modes == g).any()}}

    # landscapes across puzzles: one PCA of the mean-over-tokens y (and z) of every row and step
    for name in ("y", "z"):
        pts = np.asarray(rec[f"{name}_mean"], np.float32)
        pca = fit_pca(pts.reshape(-1, pts.shape[-1]), k=2, seed=cfg.seed)
        figdata[f"pca_{name}"] = pca.transform(pts.reshape(-1, pts.shape[-1])).reshape(P, D, 2)
        results.setdefault("pca", {})[f"{name}_explained_variance"] = pca.explained.round(4).tolist()
    # full states of puzzles drawn evenly from the modes: the same deterministic trajectories, run again
    sel = balanced_rows(modes, cfg.full_rows)
    full = None
    if len(sel):
        full = record(model, inputs[sel], ids[sel], SamplerConfig(K=1, D=D), labels=labels[sel], seed=cfg.seed,
                      full_rows=len(sel), max_lag=1, max_rows=cfg.max_rows, dtype=cfg.dtype, index=index[sel],
                      out=Path(record_dir) / "full" if record_dir else None, progress=progress, desc="full states")
        figdata["pca_puzzles"] = []
        for i in [i for g in range(3) for i in np.flatnonzero(modes[sel] == g)[:2]]:
            y = np.asarray(full["y_full"][i], np.float32).reshape(D, -1)
            pca = fit_pca(y, k=2)
            r = sel[i]
            figdata["pca_puzzles"].append({"row": int(r), "mode": MODES[modes[r]], "xy": pca.transform(y),
                                           "q": q[r], "cell": cell[r], "explained": pca.explained})
    if c.uses_solver:  # the fixed-point variant: residual against iteration, the cap raised, no tolerance
        rows = min(P, cfg.solver_rows)
        results["solver"] = residual_curves(model, inputs[:rows], ids[:rows], N, cfg.solver_iters)
        figdata["solver"] = results["solver"]
    stage("recording")

    # --- 2. Lyapunov: pairs of trajectories started eps apart -------------------------------------------------
    stages.set_postfix_str("lyapunov")
    pair = record(model, inputs, ids, SamplerConfig(K=2, sigma=cfg.eps, D=N, noise="init"), labels=labels,
                  seed=cfg.seed + 1, max_lag=1, max_rows=cfg.max_rows, dtype=cfg.dtype, progress=progress,
                  desc="lyapunov pairs")
    dist = np.asarray(pair["dist_to_first"])[1::2]           # (P, N)
    pnorm = np.asarray(pair["norm"])[1::2]
    d0 = cfg.eps * np.sqrt(2.0)  # two independent N(0, eps^2) perturbations of every entry
    dist = np.concatenate([np.full((P, 1), d0), dist], 1)
    pnorm = np.concatenate([pnorm[:, :1], pnorm], 1)
    ly = lyapunov(dist, pnorm, sat=cfg.sat)
    final_differs = (np.asarray(pair["pred"])[0::2, -1] != np.asarray(pair["pred"])[1::2, -1]).any(-1)
    results["lyapunov"] = {
        "rule": f"two runs per puzzle from the initial state plus N(0, {cfg.eps}^2) noise each (distance "
                f"{d0:.2e} RMS at t=0); lambda = slope of log RMS distance of (y, z) over steps 0..t_end, t_end = "
                f"first step with distance >= {cfg.sat} * state RMS (saturation), else N_sup",
        "eps": cfg.eps, "lambda": summarise(ly["lam"], modes),
        "positive_fraction": {m: _frac(ly["lam"][modes == g] > 0) for g, m in enumerate(MODES)},
        "growth_at_N_sup": summarise(ly["growth"], modes),
        "final_answers_differ": {m: _frac(final_differs[modes == g]) for g, m in enumerate(MODES)}}
    figdata.update(pair_dist=dist / pnorm, lam=ly["lam"])
    stage("lyapunov")

    # --- 3. interventions on the deterministic failures ------------------------------------------------------
    stages.set_postfix_str("interventions")
    fail = failures[: cfg.max_failures]
    iv = {"failures": int(len(failures)), "tested": int(len(fail)), "K": cfg.K}
    if len(fail):
        args = (inputs[fail], ids[fail], labels[fail])
        z = _noisy(model, *args, cfg.K, cfg.sigma, "z", N, cfg, progress, "latent noise")
        init = _noisy(model, *args, cfg.K, cfg.init_sigma, "init", N, cfg, progress, "initial-state noise")
        iv["latent_noise"] = {"sigma": cfg.sigma, "pass@K": _frac(z["pass"]), "best-q@K": _frac(z["best_q"]),
                              "mean_rollout_accuracy": _frac(z["rollout_acc"]),
                              "distinct_answers": float(z["distinct"].mean())}
        iv["init_noise"] = {"sigma": cfg.init_sigma, "pass@K": _frac(init["pass"]),
                            "best-q@K": _frac(init["best_q"]), "mean_rollout_accuracy": _frac(init["rollout_acc"]),
                            "distinct_answers": float(init["distinct"].mean())}
        if "dist" in init:
            iv["init_noise"]["rollout_distance_by_step"] = np.median(init["dist"], (0, 1)).round(4).tolist()
            figdata["init_dist"] = np.median(init["dist"], (0, 1))
            figdata["z_dist"] = np.median(z["dist"], (0, 1))
        figdata["init_rollouts"] = {"y_mean": init["y_mean"][:3], "det": np.asarray(rec["y_mean"][fail[:3], :N],
                                                                                     np.float32),
                                    "exact": init["exact_steps"].reshape(len(fail), cfg.K, N)[:3]}
    if D > N:
        iv["more_steps"] = {"D": D, "solved": _frac(exact[fail, -1]) if len(fail) else None,
                            "lost": _frac(~exact[modes != 2, -1]) if (modes != 2).any() else None}
    results["interventions"] = iv
    stage("interventions")

    # --- 4. sparse autoencoder on the recorded z ------------------------------------------------------------
    stages.set_postfix_str("sparse autoencoder")
    if full is not None:
        zf = full["z_full"]
        R = zf.shape[0]
        rng = np.random.default_rng(cfg.seed)
        # a bounded subsample of (row, step, answer token) vectors; the prefix token is not a cell
        n = min(cfg.sae.max_samples, R * D * c.seq_len)
        pick = rng.choice(R * D * c.seq_len, n, replace=False)
        rr, rest = np.divmod(pick, D * c.seq_len)
        tt, ll = np.divmod(rest, c.seq_len)
        vectors = np.asarray(zf[:, :, c.prefix_len:], np.float32)[rr, tt, ll]
        bar = tqdm(total=cfg.sae.steps, desc="sparse autoencoder", disable=not progress, leave=False, unit="step")
        sae, stats = train_sae(vectors, cfg.sae, progress=bar)
        bar.close()
        fd = feature_dynamics(sae, np.asarray(zf[:, :N, c.prefix_len:], np.float32), tail=cfg.tail,
                              max_lag=cfg.max_lag)
        m = modes[sel]
        stats.update({
            "rows": int(R), "feature_settle_rule": "first step from which the mean over tokens of the Jaccard "
                                                   "overlap of active features with step N_sup is >= 0.9",
            "feature_settle_step": summarise(fd["settle"], m),
            "answer_settle_step": summarise(answer_settle[sel], m), "rows_by_mode": {
                name: int((m == g).sum()) for g, name in enumerate(MODES)},
            "feature_kinds": _kinds_by_mode(fd["kind"], fd["period"], m),
            "feature_step_cosine": summarise(fd["cosine"], m),
            "periodicity_rule": "fixed / cycle / neither of the token-mean activation vector (tolerance 0.05 "
                                "of its RMS over the tail); step_cosine about -1 = alternating (2-cycle)"})
        results["sae"] = stats
        figdata["sae"] = {"mean": fd["mean"], "overlap": fd["overlap"], "modes": m}
    stage("sae")
    results["config"] = {**asdict(cfg), "D": D}
    results["timings_s"] = timings
    stages.update(1)
    stages.close()
    return results, figdata
