"""`trm analyze`: parse, run the studies, write the report folder, print where it is."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def add_parser(sub) -> None:
    from .study import AnalysisConfig
    from .sae import SAEConfig
    a, s = AnalysisConfig(), SAEConfig()
    p = sub.add_parser("analyze", help="look inside the recursion: trajectories, attractors, SAE features, "
                                       "escape rates (a report folder)")
    p.add_argument("--checkpoint", required=True, help="run directory or checkpoint directory")
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--out", required=True, help="report folder to write (PNGs, report.json, report.md)")
    p.add_argument("--split", default="test", help="split to analyse (default test)")
    p.add_argument("--limit", type=int, default=a.limit,
                   help=f"puzzles analysed, the first N of the split (default {a.limit}: ~5 min for a 9x9 "
                        "sudoku9-cpu model on one CPU thread)")
    p.add_argument("--D", type=int, default=None, help="steps recorded (default 2 * N_sup; modes use N_sup)")
    p.add_argument("--latent-steps", action="store_true",
                   help="also record every call of f inside the supervision steps (latent_steps.png)")
    p.add_argument("--full-rows", type=int, default=a.full_rows,
                   help=f"puzzles whose full y, z are kept for the per-puzzle PCA and the SAE (default {a.full_rows})")
    p.add_argument("--record-dir", default=None,
                   help="keep the recording there (.npy arrays, docs/analysis.md); default: in memory, not kept")
    g = p.add_argument_group("attractor statistics")
    g.add_argument("--tol", type=float, default=a.tol,
                   help=f"fixed point / cycle when the lag distance stays under tol * state RMS (default {a.tol})")
    g.add_argument("--tail", type=int, default=a.tail, help=f"last steps that must satisfy it (default {a.tail})")
    g.add_argument("--max-lag", type=int, default=a.max_lag, help=f"longest period looked for (default {a.max_lag})")
    g.add_argument("--quick", type=int, default=a.quick,
                   help=f"quick success = correct from this step on (default {a.quick})")
    g.add_argument("--eps", type=float, default=a.eps, help=f"Lyapunov: initial perturbation std (default {a.eps})")
    g = p.add_argument_group("interventions on the deterministic failures")
    g.add_argument("--K", type=int, default=a.K, help=f"rollouts per failure (default {a.K})")
    g.add_argument("--sigma", type=float, default=a.sigma,
                   help=f"latent noise before every step (default {a.sigma}, PTRM's Sudoku setting)")
    g.add_argument("--init-sigma", type=float, default=a.init_sigma,
                   help=f"noise on the initial y, z only (default {a.init_sigma}: their own scale)")
    g.add_argument("--max-failures", type=int, default=a.max_failures,
                   help=f"rerun at most this many failures (default {a.max_failures})")
    g = p.add_argument_group("sparse autoencoder (on recorded z)")
    g.add_argument("--sae-features", type=int, default=s.features, help="dictionary size (default 4 * d)")
    g.add_argument("--sae-k", type=int, default=s.k, help=f"active features per vector, top-k (default {s.k})")
    g.add_argument("--sae-l1", type=float, default=s.l1,
                   help="an L1 penalty with this coefficient instead of top-k (e.g. 1e-3; default top-k)")
    g.add_argument("--sae-steps", type=int, default=s.steps, help=f"training steps (default {s.steps})")
    g = p.add_argument_group("fixed-point models (solver fpi or anderson): residual against iteration")
    g.add_argument("--solver-iters", type=int, default=a.solver_iters,
                   help=f"iterations every z solve gets, the tolerance off (default {a.solver_iters})")
    g.add_argument("--solver-rows", type=int, default=a.solver_rows,
                   help=f"on the first this many puzzles (default {a.solver_rows})")
    p.add_argument("--seed", type=int, default=0, help="seed of every noise draw and of the SAE")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "auto"],
                   help="fp32 by default: perturbations of 1e-3 are below bf16's resolution")
    p.add_argument("--device", default="auto", help="auto (CUDA, MPS, else CPU), cpu, cuda, cuda:1, ...")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_analyze)


def cmd_analyze(args: argparse.Namespace) -> None:
    import torch

    from ..checkpoint import load_model
    from ..cli.preflight import check_data_fits, check_flags, need_matplotlib
    from ..data.format import load_dataset
    from ..runtime import pick_device
    from .report import findings, write_report
    from .sae import SAEConfig
    from .study import AnalysisConfig, analyze

    out = Path(args.out)
    if out.exists() and not args.overwrite and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} already exists (pass --overwrite to replace it)")
    if args.overwrite:
        from ..atomic import check_replaceable
        check_replaceable(out, "report")  # refused now, not after the analysis
    check_flags(args, ("D", 1))  # --D 0 would silently mean the default
    cfg = AnalysisConfig(limit=args.limit, D=args.D or 0, latent_steps=args.latent_steps, full_rows=args.full_rows,
                         max_lag=args.max_lag, tol=args.tol, tail=args.tail, quick=args.quick, eps=args.eps,
                         K=args.K, sigma=args.sigma, init_sigma=args.init_sigma, max_failures=args.max_failures,
                         seed=args.seed, dtype=args.dtype, solver_iters=args.solver_iters,
                         solver_rows=args.solver_rows,
                         sae=SAEConfig(features=args.sae_features, k=args.sae_k, l1=args.sae_l1,
                                       steps=args.sae_steps, seed=args.seed))
    cfg.validate()
    need_matplotlib("trm analyze")  # the figures are written last: refuse before the compute, not after it
    ds = load_dataset(args.data)
    split = ds[args.split]
    device = pick_device(args.device)
    model, ckpt_cfg = load_model(args.checkpoint, device)
    check_data_fits(ds, model, ckpt_cfg, split)
    torch.manual_seed(args.seed)
    results, figdata = analyze(model, split, cfg, record_dir=args.record_dir, progress=not args.quiet)
    results["config"].update(checkpoint=str(args.checkpoint), data=str(args.data), split=args.split)
    if model.cfg.uses_solver:  # residual and iterations over training, from the run's own records
        from ..checkpoint import CheckpointError, run_dir_of
        from .solver import training_curves
        try:
            curves = training_curves(run_dir_of(args.checkpoint) / "metrics.jsonl")
        except CheckpointError:  # a copied checkpoint folder: no run records beside it
            curves = None
        if curves is not None:
            results["solver_training"] = figdata["solver_training"] = curves
    command = "trm " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["analyze"] else ""
    write_report(results, figdata, out, command=command or _command(args))
    print(f"report: {out / 'report.md'}")
    print(findings(results)["verdict"])


def _command(args) -> str:
    """The flags as given, for the report (when not called from the console script)."""
    skip = {"func", "command"}
    parts = ["trm", "analyze"]
    for k, v in vars(args).items():
        if k in skip or v is None or v is False:
            continue
        flag = "--" + k.replace("_", "-") if k not in ("D", "K") else "--" + k
        parts += [flag] if v is True else [flag, shlex.quote(str(v))]
    return " ".join(parts)
