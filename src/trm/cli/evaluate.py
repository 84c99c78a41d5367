"""`trm eval` (deterministic, or PTRM's K rollouts; ARC: the vote and a Kaggle submission) and `trm sweep`
(accuracy against test-time compute)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .. import arc_eval
from ..checkpoint import load_model, resolve_checkpoint
from ..data import validator
from ..data.format import load_dataset
from ..evaluate import evaluate, summary_line
from ..runtime import pick_device, resolve_dtype
from ..sampling import evaluate_sampled, get_sampler_preset
from ..sweep import SweepConfig, run_identity, run_sweep, table
from .common import UserError, add_sampler_flags, float_list, int_list, sampler_config, seed_list
from .preflight import check_data_fits, check_flags, need_matplotlib


def add_parsers(sub) -> None:
    ep = sub.add_parser("eval", help="evaluate a checkpoint on a dataset")
    ep.add_argument("--checkpoint", help="run directory or checkpoint directory")
    ep.add_argument("--oracle", action="store_true", help="ARC: score the true outputs through invert + vote")
    ep.add_argument("--submission", default=None,
                    help="ARC: where to write the Kaggle submission.json (default: beside the checkpoint)")
    ep.add_argument("--pool-with", action="append", default=[], metavar="PREDICTIONS.npz",
                    help="ARC: add the votes of earlier evaluations (their *_predictions.npz), as the reference does")
    ep.add_argument("--data", required=True, help="dataset directory")
    ep.add_argument("--split", default="test")
    ep.add_argument("--D", type=int, default=None, help="supervision steps at test time (default: the training N_sup)")
    ep.add_argument("--limit", type=int, default=0, help="evaluate only the first N examples")
    ep.add_argument("--batch-size", type=int, default=256)
    ep.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp32"])
    ep.add_argument("--device", default="auto")
    ep.add_argument("--json", action="store_true", help="print one JSON object")
    ep.add_argument("--quiet", action="store_true")
    ep.add_argument("--max-iter", type=int, default=None, help="fixed-point models: cap the solver's iterations "
                    "at test time (0 = no solve: z kept from the step before; the equilibrium-internalization test)")
    ep.add_argument("--verify", action="store_true", help="with the sampler flags: also score verify@K, the "
                    "best-q rollout among those the rule checker accepts (Sudoku, maze)")
    add_sampler_flags(ep)
    ep.set_defaults(func=cmd_eval)

    wp = sub.add_parser("sweep", help="test-time scaling curves: accuracy against K, sigma, D and network calls")
    wp.add_argument("--checkpoint", required=True, help="run directory or checkpoint directory")
    wp.add_argument("--data", required=True, help="dataset directory (its labels score every rollout)")
    wp.add_argument("--split", default="test")
    wp.add_argument("--out", default=None, help="folder for sweep.csv/json and the plots (default: RUN/sweep); "
                    "finished runs are cached there, so a killed sweep resumes")
    wp.add_argument("--K", default="1,5,10,25,100", help="rollouts per puzzle (one run at the largest K)")
    wp.add_argument("--sigma", default="0.1,0.3,1.0", help="noise stds (one run each; 0 = the deterministic run)")
    wp.add_argument("--D", default=None, help="supervision steps (one run at the largest; default N_sup)")
    wp.add_argument("--noise", default="z", help="comma-separated placements: z, y, init")
    wp.add_argument("--stop-after", default=None,
                    help="comma-separated early-stop rules to price (steps in a row with q_halt > --stop-margin)")
    wp.add_argument("--stop-margin", type=float, default=0.0)
    wp.add_argument("--limit", type=int, default=0, help="only the first N puzzles")
    wp.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp32"])
    wp.add_argument("--device", default="auto")
    wp.add_argument("--quiet", action="store_true")
    add_sampler_flags(wp, sweep=True)
    wp.set_defaults(func=cmd_sweep)


def cmd_eval(args) -> None:
    ds = load_dataset(args.data)
    is_arc = ds.meta.get("task") == "arc"
    if (args.oracle or args.pool_with) and not is_arc:
        raise UserError("--oracle and --pool-with are for ARC datasets (votes over augmented versions)")
    if is_arc and args.split != "test":
        raise UserError("ARC votes are counted on the test split (its rows carry each version's transform)")
    if args.oracle:
        return _print_oracle(args)
    if not args.checkpoint:
        raise UserError("give --checkpoint RUN (or --oracle for an ARC dataset)")
    check_flags(args, ("D", 1), ("limit", 0, "0 = all"), ("batch_size", 1))
    device = pick_device(args.device)
    model, ckpt_cfg = load_model(args.checkpoint, device)
    if args.max_iter is not None:
        if not model.cfg.uses_solver:
            raise UserError(f"--max-iter caps a fixed-point solve; {args.checkpoint} iterates n = {model.cfg.n} "
                            f"times (solver unroll)")
        check_flags(args, ("max_iter", 0))
        model.test_max_iter = args.max_iter
    sampler = sampler_config(args, model.cfg.N_sup)
    if args.verify and (sampler is None or validator(ds.meta) is None):
        raise UserError("--verify scores PTRM rollouts with a rule checker: give sampler flags (--K, --sigma, ...) "
                        "and a Sudoku or maze dataset (a deterministic eval reports valid_fraction already)")
    split = ds[args.split]
    check_data_fits(ds, model, ckpt_cfg, split)
    head = {"checkpoint": str(args.checkpoint), "data": str(args.data), "split": args.split,
            **({"max_iter": args.max_iter} if args.max_iter is not None else {})}
    if sampler is not None:
        m = {**head, **evaluate_sampled(model, split, sampler, seeds=seed_list(args), limit=args.limit,
                                        max_rows=args.max_rows, memory_gb=args.memory_gb, dtype=args.dtype,
                                        keep_predictions=is_arc, progress=not (args.quiet or args.json),
                                        validity=validator(ds.meta) if args.verify else None)}
    else:
        torch.manual_seed(0)
        t0 = time.perf_counter()
        m = evaluate(model, split, D=args.D, batch_size=args.batch_size, dtype=args.dtype, limit=args.limit,
                     progress=not (args.quiet or args.json), validity=validator(ds.meta), keep_predictions=is_arc)
        seconds = time.perf_counter() - t0
        m = {**head, **m, "seconds": round(seconds, 3), "puzzles_per_second": round(m["n"] / seconds, 2)}
    if "predictions" in m:  # ARC: map every version's answer back and vote
        sub = (Path(args.submission) if args.submission
               else resolve_checkpoint(args.checkpoint).parent / "submission.json")
        m["arc"] = arc_eval.vote_and_submit(split, args.data, m.pop("predictions"), m.pop("q_halt"), sub,
                                            pool_with=args.pool_with)
    if args.json:
        print(json.dumps(m))
    elif sampler is not None:
        _print_sampled(m, sampler, device)
    else:
        _print_deterministic(m, device, args.batch_size)


def _print_deterministic(m: dict, device, batch_size: int) -> None:
    print(summary_line(m))
    print("exact accuracy by supervision step: " + " ".join(f"{a:.3f}" for a in m["exact_accuracy_by_step"]))
    print(f"{m['n']} puzzles x {m['D']} steps in {m['seconds']:.1f} s: {m['puzzles_per_second']:.1f} puzzles/s "
          f"({device}, {torch.get_num_threads()} threads, batch {batch_size})")
    if "arc" in m:
        r = m["arc"]
        print(f"ARC ({r['tasks']} tasks, {r['pairs']} test pairs, votes of {r['votes']}): "
              + "  ".join(f"{k} {r[k]:.4f}" for k in r if k.startswith("pass@")))
        print(f"submission: {r['submission']}  (this evaluation's predictions, for --pool-with: "
              f"{r['predictions']})")
    if m["exact_accuracy_by_rating"]:
        print("exact accuracy by rating (solver guesses): " + ", ".join(
            f"{k}: {v['exact_accuracy']:.3f} (n={v['n']})" for k, v in m["exact_accuracy_by_rating"].items()))


def _print_sampled(m: dict, cfg, device) -> None:
    s, d, res = m["scores"][-1], m["deterministic"], m["rescued"]
    pm = lambda k: f"{s[k]:.4f}" + (f" +- {s[k + ' std']:.4f}" if f"{k} std" in s else "")  # noqa: E731
    print(f"{m['n']} puzzles, D={cfg.D}, K={cfg.K} rollouts, noise on {cfg.noise} sigma {cfg.sigma:g}, "
          f"seeds {','.join(map(str, m['sampler']['seeds']))} (mean +- std over seeds)")
    print(f"  deterministic (K=1, sigma 0)  exact {d['best-q@K']:.4f}  cells {d['best-q cell accuracy']:.4f}")
    for k, what in (("best-q@K", "highest final q_halt"), ("mode@K", "most frequent answer"),
                    ("q-vote@K", "sum of sigmoid(q_halt)"), ("verify@K", "best-q among the rule-abiding ones"),
                    ("valid@K", "some rollout obeys the rules"), ("pass@K", "any rollout right: the oracle bound")):
        if k not in s:
            continue
        print(f"  {k:10s} {pm(k):>18s}   {what}{'   <- --select' if k.startswith(cfg.select) else ''}")
    if res["det_failures"]:
        print(f"  of the {res['det_failures']} puzzles the deterministic run fails: {res['rescued_by_any']:.1%} "
              f"solved by some rollout, {res['rescued_by_best_q']:.1%} by best-Q")
    print(f"  network calls per puzzle: {s['calls_per_puzzle']:.0f} (deterministic {d['calls_per_puzzle']:.0f}"
          + (f"; the early stop saves {1 - s['calls_per_puzzle'] / s['full_calls_per_puzzle']:.1%} of "
             f"{s['full_calls_per_puzzle']}" if cfg.stop_after else "") + ")")
    print(f"  speed: {m['sampled_puzzles_per_second']:.2f} puzzles/s with K={cfg.K}, deterministic "
          f"{m['deterministic_puzzles_per_second']:.2f} puzzles/s ({device}, {torch.get_num_threads()} threads)")
    if "arc" in m:
        r = m["arc"]
        print(f"ARC ({r['tasks']} tasks, {r['pairs']} test pairs, {cfg.select} of K in each version, then the "
              f"vote): " + "  ".join(f"{k} {r[k]:.4f}" for k in r if k.startswith("pass@")))


def _print_oracle(args) -> None:
    r = arc_eval.oracle(args.data)
    print(json.dumps(r) if args.json else f"oracle (true outputs of {r['rows']} versions mapped back and voted): "
          f"pass@1 {r['pass@1']:.4f} over {r['pairs']} test pairs of {r['tasks']} tasks, "
          f"{r['inputs_not_recovered']} inputs not recovered")
    if r["pass@1"] < 1.0 or r["inputs_not_recovered"]:
        raise UserError("the augment -> invert -> vote pipeline lost information (see above)")


def cmd_sweep(args) -> None:
    ds = load_dataset(args.data)
    check_flags(args, ("limit", 0, "0 = all"), ("max_rows", 0, "0 = what fits in --memory-gb"))
    if not args.memory_gb > 0:
        raise UserError(f"--memory-gb must be > 0 (got {args.memory_gb})")
    need_matplotlib("trm sweep")  # the plots come last: refuse before the compute, not after it
    device = pick_device(args.device)
    model, ckpt_cfg = load_model(args.checkpoint, device)
    split = ds[args.split]
    check_data_fits(ds, model, ckpt_cfg, split)
    cfg = SweepConfig(Ks=int_list(args.K, "--K"), sigmas=float_list(args.sigma, "--sigma"),
                      Ds=int_list(args.D, "--D") if args.D else [model.cfg.N_sup],
                      noises=[v for v in args.noise.split(",") if v], seeds=int_list(args.seeds or "0,1,2", "--seeds"),
                      stop_after=int_list(args.stop_after, "--stop-after") if args.stop_after else [],
                      stop_margin=args.stop_margin, limit=args.limit)
    if args.sampler:  # the paper's point is always in the grid
        cfg.include(get_sampler_preset(args.sampler))
    out = Path(args.out) if args.out else resolve_checkpoint(args.checkpoint).parent / "sweep"
    r = run_sweep(model, split, cfg, out, dtype=args.dtype, max_rows=args.max_rows, memory_gb=args.memory_gb,
                  progress=not args.quiet, log=(lambda *a: None) if args.quiet else print,
                  source=run_identity(args.checkpoint, args.data, args.split, resolve_dtype(args.dtype, device)))
    print(table(r))
    print(f"written: {out / 'sweep.csv'}, {out / 'sweep.json'}, " + ", ".join(Path(p).name for p in r["plots"]))
