"""`trm models` (the shipped models and their cards) and `trm models ship RUN NAME` (make one: trm.shipped)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..sampling import SamplerConfig
from ..shipped import list_models, models_dir, render_again, ship
from .common import UserError
from .preflight import check_flags


def add_parsers(sub) -> None:
    mp = sub.add_parser("models", help="list the shipped models (models/NAME: weights and model card), or ship one")
    mp.add_argument("--dir", default=None, help="the models folder (default: $TRM_MODELS, else ./models, else the "
                    "repository's models/)")
    mp.set_defaults(func=cmd_models)
    msub = mp.add_subparsers(dest="models_command")
    sp = msub.add_parser("ship", help="copy a run's evaluated weights to models/NAME and write its model card from "
                         "fresh evaluations")
    sp.add_argument("run", help="run or checkpoint directory")
    sp.add_argument("name", help="the model's name (a folder under models/)")
    sp.add_argument("--dir", default=argparse.SUPPRESS, help="the models folder (as for trm models)")
    sp.add_argument("--data", default=None, help="held-out data (default: the dataset the run trained on)")
    sp.add_argument("--hard", default=None, help="a dataset of harder puzzles of the same size (its test split)")
    sp.add_argument("--limit", type=int, default=0, help="held-out puzzles evaluated (0 = all: the run's final "
                    "evaluation when it is of these weights)")
    sp.add_argument("--hard-limit", type=int, default=0, help="hard-pool puzzles evaluated (0 = all)")
    sp.add_argument("--solve-limit", type=int, default=200,
                    help="puzzles solved as `trm solve` and `trm solve --verify` do (0 = skip)")
    sp.add_argument("--verify-budget", type=int, default=64, help="rollouts --verify may try per puzzle")
    sp.add_argument("--ptrm-limit", type=int, default=200, help="puzzles for the PTRM row (0 = skip)")
    sp.add_argument("--K", type=int, default=8, help="PTRM rollouts")
    sp.add_argument("--sigma", type=float, default=0.3, help="PTRM noise std")
    sp.add_argument("--noise", default="z", choices=["z", "y", "init"])
    sp.set_defaults(func=cmd_ship)
    cp = msub.add_parser("card", help="rewrite models/NAME/README.md from its card.json (no evaluation)")
    cp.add_argument("name", help="the model's name (a folder under models/)")
    cp.add_argument("--dir", default=argparse.SUPPRESS, help="the models folder (as for trm models)")
    cp.set_defaults(func=cmd_card)


def cmd_models(args) -> None:
    root = models_dir() if args.dir is None else Path(args.dir)
    found = list_models(root)
    if not found:
        raise UserError(f"no shipped models in {root} (make one with `trm models ship RUN NAME`)")
    print(f"{'name':14s} {'task':14s} {'params':>9s} {'held-out exact':>15s} {'trm solve':>10s}  card")
    for m in found:
        c = m["card"] or {}
        solve = c.get("solve", {}).get("default", {}).get("exact_accuracy")
        held = c.get("held_out", {}).get("exact_accuracy")
        print(f"{m['name']:14s} {str(m['size']) + 'x' + str(m['size']) + ' ' + m['task']:14s} "
              f"{c.get('params', 0):>9,} {'-' if held is None else f'{held:.1%}':>15s} "
              f"{'-' if solve is None else f'{solve:.1%}':>10s}  {m['folder'] / 'README.md' if m['card'] else '(none)'}")


def cmd_ship(args) -> None:
    check_flags(args, ("limit", 0, "0 = all"), ("hard_limit", 0, "0 = all"), ("solve_limit", 0, "0 = skip"), ("ptrm_limit", 0, "0 = skip"),
                ("verify_budget", 1), ("K", 1))
    root = None if args.dir is None else Path(args.dir)
    sampler = SamplerConfig(K=args.K, sigma=args.sigma, noise=args.noise)
    sampler.validate()
    out = ship(args.run, args.name, root=root, data=args.data, hard=args.hard, limit=args.limit, hard_limit=args.hard_limit,
               solve_limit=args.solve_limit, ptrm_limit=args.ptrm_limit, ptrm=sampler,
               verify_budget=args.verify_budget)
    print(f"shipped: {out} (card: {out / 'README.md'})")


def cmd_card(args) -> None:
    root = models_dir() if args.dir is None else Path(args.dir)
    print(f"written: {render_again(root / args.name)}")
