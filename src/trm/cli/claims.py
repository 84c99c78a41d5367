"""`trm claims`: run the claims of trm.claims_spec on the CPU testbed (cached, resumable) and write docs/claims.md."""

from __future__ import annotations

import sys
from pathlib import Path

from .. import claims as cl
from .. import claims_spec
from ..claims_report import write_report
from .common import UserError, int_list


def add_parsers(sub) -> None:
    p = sub.add_parser("claims", help="run the papers' claims over seeds and write the claims table (docs/claims.md)")
    p.add_argument("--claims", default=None, help="comma-separated claim names (default: every claim; --list shows "
                   "them); a claim waiting for flags runs only when named")
    p.add_argument("--seeds", default=None, help="comma-separated training seeds (default 0,1,2; a verdict needs 3)")
    p.add_argument("--minutes", type=float, default=None,
                   help="training minutes per run instead of the spec's: the budget, or its cap where steps decide "
                   "(other runs: the budget is in the cache key)")
    p.add_argument("--steps", type=int, default=None,
                   help="optimizer steps per train run at most instead of the spec's (with --minutes as the cap: a "
                   "budget that is the same on every machine)")
    p.add_argument("--cache", default="runs/claims", help="where the runs and the testbed's dataset go (default "
                   "runs/claims); a finished run there is reused, a killed one resumed")
    p.add_argument("--out", default="docs/claims.md", help="the table to write; plots go to its folder's claims/")
    p.add_argument("--store", default=None, help="where each finished run's result and record are kept for git "
                   "(default: claims/results beside --out); runs found there are reused, so the table can be built "
                   "over several sessions on new machines; 'none': the cache only")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time, one thread each (at most the free cores)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--dry-run", action="store_true", help="print the runs it would start and their CPU minutes")
    g.add_argument("--report", action="store_true", help="rewrite --out from the runs in the cache; run nothing")
    g.add_argument("--list", action="store_true", help="list the claims and their arms")
    g.add_argument("--verify", action="store_true", help="run the selected claims again in --cache (give an empty "
                   "one to start from nothing), reusing nothing from the store, and check each of their numbers "
                   "against the store's; writes no table (exit 1 if a number differs)")
    p.set_defaults(func=cmd_claims)


