"""The report folder of `trm analyze`: PNG figures, report.json (every number) and report.md (each figure with
a sentence of interpretation written from the numbers). The folder is built beside its destination and renamed
into place, so a killed run leaves no half-written report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..atomic import atomic_dir
from .dynamics import KINDS, MODES
from .landscape import fit_pca

COLORS = {"quick": "tab:green", "delayed": "tab:orange", "failure": "tab:red"}


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _med(summary: dict, mode: str, fmt: str = ".3g") -> str:
    s = summary.get(mode, {})
    return "n/a" if "median" not in s else format(s["median"], fmt)


# --- findings: one sentence per study, from the numbers -------------------------------------------------------
def findings(r: dict) -> dict[str, str]:
    acc, counts = r["accuracy"], r["modes"]["counts"]
    P, N = r["puzzles"], r["N_sup"]
    out = {"accuracy": (f"The model solves {_pct(acc['exact_at_N_sup'])} of {P} puzzles exactly at N_sup = {N} "
                        f"({_pct(acc['cell_at_N_sup'])} of cells) and {_pct(acc['exact_at_D'])} after D = {r['D']} "
                        f"steps; {counts['quick']} quick successes, {counts['delayed']} delayed, "
                        f"{counts['failure']} failures.")}
    att = r["attractors"]["by_mode"]
    parts = []
    for m in MODES:
        a = att[m]
        if a["n"]:
            per = ", ".join(f"period {p}: {n}" for p, n in a["periods"].items())
            parts.append(f"{m} runs: fixed point {a['fixed']}/{a['n']}, cycle {a['cycle']}/{a['n']}"
                         + (f" ({per})" if per else "") + f", neither {a['neither']}/{a['n']} (median last-steps "
                         f"move {_med(r['attractors']['tail_step_distance'], m)} of the state size)")
    out["attractors"] = "At step D, " + "; ".join(parts) + f" (tolerance {r['attractors']['tol']})."
    ly = r["lyapunov"]
    parts = [f"{m}: median lambda {_med(ly['lambda'], m, '+.3f')} per step, positive in "
             f"{_pct(ly['positive_fraction'][m])}, final answers differ in {_pct(ly['final_answers_differ'][m])}"
             for m in MODES if ly["lambda"][m]["n"]]
    out["lyapunov"] = (f"Two runs started {ly['eps']:g} apart: " + "; ".join(parts) + ". Negative: nearby runs "
                       "merge (an attractor); positive: they separate.")
    out["verdict"] = verdict(r)
    pl = r["plateaus"]
    parts = [f"{m}: loss flat from step {_med(pl['plateau_from'], m, '.0f')} at {_med(pl['loss_at_N_sup'], m)}"
             for m in MODES if pl["plateau_from"][m]["n"]]
    out["plateaus"] = "Loss plateaus (median): " + "; ".join(parts) + "."
    h = r["hypothesis"]["answer_settle_step"]
    out["hypothesis"] = "The predicted answer stops changing at step (median) " + ", ".join(
        f"{_med(h, m, '.0f')} for {m} runs" for m in MODES if h[m]["n"]) + f" of {N}."
    if "sae" in r:
        s = r["sae"]
        fs = s["feature_settle_step"]
        kinds = s["feature_kinds"]
        fk = "; ".join(f"{m}: fixed {kinds[m]['fixed']}, cycle {kinds[m]['cycle']}, neither {kinds[m]['neither']}"
                       for m in MODES if kinds[m]["n"])
        out["sae"] = (f"A {'top-' + str(s['k']) if s['k'] else 'L1'} sparse autoencoder with {s['features']} "
                      f"features reconstructs held-out z with R^2 = {s['r2']:.3f} ({s['dead_features']} dead "
                      f"features). Active features settle at step (median) " + ", ".join(
                          f"{_med(fs, m, '.0f')} for {m}" for m in MODES if fs[m]["n"])
                      + f"; the feature trajectories are {fk}.")
    if "solver" in r:
        s = r["solver"]
        cap = s["mean_at_trained_cap_by_step"]
        reach = [k for k in s["iterations_to_tol_by_step"] if k is not None]
        out["solver"] = (f"The {s['solver']} z solve on {s['rows']} puzzles: mean relative residual "
                         f"{cap[0]:.2g} at step 1 and {cap[-1]:.2g} at step {len(cap)} after the trained cap of "
                         f"{s['trained_max_iter']} iterations, {s['mean_at_end_by_step'][-1]:.2g} after "
                         f"{s['iters']}; the worst puzzle is within tol {s['tol']:g} at the cap in "
                         f"{s['steps_within_tol_at_cap']} of {len(cap)} steps"
                         + (f", and reaches it after {min(reach)}-{max(reach)} iterations in {len(reach)} steps."
                            if reach else f", and never within {s['iters']} iterations."))
    if "solver_training" in r:
        tr, ev = r["solver_training"]["train"], r["solver_training"]["eval"]
        parts = []
        for name, d in (("training", tr), ("the evaluations (periodic, then final)", ev)):
            pts = [(x, v, c) for x, v, c in zip(d["step"], d["res_mean"], d["converged"]) if v is not None]
            if pts:
                (s0, v0, c0), (s1, v1, c1) = pts[0], pts[-1]
                parts.append(f"in {name} the mean final residual went from {v0:.2g} (step {s0}, "
                             f"{100 * (c0 or 0):.0f}% of solves within tol) to {v1:.2g} (step {s1}, "
                             f"{100 * (c1 or 0):.0f}%)")
        out["solver_training"] = ("Over training, " + "; ".join(parts) + ".") if parts else \
            "The run recorded no solve."
    iv = r["interventions"]
    if iv["failures"] == 0:
        out["interventions"] = "No deterministic failure to rescue."
    else:
        bits = []
        if "latent_noise" in iv:
            ln, ini = iv["latent_noise"], iv["init_noise"]
            bits += [f"latent noise (sigma {ln['sigma']}) solves {_pct(ln['pass@K'])} with some rollout, "
                     f"{_pct(ln['best-q@K'])} with best-Q",
                     f"initial-state noise only (sigma {ini['sigma']}) {_pct(ini['pass@K'])} / "
                     f"{_pct(ini['best-q@K'])} ({ini['distinct_answers']:.1f} distinct answers of {iv['K']})"]
        if "more_steps" in iv:
            lost = iv["more_steps"]["lost"]
            bits.append(f"{iv['more_steps']['D']} steps instead of {N} solves {_pct(iv['more_steps']['solved'])}"
                        + (f" (and loses {_pct(lost)} of the solved)" if lost is not None else ""))
        out["interventions"] = (f"Of {iv['failures']} failures ({iv['tested']} tested, K = {iv['K']}): "
                                + "; ".join(bits) + ".")
    pca = r.get("pca", {})
    if pca:
        out["pca"] = (f"Across puzzles the first two principal components hold "
                      f"{100 * sum(pca['y_explained_variance']):.0f}% of the variance of the cell-mean y and "
                      f"{100 * sum(pca['z_explained_variance']):.0f}% of z; " + out["hypothesis"][0].lower()
                      + out["hypothesis"][1:])
    lat = r.get("latent_steps", {}).get("median_change_by_call_at_N_sup", {})
    if lat:
        labels = r["latent_steps"]["labels"]
        per_mode = [f"{m}: " + ", ".join(f"{lb} {v:.1e}" for lb, v in zip(labels, vals)) for m, vals in lat.items()]
        out["latent"] = ("At step N_sup, the median change of each call of f from the previous call of its kind: "
                         + "; ".join(per_mode) + ".")
    ini = iv.get("init_noise", {})
    if "rollout_distance_by_step" in ini:
        d = ini["rollout_distance_by_step"]
        trend = "converge" if d[-1] < d[0] else "separate"
        out["initialisation"] = (
            f"Failures rerun from initial states with noise of std {ini['sigma']}: the rollouts {trend} (median "
            f"distance from the first rollout {d[0]:.2g} of the state size after step 1, {max(d):.2g} at most, "
            f"{d[-1]:.2g} after step {len(d)}) and end on {ini['distinct_answers']:.2f} distinct answers of "
            f"{iv['K']}: " + ("the end point is set by the initial state." if ini["distinct_answers"] > 1.5 else
                              "the end point hardly depends on the initial state."))
    return out


def verdict(r: dict) -> str:
    """Which picture the failures support: settle into attractors (fixed points or cycles, nearby runs merge) or
    wander (no attractor, nearby runs separate)."""
    a, ly = r["attractors"]["by_mode"]["failure"], r["lyapunov"]["lambda"]["failure"]
    if not a["n"]:
        return "There are no failures to test the two pictures of failed runs on."
    settled = (a["fixed"] + a["cycle"]) / a["n"]
    lam = ly.get("median", float("nan"))
    nums = (f"{a['fixed'] + a['cycle']} of {a['n']} failures settle (fixed point or cycle), median lambda "
            f"{lam:+.3f} per step")
    if settled >= 0.5 and lam <= 0:
        return f"Failures settle into attractors: {nums}. This supports the attractor picture."
    if settled < 0.5 and lam > 0:
        return f"Failures wander: {nums}. This supports the picture of wandering failures (positive exponent)."
    return f"Mixed: {nums}; neither picture holds cleanly."


# --- figures --------------------------------------------------------------------------------------------------
def _mode_lines(ax, values, modes, label_fmt="{m} (n={n})", log=False, start=1):
    x = np.arange(start, start + values.shape[1])
    for g, m in enumerate(MODES):
        sel = modes == g
        v = values[sel]
        v = v[np.isfinite(v).all(1)] if v.ndim == 2 else v
        if len(v):
            ax.plot(x, np.median(v, 0), color=COLORS[m], label=label_fmt.format(m=m, n=int(sel.sum())))
            ax.fill_between(x, np.quantile(v, 0.25, 0), np.quantile(v, 0.75, 0), color=COLORS[m], alpha=0.15)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("supervision step")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _fig_steps(plt, f: dict, r: dict):
    fig, axs = plt.subplots(2, 2, layout="constrained", figsize=(10, 7))
    x = np.arange(1, f["D"] + 1)
    ax = axs[0, 0]
    ax.plot(x, f["exact"].mean(0), label="exact")
    ax.plot(x, np.nanmean(f["cell"], 0), label="cells")
    ax.axvline(f["N"], color="gray", ls=":")
    ax.set_title("accuracy by step (dotted: N_sup)")
    ax.set_xlabel("supervision step")
    ax.legend(fontsize=7)
    _mode_lines(axs[0, 1], f["loss"], f["modes"], log=True)
    axs[0, 1].set_title("loss (median, quartiles) by mode")
    _mode_lines(axs[1, 0], f["q"], f["modes"])
    axs[1, 0].set_title("q_halt by mode")
    rel = np.maximum(f["lag"][:, 1:, 0] / f["norm"][:, 1:], 1e-12)
    _mode_lines(axs[1, 1], rel, f["modes"], log=True, start=2)
    axs[1, 1].set_title("||s_t - s_(t-1)|| / ||s_t|| by mode (from step 2)")
    return fig


def _fig_landscape(plt, f: dict, r: dict):
    fig, axs = plt.subplots(2, 2, layout="constrained", figsize=(11, 9))
    for row, name in enumerate(("y", "z")):
        xy = f[f"pca_{name}"]  # (P, D, 2)
        steps = np.broadcast_to(np.arange(1, f["D"] + 1), xy.shape[:2])
        ax = axs[row, 0]
        for p in range(min(len(xy), 60)):
            ax.plot(xy[p, :, 0], xy[p, :, 1], color="gray", lw=0.4, alpha=0.4)
        sc = ax.scatter(xy[..., 0].ravel(), xy[..., 1].ravel(), c=steps.ravel(), cmap="viridis", s=5)
        fig.colorbar(sc, ax=ax, label="step")
        ax.set_title(f"PCA of mean-over-cells {name}, by step")
        ax = axs[row, 1]
        for g, m in enumerate(MODES):
            sel = f["modes"] == g
            if sel.any():
                ax.scatter(xy[sel, :, 0].ravel(), xy[sel, :, 1].ravel(), color=COLORS[m], s=4, alpha=0.5,
                           label=f"{m} (n={int(sel.sum())})")
                ax.scatter(xy[sel, -1, 0], xy[sel, -1, 1], color=COLORS[m], s=30, marker="x")
        ax.set_title(f"{name} by outcome (x: step D)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        for a in axs[row]:
            a.set_xlabel("PC1")
            a.set_ylabel("PC2")
    return fig


def _fig_puzzles(plt, f: dict, r: dict):
    items = f.get("pca_puzzles", [])
    if not items:
        return None
    cols = min(3, len(items))
    rows = (len(items) + cols - 1) // cols
    fig, axs = plt.subplots(rows, cols, layout="constrained", figsize=(4.2 * cols, 3.8 * rows), squeeze=False)
    for ax in axs.ravel()[len(items):]:
        ax.axis("off")
    for ax, it in zip(axs.ravel(), items):
        xy = it["xy"]
        ax.plot(xy[:, 0], xy[:, 1], color="gray", lw=0.6)
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=it["cell"], cmap="RdYlGn", vmin=0, vmax=1, s=25,
                        edgecolors=np.where(it["q"] > 0, "black", "none"))
        ax.annotate("1", xy[0])
        ax.annotate(str(len(xy)), xy[-1])
        ax.set_title(f"row {it['row']} ({it['mode']}), PC1-2 {100 * it['explained'].sum():.0f}% var", fontsize=8)
    fig.colorbar(sc, ax=axs.ravel().tolist(), label="cell accuracy (black edge: q_halt > 0)")
    return fig


def _fig_init_rollouts(plt, f: dict, r: dict):
    ir = f.get("init_rollouts")
    if ir is None or len(ir["y_mean"]) == 0:
        return None
    n = len(ir["y_mean"])
    fig, axs = plt.subplots(1, n + 1, layout="constrained", figsize=(4.2 * (n + 1), 3.8), squeeze=False)
    axs = axs[0]
    for p in range(n):
        ys, det = ir["y_mean"][p], ir["det"][p]  # (K, N, d), (N, d)
        pca = fit_pca(np.concatenate([ys.reshape(-1, ys.shape[-1]), det]), k=2)
        ax = axs[p]
        for k in range(len(ys)):
            xy = pca.transform(ys[k])
            ok = ir["exact"][p, k, -1]
            ax.plot(xy[:, 0], xy[:, 1], color="tab:green" if ok else "tab:blue", lw=0.8, alpha=0.8)
            ax.scatter(xy[-1, 0], xy[-1, 1], color="tab:green" if ok else "tab:blue", marker="x")
        xy = pca.transform(det)
        ax.plot(xy[:, 0], xy[:, 1], color="black", lw=1.5)
        ax.scatter(xy[-1, 0], xy[-1, 1], color="black", marker="x")
        ax.set_title(f"failure {p + 1}: black deterministic, blue/green noisy init\n(green: solved)", fontsize=8)
    ax = axs[-1]
    if "init_dist" not in f:  # K = 1: one rollout per failure, no distance between rollouts
        ax.set_axis_off()
        return fig
    x = np.arange(1, len(f["init_dist"]) + 1)
    ax.plot(x, f["init_dist"], label="initial-state noise")
    ax.plot(x, f["z_dist"], label="latent noise each step")
    ax.set_yscale("log")
    ax.set_xlabel("supervision step")
    ax.set_title("median distance between rollouts / state RMS", fontsize=8)
    ax.legend(fontsize=7)
    return fig


def _fig_attractors(plt, f: dict, r: dict):
    fig, axs = plt.subplots(1, 2, layout="constrained", figsize=(10, 3.8))
    tail = min(r["attractors"]["tail"], f["D"] - 1)
    rel = f["lag"][:, -tail:, 0] / f["norm"][:, -tail:]
    worst = np.nanmax(rel, 1)
    bins = np.logspace(np.log10(max(np.nanmin(worst), 1e-8)), np.log10(max(np.nanmax(worst), 1e-7)) + 1e-9, 30)
    for g, m in enumerate(MODES):
        sel = f["modes"] == g
        if sel.any():
            axs[0].hist(worst[sel], bins=bins, color=COLORS[m], alpha=0.5, label=m)
    axs[0].axvline(r["attractors"]["tol"], color="black", ls=":")
    axs[0].set_xscale("log")
    axs[0].set_title(f"largest step move over the last {tail} steps / state RMS (dotted: tol)", fontsize=8)
    if axs[0].get_legend_handles_labels()[0]:
        axs[0].legend(fontsize=7)
    by = r["attractors"]["by_mode"]
    x = np.arange(len(KINDS))
    for i, m in enumerate(MODES):
        if by[m]["n"]:
            axs[1].bar(x + 0.27 * (i - 1), [by[m][k] / by[m]["n"] for k in KINDS], width=0.27, color=COLORS[m],
                       label=f"{m} (n={by[m]['n']})")
    axs[1].set_xticks(x, KINDS)
    axs[1].set_ylabel("share of runs")
    axs[1].set_title("attractor kind at the end of the recording", fontsize=8)
    if axs[1].get_legend_handles_labels()[0]:
        axs[1].legend(fontsize=7)
    return fig


def _fig_lyapunov(plt, f: dict, r: dict):
    fig, axs = plt.subplots(1, 2, layout="constrained", figsize=(10, 3.8))
    d = f["pair_dist"]
    x = np.arange(d.shape[1])
    for g, m in enumerate(MODES):
        sel = f["modes"] == g
        if sel.any():
            for row in d[sel][:15]:
                axs[0].plot(x, row, color=COLORS[m], lw=0.4, alpha=0.4)
            axs[0].plot(x, np.median(d[sel], 0), color=COLORS[m], lw=2, label=f"{m} median")
    axs[0].set_yscale("log")
    axs[0].set_xlabel("supervision step (0: perturbed start)")
    axs[0].set_title("distance between two runs started eps apart / state RMS", fontsize=8)
    if axs[0].get_legend_handles_labels()[0]:
        axs[0].legend(fontsize=7)
    lam = f["lam"]
    bins = np.linspace(np.min(lam) - 1e-6, np.max(lam) + 1e-6, 30)
    for g, m in enumerate(MODES):
        sel = f["modes"] == g
        if sel.any():
            axs[1].hist(lam[sel], bins=bins, color=COLORS[m], alpha=0.5, label=m)
    axs[1].axvline(0, color="black", ls=":")
    axs[1].set_xlabel("finite-time largest Lyapunov exponent (per step)")
    if axs[1].get_legend_handles_labels()[0]:
        axs[1].legend(fontsize=7)
    return fig


def _fig_sae(plt, f: dict, r: dict):
    s = f.get("sae")
    if s is None:
        return None
    mean, modes = s["mean"], s["modes"]
    show = [int(np.flatnonzero(modes == g)[0]) for g in (2, 0, 1) if (modes == g).any()][:2]
    fig, axs = plt.subplots(1, len(show) + 1, layout="constrained", figsize=(4.5 * (len(show) + 1), 4), squeeze=False)
    axs = axs[0]
    for ax, r in zip(axs, show):
        a = mean[r]  # (N, F)
        top = np.argsort(-a.std(0))[:24]
        im = ax.imshow(a[:, top].T, aspect="auto", cmap="magma", origin="lower",
                       extent=(0.5, a.shape[0] + 0.5, -0.5, len(top) - 0.5))
        ax.set_xlabel("supervision step")
        ax.set_ylabel("feature (24 most variable)")
        ax.set_title(f"a {MODES[modes[r]]} run: mean activation over cells", fontsize=8)
        fig.colorbar(im, ax=ax)
    ax = axs[-1]
    _mode_lines(ax, s["overlap"], modes)
    ax.axhline(0.9, color="gray", ls=":")
    ax.set_title("Jaccard overlap of active features with the last step", fontsize=8)
    return fig


def _fig_interventions(plt, f: dict, r: dict):
    iv = r["interventions"]
    if "latent_noise" not in iv and "more_steps" not in iv:
        return None
    labels, passk, bestq = [], [], []
    if "latent_noise" in iv:
        for key, name in (("latent_noise", f"latent noise\nsigma {iv['latent_noise']['sigma']}"),
                          ("init_noise", f"initial noise\nsigma {iv['init_noise']['sigma']}")):
            labels.append(name)
            passk.append(iv[key]["pass@K"] or 0)
            bestq.append(iv[key]["best-q@K"] or 0)
    if "more_steps" in iv and iv["more_steps"]["solved"] is not None:
        labels.append(f"{iv['more_steps']['D']} steps\n(deterministic)")
        passk.append(iv["more_steps"]["solved"])
        bestq.append(iv["more_steps"]["solved"])
    if not labels:
        return None
    fig, ax = plt.subplots(layout="constrained", figsize=(6, 3.8))
    x = np.arange(len(labels))
    ax.bar(x - 0.2, passk, width=0.4, label=f"pass@K (K={iv['K']})")
    ax.bar(x + 0.2, bestq, width=0.4, label="best-Q@K")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of deterministic failures solved")
    ax.set_title(f"escape rates ({iv['tested']} of {iv['failures']} failures)", fontsize=9)
    ax.legend(fontsize=7)
    return fig


def _col_median(a: np.ndarray) -> np.ndarray:
    """Median of each column over its finite entries (NaN for a column with none), without numpy's warning."""
    return np.array([np.median(c[np.isfinite(c)]) if np.isfinite(c).any() else np.nan for c in a.T])


