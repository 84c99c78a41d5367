"""Residual against iteration for a fixed-point model (ModelConfig.solver fpi or anderson): do its z solves
converge, and how far is the trained cap from the fixed point? Attractor Models (arXiv 2605.12466) set a
tolerance that, in the authors' own logs, most solves never reach; this measures it on our model."""

from __future__ import annotations

import numpy as np
import torch

from ..model import TRM


def residual_curves(model: TRM, inputs: np.ndarray, puzzle_ids: np.ndarray, D: int, iters: int = 64) -> dict:
    """Run D supervision steps on `inputs` with every z solve given `iters` iterations (at least the trained
    cap) and the tolerance off; returns the batch's mean and worst relative residual after each iteration of
    each step's last solve ((D, iters) arrays), with the trained cap and tolerance beside them."""
    c = model.cfg
    iters = max(iters, c.max_iter)
    device = next(model.parameters()).device
    x = torch.as_tensor(inputs, dtype=torch.long, device=device)
    ids = torch.as_tensor(puzzle_ids, dtype=torch.long, device=device)
    saved = model.test_max_iter, model.test_tol
    model.test_max_iter, model.test_tol = iters, 0.0
    try:
        with torch.no_grad(), model.solves_apart() as log:
            carry = model.initial_carry(len(x))
            for _ in range(D):
                carry, _ = model(carry, x, ids)
            solves = list(log.forward)
    finally:
        model.test_max_iter, model.test_tol = saved
    if len(solves) != D * c.T:
        raise RuntimeError(f"expected {D * c.T} solves ({D} steps x T = {c.T}), the model made {len(solves)}")
    last = [solves[t * c.T + c.T - 1].history for t in range(D)]  # the recursion whose y the step reports
    h = np.asarray(last, dtype=np.float64)  # (D, iters, 2)
    mean, worst = h[..., 0], h[..., 1]
    at_cap = mean[:, c.max_iter - 1]

    def first_below(row):
        hit = np.flatnonzero(row < c.tol)
        return int(hit[0]) + 1 if len(hit) else None
    return {"rows": int(len(x)), "iters": iters, "trained_max_iter": c.max_iter, "tol": c.tol, "solver": c.solver,
            "mean_by_step": mean.round(6).tolist(), "max_by_step": worst.round(6).tolist(),
            "mean_at_trained_cap_by_step": at_cap.round(6).tolist(),
            "mean_at_end_by_step": mean[:, -1].round(6).tolist(),
            "iterations_to_tol_by_step": [first_below(r) for r in worst],
            "steps_within_tol_at_cap": int((worst[:, c.max_iter - 1] < c.tol).sum())}


def training_curves(metrics_path) -> dict | None:
    """Iterations and final residual of the z solves over training, from a run's metrics.jsonl: the training
    records (the solves since the record before; backward solves of the implicit gradient beside them) and the
    evaluations' own solves (the periodic ones, and the final one from eval.json beside it). None when the run
    logged no solve (not a fixed-point run, or no file)."""
    import json
    from pathlib import Path

    from ..train import read_metrics

    path = Path(metrics_path)
    if not path.is_file():
        return None
    keys = ("iter_mean", "iter_p90", "res_mean", "res_p90", "res_max", "converged")
    train = {k: [] for k in ("step", *keys, "bwd_iter_mean", "bwd_res_mean", "bwd_converged")}
    evals = {k: [] for k in ("step", *keys)}
    for r in read_metrics(path):
        if r.get("solver_solves"):
            train["step"].append(r["step"])
            for k in list(train)[1:]:
                train[k].append(r.get(f"solver_{k}"))
        s = (r.get("eval") or {}).get("solver")
        if "final_eval" in r and (path.parent / "eval.json").is_file():
            try:
                s = json.loads((path.parent / "eval.json").read_text()).get("solver")
            except json.JSONDecodeError:
                s = None
        if s and s.get("solves"):
            evals["step"].append(r["step"])
            for k in keys:
                evals[k].append(s.get(k))
    if not train["step"] and not evals["step"]:
        return None
    return {"train": train, "eval": evals}
