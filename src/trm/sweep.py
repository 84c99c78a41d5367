"""Accuracy against test-time compute: a grid of K, sigma, D, noise placement and early stops on one checkpoint.

One sampling run per (noise, sigma, seed) at the largest K and D of the grid, recording every step: the first K
rollouts of it are a K-rollout run and its state at step D is a D-step run (trm.sampling), and early stops are
derived from it exactly (`early_stopped`). Each run is cached in the output folder, so a killed sweep resumes.
Writes sweep.csv, sweep.json and three plots (accuracy against K, against sigma, against network calls).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .atomic import atomic_file, atomic_write_bytes, atomic_write_json
from .checks import check_range
from .data.format import Split
from .sampling import Rollouts, SamplerConfig, early_stopped, mean_over_seeds, rescued, sample, score

METRICS = ("best-q@K", "mode@K", "q-vote@K", "pass@K")


@dataclass
class SweepConfig:
    Ks: list[int] = field(default_factory=lambda: [1, 5, 10, 25, 100])
    sigmas: list[float] = field(default_factory=lambda: [0.1, 0.3, 1.0])
    Ds: list[int] = field(default_factory=lambda: [16])
    noises: list[str] = field(default_factory=lambda: ["z"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    stop_after: list[int] = field(default_factory=list)  # early-stop rules to price (consecutive steps q > margin)
    stop_margin: float = 0.0
    limit: int = 0

    def validate(self) -> None:
        for flag, values, low in (("--K", self.Ks, 1), ("--sigma", self.sigmas, 0), ("--D", self.Ds, 1),
                                  ("--stop-after", self.stop_after, 1)):
            if not values and flag != "--stop-after":
                raise ValueError(f"give at least one {flag} value")
            bad = [v for v in values if not (math.isfinite(v) and v >= low)]
            if bad:
                raise ValueError(f"{flag} values must be >= {low} (got {bad[0]})")
        if not self.seeds:
            raise ValueError("give at least one seed")
        check_range("--limit", self.limit, ge=0, note="0 = all")
        check_range("--stop-margin", self.stop_margin)
        for nz in self.noises:
            SamplerConfig(noise=nz).validate()

    def include(self, point: SamplerConfig) -> None:
        """Add a sampler's K, sigma and D to the grid (a paper's setting, so that its point is on every curve)."""
        self.Ks, self.sigmas, self.Ds = (sorted({*self.Ks, point.K}), sorted({*self.sigmas, point.sigma}),
                                         sorted({*self.Ds, point.D}))


def _save(path: Path, r: Rollouts) -> None:
    with atomic_file(path) as tmp:
        np.savez(tmp, steps=np.array(r.steps), q=r.q, answer=r.answer, steps_run=r.steps_run, correct=r.correct,
                 cells_ok=r.cells_ok, n_cells=r.n_cells, calls_per_step=r.calls_per_step,
                 meta=json.dumps(r.meta))


def _load(path: Path) -> Rollouts:
    with np.load(path) as z:
        return Rollouts(steps=z["steps"].tolist(), q=z["q"], answer=z["answer"], steps_run=z["steps_run"],
                        correct=z["correct"], cells_ok=z["cells_ok"], n_cells=z["n_cells"],
                        calls_per_step=int(z["calls_per_step"]), meta=json.loads(str(z["meta"])))


def run_identity(checkpoint, data, split: str, dtype: str) -> dict:
    """What a cached run depends on besides the grid: the weights (a hash of the file, so a retrained or another
    checkpoint into the same --out is not served the first one's rollouts), the dataset (its path and the hash
    of its meta.json), the split and the dtype (resolved: "auto" means different things on different machines)."""
    from .checkpoint import resolve_checkpoint
    ckpt = resolve_checkpoint(checkpoint)
    return {"checkpoint": str(ckpt.resolve()), "weights": _file_hash(ckpt / "model.safetensors"),
            "data": str(Path(data).resolve()), "data_meta": _file_hash(Path(data) / "meta.json"), "split": split,
            "dtype": dtype}


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()[:16]


def run_sweep(model, split: Split, cfg: SweepConfig, out_dir, *, dtype: str = "auto", max_rows: int = 0,
              memory_gb: float = 1.0, progress: bool = True, log=print, source: dict | None = None) -> dict:
    """The sweep; `source` (run_identity) keys the cache besides the grid: a cached run of another checkpoint,
    dataset, split or dtype is run again, not reused."""
    cfg.validate()
    out = Path(out_dir)
    cache = out / "runs"
    cache.mkdir(parents=True, exist_ok=True)
    n = min(len(split), cfg.limit) if cfg.limit else len(split)
    inputs, labels, ids = (np.asarray(a[:n]) for a in (split.inputs, split.labels, split.puzzle_ids))
    Dmax, Kmax = max(cfg.Ds), max(cfg.Ks)
    every = list(range(1, Dmax + 1))
    key = {"n": n, "D": Dmax, "source": source or {}}

    def cached(name: str, sc: SamplerConfig, seed: int) -> Rollouts:
        path = cache / f"{name}.npz"
        want = {**key, "K": sc.K, "sigma": sc.sigma, "noise": sc.noise, "seed": seed}
        if path.is_file():
            r = _load(path)
            if all(r.meta.get(k) == v for k, v in want.items() if k != "n") and len(r.q) == n:
                return r
        r = sample(model, inputs, ids, sc, labels=labels, seed=seed, record_steps=every, max_rows=max_rows,
                   memory_gb=memory_gb, dtype=dtype, progress=progress, desc=name)
        r.meta.update(n=n, source=source or {})
        _save(path, r)
        return r

    det = cached("deterministic", SamplerConfig(K=1, sigma=0.0, D=Dmax), 0)
    det_rows = [row for row in score(_at(det, cfg.Ds), [1])]
    rows = [{"noise": "none", "sigma": 0.0, "stop_after": 0, "deterministic": True, **r, "seeds": 1}
            for r in det_rows]
    rescue = []
    grid = [(nz, s) for nz in cfg.noises for s in cfg.sigmas if s > 0]
    for i, (nz, sigma) in enumerate(grid, 1):
        log(f"[{i}/{len(grid)}] noise {nz}, sigma {sigma:g}: K={Kmax}, D={Dmax}, seeds {cfg.seeds}, {n} puzzles")
        runs = [cached(f"{nz}_sigma{sigma:g}_seed{seed}", SamplerConfig(K=Kmax, sigma=sigma, D=Dmax, noise=nz), seed)
                for seed in cfg.seeds]
        for stop in [0, *cfg.stop_after]:
            variants = [_at(r if not stop else early_stopped(r, stop, cfg.stop_margin), cfg.Ds) for r in runs]
            for r in mean_over_seeds([score(v, cfg.Ks) for v in variants]):
                rows.append({"noise": nz, "sigma": sigma, "stop_after": stop, "deterministic": False, **r})
            if not stop:
                for r in mean_over_seeds([rescued(v, _at(det, cfg.Ds), cfg.Ks) for v in variants]):
                    rescue.append({"noise": nz, "sigma": sigma, **r})
    result = {"config": asdict(cfg), "source": source or {}, "n": n, "calls_per_step": det.calls_per_step,
              "rows": rows, "rescued": rescue}
    atomic_write_json(out / "sweep.json", result)
    _write_csv(out / "sweep.csv", rows)
    plots = plot(result, out)
    result["plots"] = [str(p) for p in plots]
    return result


def _at(r: Rollouts, Ds) -> Rollouts:
    """The rollouts at the recorded steps Ds only."""
    j = [r.steps.index(D) for D in sorted(Ds)]
    pick = lambda a: None if a is None else a[:, j]  # noqa: E731
    return replace(r, steps=sorted(Ds), q=pick(r.q), answer=pick(r.answer), steps_run=pick(r.steps_run),
                   correct=pick(r.correct), cells_ok=pick(r.cells_ok))


def _write_csv(path: Path, rows: list[dict]) -> None:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def plot(result: dict, out: Path) -> list[Path]:
    """acc_vs_K.png, acc_vs_sigma.png, acc_vs_compute.png; the deterministic run is marked in each."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = result["rows"]
    det = {r["D"]: r for r in rows if r["deterministic"]}
    noisy = [r for r in rows if not r["deterministic"] and not r["stop_after"]]
    if not noisy:
        return []
    cfg = result["config"]
    D0, sig0, nz0 = max(cfg["Ds"]), _main_sigma(cfg["sigmas"]), cfg["noises"][0]
    paths = []
    colours = {"best-q@K": "C0", "mode@K": "C1", "q-vote@K": "C2", "pass@K": "C3"}

    Ds = sorted(cfg["Ds"])[-4:]
    fig, axes = plt.subplots(1, len(Ds), figsize=(4.2 * len(Ds), 3.8), squeeze=False)
    for ax, D in zip(axes[0], Ds):
        sel = sorted((r for r in noisy if r["D"] == D and r["sigma"] == sig0 and r["noise"] == nz0),
                     key=lambda r: r["K"])
        for m in METRICS:
            ax.errorbar([r["K"] for r in sel], [r[m] for r in sel], yerr=[r.get(f"{m} std", 0) for r in sel],
                        marker="o", ms=4, capsize=2, label=m, color=colours[m])
        ax.axhline(det[D]["best-q@K"], color="k", ls="--", lw=1, label="deterministic")
        ax.plot([1], [det[D]["best-q@K"]], "k*", ms=12)
        ax.set(xscale="log", xlabel="K (rollouts per puzzle)", ylabel="exact accuracy", title=f"D {D}")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"noise on {nz0}, sigma {sig0:g}, {result['n']} puzzles, mean over {len(cfg['seeds'])} seed(s)",
                 fontsize=10)
    paths.append(_savefig(fig, out / "acc_vs_K.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    Kmax = max(cfg["Ks"])
    for D in sorted(cfg["Ds"]):
        for m, ls in (("best-q@K", "-"), ("pass@K", ":")):
            sel = sorted((r for r in noisy if r["D"] == D and r["K"] == Kmax and r["noise"] == nz0),
                         key=lambda r: r["sigma"])
            ax.plot([0.0] + [r["sigma"] for r in sel], [det[D]["best-q@K"]] + [r[m] for r in sel], ls, marker="o",
                    ms=4, label=f"{m} D={D}")
        ax.plot([0.0], [det[D]["best-q@K"]], "k*", ms=12)
    ax.set(xlabel="sigma (noise std)", ylabel="exact accuracy",
           title=f"K {Kmax}, noise on {nz0}; star: deterministic (sigma 0)")
    ax.legend(fontsize=8)
    paths.append(_savefig(fig, out / "acc_vs_sigma.png"))

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    styles = ["-", "--", ":", "-."]
    for c, (nz, s) in enumerate((nz, s) for nz in cfg["noises"] for s in cfg["sigmas"] if s > 0):
        for i, D in enumerate(sorted(cfg["Ds"])):
            for stop in [0, *cfg["stop_after"]]:
                if stop and D != D0:
                    continue  # early stops are priced at the largest D only
                sel = sorted((r for r in rows if not r["deterministic"] and r["noise"] == nz and r["sigma"] == s
                              and r["stop_after"] == stop and r["D"] == D), key=lambda r: r["K"])
                if sel:
                    ax.plot([r["calls_per_puzzle"] for r in sel], [r["best-q@K"] for r in sel], color=f"C{c}",
                            marker="x" if stop else "o", ms=4, ls=styles[i % 4] if not stop else (0, (1, 3)),
                            label=f"{nz} sigma {s:g} D {D}" + (f" stop after {stop}" if stop else ""))
    dd = sorted(det.values(), key=lambda r: r["D"])
    ax.plot([r["calls_per_puzzle"] for r in dd], [r["best-q@K"] for r in dd], "k*-", ms=10,
            label="deterministic (D grid)")
    ax.set(xscale="log", xlabel="network calls per puzzle (K x steps run x T(n+1))",
           ylabel="best-Q@K exact accuracy", title="accuracy against test-time compute (points: K)")
    ax.legend(fontsize=6, ncol=2)
    paths.append(_savefig(fig, out / "acc_vs_compute.png"))
    return paths


def _main_sigma(sigmas) -> float:
    pos = [s for s in sigmas if s > 0]
    return pos[len(pos) // 2] if pos else 0.0


def _savefig(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return path


def table(result: dict) -> str:
    """A plain-text table of the sweep: one line per (noise, sigma, stop rule, D, K)."""
    lines = [f"{'noise':>6} {'sigma':>6} {'stop':>5} {'D':>4} {'K':>4}  " + "  ".join(f"{m:>9}" for m in METRICS)
             + f"  {'calls/puzzle':>12}"]
    for r in result["rows"]:
        lines.append(f"{r['noise']:>6} {r['sigma']:>6g} {r['stop_after']:>5} {r['D']:>4} {r['K']:>4}  "
                     + "  ".join(f"{r[m]:>9.4f}" for m in METRICS) + f"  {r['calls_per_puzzle']:>12.0f}")
    return "\n".join(lines)