def cmd_claims(args) -> int:
    spec = claims_spec.SPEC  # read at call time: tests put a smoke spec here
    spec.validate()
    if args.list:
        for c in spec.claims:
            arms = ", ".join(f"{a.name} ({a.kind}{' on ' + (a.on or a.checkpoint) if a.on or a.checkpoint else ''})"
                             for a in c.arms)
            wait = f"  [waits for {c.waits_for}]" if c.waits_for else ""
            print(f"{c.name:20s} {c.source}: {c.rule.describe()}; arms {arms}{wait}")
        return 0
    names = [n.strip() for n in args.claims.split(",") if n.strip()] if args.claims is not None else []
    if args.claims is not None and not names:
        raise UserError("--claims takes comma-separated claim names (trm claims --list)")
    selected = spec.select(names)
    seeds = list(spec.seeds) if args.seeds is None else int_list(args.seeds, "--seeds")
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds takes distinct comma-separated integers >= 0 (e.g. 0,1,2), not '{args.seeds}'")
    if args.minutes is not None and not args.minutes > 0:
        raise UserError(f"--minutes must be > 0, not {args.minutes:g}")
    if args.steps is not None and args.steps < 1:
        raise UserError(f"--steps must be >= 1, not {args.steps}")
    if args.jobs < 1:
        raise UserError(f"--jobs must be >= 1, not {args.jobs}")
    cache, out = Path(args.cache), Path(args.out)
    if cache.exists() and not cache.is_dir():
        raise UserError(f"--cache {cache} is a file, not a folder")
    run_now = [c for c in selected if not c.waits_for or c.name in names]
    for c in selected:
        if c not in run_now:
            print(f"{c.name}: waits for {c.waits_for} (name it in --claims to run it anyway)")
    store = None if args.store == "none" else Path(args.store) if args.store else out.parent / "claims" / "results"
    if store is not None and store.exists() and not store.is_dir():
        raise UserError(f"--store {store} is a file, not a folder")
    if args.verify:
        if store is None or not store.is_dir():
            raise UserError(f"--verify checks the runs against a store, and there is none at {store}")
        store, against = None, store  # nothing reused from the store, nothing written to it
    p = cl.plan(spec, cache, run_now, seeds, args.minutes, args.steps, store)
    if args.dry_run:
        return _dry_run(spec, p, args.jobs)
    if not args.report:
        cl.store_finished(p)
        for why in dict.fromkeys(r.waiting for r in p.runs.values() if r.waiting):
            print(f"waiting: {why} (its runs are left out)")
        todo = [r for u in cl.pending(p) for r in u]
        if todo:
            if any(r.kind == "train" or r.parent is not None for r in todo):
                if not (p.data / "meta.json").is_file():
                    print(f"building the testbed's dataset in {p.data} ...")
                cl.build_data(spec, p.data)
            cl.build_datasets(p)
            print(f"{len(todo)} of {len(p.runs)} runs to do, {args.jobs} at a time; logs in each run's claims.log")
            outcome = cl.execute(p, jobs=args.jobs, provenance=cl.provenance())
        else:
            outcome = cl.Outcome(reused=list(p.runs.values()))
        print(f"runs: {len(outcome.ran)} run, {len(outcome.reused)} reused, {len(outcome.failed)} failed, "
              f"{len(outcome.skipped)} skipped (their checkpoint failed)")
    if args.verify:
        return _verify(p, run_now, seeds, against, outcome)
    report_seeds = sorted({*spec.seeds, *seeds})
    full = cl.plan(spec, cache, list(spec.claims), report_seeds, args.minutes, args.steps, store)
    write_report(spec, full, report_seeds, out)
    print(f"wrote {out}")
    if not args.report and (outcome.failed or outcome.skipped):
        first = (outcome.failed or outcome.skipped)[0]
        print(f"trm: error: {len(outcome.failed)} runs failed, {len(outcome.skipped)} skipped (first: "
              f"{first.labels[0]}, see {(first.parent if first in outcome.skipped else first).dir / 'claims.log'})",
              file=sys.stderr)
        return 1
    return 0


def _verify(p: cl.Plan, claims: list, seeds: list[int], store: Path, outcome: cl.Outcome) -> int:
    check = cl.check_against_store(p, claims, seeds, store)
    for label, fresh, stored in check.differ:
        print(f"differs {label}: {fresh:.6g} here, {stored:.6g} in {store}")
    print(f"verify: {len(check.same)} numbers equal the store's, {len(check.differ)} differ, "
          f"{len(check.unstored)} not in the store to compare")
    if not check.same and not check.differ:
        print(f"trm: error: nothing to verify: {store} holds none of these runs' results", file=sys.stderr)
        return 1
    if check.differ or outcome.failed or outcome.skipped:
        print(f"trm: error: {len(check.differ)} numbers differ from {store}, {len(outcome.failed)} runs failed",
              file=sys.stderr)
        return 1
    return 0


def _dry_run(spec, p: cl.Plan, jobs: int) -> int:
    if not (p.data / "meta.json").is_file():
        print(f"dataset: trm {' '.join(spec.testbed.data_argv(p.data))}")
    minutes, n = 0.0, 0
    todo = {r.key for u in cl.pending(p) for r in u}
    for run in p.runs.values():
        if run.key not in todo:
            print(f"waiting {run.labels[0]}: {run.waiting}" if run.waiting else f"cached  {run.labels[0]}")
            continue
        argv = cl.next_argv(run)
        state = "resume" if argv[:2] == ["train", "--resume"] else "retrain" if run.done() else "new"
        print(f"{state:7s} {run.labels[0]}" + (f" (+{len(run.labels) - 1} more)" if len(run.labels) > 1 else "")
              + f": trm {' '.join(argv)}")
        minutes += run.minutes
        n += 1
    print(f"{n} of {len(p.runs)} runs to do: about {minutes:.0f} CPU-minutes ({minutes / 60:.1f} h), "
          f"{minutes / 60 / jobs:.1f} h wall with --jobs {jobs}")
    return 0