def _fig_latent(plt, f: dict, r: dict):
    ch = f.get("latent_change")
    if ch is None:
        return None
    labels = f["latent_calls"]
    fig, ax = plt.subplots(layout="constrained", figsize=(10, 3.8))
    flat = ch.reshape(ch.shape[0], -1)  # (R, D * calls)
    x = np.arange(1, flat.shape[1] + 1) / len(labels)
    for g, m in enumerate(MODES):
        sel = f["modes"] == g
        if sel.any():
            v = _col_median(flat[sel])
            ax.plot(x, v, color=COLORS[m], lw=0.8, label=m)
    ax.set_yscale("log")
    ax.set_xlabel(f"supervision step (each split into its {len(labels)} calls of f: {labels[0]} .. {labels[-1]})")
    ax.set_title("RMS change of each call's output from the previous call of the same kind (z or y), median",
                 fontsize=8)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return fig


def _fig_solver(plt, f: dict, r: dict):
    s = f.get("solver")
    if s is None:
        return None
    fig, ax = plt.subplots(layout="constrained", figsize=(6.5, 3.8))
    mean, worst = np.asarray(s["mean_by_step"]), np.asarray(s["max_by_step"])
    it = np.arange(1, mean.shape[1] + 1)
    D = len(mean)
    for t in sorted({0, D // 2, D - 1}):
        line, = ax.plot(it, mean[t], lw=1.8, label=f"step {t + 1}: mean")
        ax.plot(it, worst[t], lw=0.9, ls="--", color=line.get_color(), label=f"step {t + 1}: worst")
    ax.axhline(s["tol"], color="black", ls=":", lw=1, label=f"tol {s['tol']:g}")
    ax.axvline(s["trained_max_iter"], color="gray", ls="-.", lw=1, label=f"trained cap {s['trained_max_iter']}")
    ax.set_yscale("log")
    ax.set_xlabel(f"{s['solver']} iteration (the last z solve of the step)")
    ax.set_ylabel("relative residual ||g(z) - z|| / ||g(z)||")
    ax.legend(fontsize=7)
    return fig


def _fig_solver_training(plt, f: dict, r: dict):
    s = f.get("solver_training")
    if s is None:
        return None
    tr, ev = s["train"], s["eval"]
    fig, (a, b) = plt.subplots(1, 2, layout="constrained", figsize=(9, 3.6))

    def plot(ax, d, key, **kw):
        pts = [(x, v) for x, v in zip(d["step"], d[key]) if v is not None]
        if pts:
            ax.plot(*zip(*pts), **kw)
    plot(a, tr, "res_mean", lw=1.6, label="training: mean")
    plot(a, tr, "res_max", lw=0.9, ls="--", label="training: worst")
    plot(a, tr, "bwd_res_mean", lw=1.0, ls=":", label="training: backward solve, mean")
    plot(a, ev, "res_mean", marker="o", ls="none", label="evaluations: mean")
    tol = (r.get("solver") or {}).get("tol")
    if tol:
        a.axhline(tol, color="black", ls=":", lw=1, label=f"tol {tol:g}")
    a.set_yscale("log")
    a.set_xlabel("training step")
    a.set_ylabel("final relative residual of a solve")
    a.legend(fontsize=7)
    plot(b, tr, "iter_mean", lw=1.6, label="training: iterations (mean)")
    plot(b, ev, "iter_mean", marker="o", ls="none", label="evaluations: iterations (mean)")
    b.set_xlabel("training step")
    b.set_ylabel("iterations per solve")
    c = b.twinx()
    plot(c, tr, "converged", lw=1.0, color="gray", ls="--", label="training: share within tol")
    plot(c, ev, "converged", marker="s", ls="none", color="gray", label="evaluations: share within tol")
    c.set_ylim(-0.02, 1.02)
    c.set_ylabel("share of solves within tol")
    h1, l1 = b.get_legend_handles_labels()
    h2, l2 = c.get_legend_handles_labels()
    b.legend(h1 + h2, l1 + l2, fontsize=7)
    return fig


FIGURES = (  # file, builder(plt, figure data, results), the finding that interprets it, caption
    ("steps.png", _fig_steps, "accuracy",
     "Accuracy, loss, q_halt and the step-to-step move of the state over the supervision steps."),
    ("landscape_across.png", _fig_landscape, "pca",
     "PCA of every trajectory on shared axes (mean over cells of y and z), coloured by step and by outcome."),
    ("landscape_puzzles.png", _fig_puzzles, "hypothesis",
     "Per-puzzle PCA of the full y over steps (colour: cell accuracy; black edge: q_halt > 0)."),
    ("attractors.png", _fig_attractors, "attractors",
     "How far the state still moves at the end, and the fixed point / cycle / neither classification."),
    ("lyapunov.png", _fig_lyapunov, "lyapunov",
     "Divergence of two runs started eps apart, and the finite-time largest Lyapunov exponents."),
    ("sae.png", _fig_sae, "sae",
     "Sparse-autoencoder features of z across steps, and when the active set stops changing."),
    ("init_rollouts.png", _fig_init_rollouts, "initialisation",
     "Failures rerun from noisy initial states, in each puzzle's PCA, and how far rollouts drift apart."),
    ("interventions.png", _fig_interventions, "interventions",
     "Escape rates of the deterministic failures."),
    ("latent_steps.png", _fig_latent, "latent",
     "Inside the supervision steps: how much each call of f changes its output."),
    ("solver_residual.png", _fig_solver, "solver",
     "Fixed-point models: the relative residual of the z solve after each iteration (the cap raised, no "
     "tolerance), at the first, middle and last supervision step."),
    ("solver_training.png", _fig_solver_training, "solver_training",
     "Fixed-point models: the z solves' final residual, iterations and share within tolerance over training "
     "(the run's metrics.jsonl: training records and periodic evaluations)."),
)


def write_report(results: dict, figdata: dict, out: str | Path, *, command: str = "") -> Path:
    """Write out/ (PNGs, report.json, report.md) atomically; returns the folder."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out = Path(out)
    with atomic_dir(out, kind="report") as tmp:
        text = findings(results)
        results = {**results, "command": command, "findings": text}
        written = []
        for name, build, key, caption in FIGURES:
            fig = build(plt, figdata, results)
            if fig is None:
                continue
            fig.savefig(tmp / name, dpi=90)
            plt.close(fig)
            written.append((name, key, caption))
        results["figures"] = [w[0] for w in written]
        (tmp / "report.json").write_text(json.dumps(_jsonable(results), indent=2) + "\n")
        (tmp / "report.md").write_text(_markdown(results, text, written, command))
    return out


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def _markdown(r: dict, text: dict, figures: list, command: str) -> str:
    acc, iv = r["accuracy"], r["interventions"]
    lines = [f"# Inside the recursion: {r['config'].get('checkpoint', 'checkpoint')}", ""]
    if command:
        lines += ["```", command, "```", ""]
    lines += ["## Findings", "", f"**{text['verdict']}**", ""]
    lines += [f"- {text[k]}" for k in ("accuracy", "attractors", "lyapunov", "plateaus", "hypothesis", "sae",
                                       "interventions", "initialisation") if k in text]
    lines += ["", "## Key numbers", "", "| quantity | quick | delayed | failure |", "|---|---|---|---|"]
    counts = r["modes"]["counts"]
    lines.append("| runs | " + " | ".join(str(counts[m]) for m in MODES) + " |")
    rows = [("q_halt at N_sup (median)", r["modes"]["q_halt_at_N_sup"], "+.2f"),
            ("loss at N_sup (median)", r["plateaus"]["loss_at_N_sup"], ".3g"),
            ("loss flat from step (median)", r["plateaus"]["plateau_from"], ".0f"),
            ("answer settles at step (median)", r["hypothesis"]["answer_settle_step"], ".0f"),
            ("last-steps move / state (median)", r["attractors"]["tail_step_distance"], ".2e"),
            ("step cosine (-1: alternating)", r["attractors"]["step_cosine"], "+.2f"),
            ("Lyapunov lambda per step (median)", r["lyapunov"]["lambda"], "+.3f")]
    if "sae" in r:
        rows.append(("SAE features settle at step (median)", r["sae"]["feature_settle_step"], ".0f"))
    for name, s, fmt in rows:
        lines.append(f"| {name} | " + " | ".join(_med(s, m, fmt) for m in MODES) + " |")
    for m in MODES:
        a = r["attractors"]["by_mode"][m]
        if a["n"]:
            lines.append(f"| {m}: fixed / cycle / neither | " + " | ".join(
                f"{a['fixed']} / {a['cycle']} / {a['neither']}" if mm == m else "" for mm in MODES) + " |")
    lines += ["", f"Exact accuracy {_pct(acc['exact_at_N_sup'])} at N_sup, {_pct(acc['exact_at_D'])} at D = "
                  f"{r['D']}. Interventions: {iv['failures']} failures, {iv['tested']} tested.", ""]
    lines += ["## Figures", ""]
    for name, key, caption in figures:
        lines += [f"### {name[:-4].replace('_', ' ')}", "", f"![{name}]({name})", "", f"{caption} {text.get(key, '')}",
                  ""]
    lines += ["## Definitions", "",
              f"- Modes: {'; '.join(f'{k}: {v}' for k, v in r['modes']['thresholds'].items())}.",
              f"- Attractors: {r['attractors']['rule']}.", f"- Lyapunov: {r['lyapunov']['rule']}.",
              f"- Plateaus: {r['plateaus']['rule']}."]
    if "sae" in r:
        lines += [f"- SAE settle: {r['sae']['feature_settle_rule']}; periodicity: {r['sae']['periodicity_rule']}."]
    lines += ["", "Every number is in report.json. Timings (s): "
              + ", ".join(f"{k} {v}" for k, v in r["timings_s"].items()), ""]
    return "\n".join(lines)
