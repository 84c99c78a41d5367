"""`trm` command: thin wrappers that parse, call and print. Errors are one line and a non-zero exit."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import MISSING, fields
from pathlib import Path

from .checkpoint import CheckpointError
from .data.format import DatasetError, atomic_write_json


class UserError(ValueError):
    pass


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the default prints the whole usage first)."""

    def error(self, message: str):
        self.exit(2, f"trm: error: {message} (see `{self.prog} --help`)\n")


# --- dataclass fields as plain flags ---------------------------------------------------------------------
def _add_field_flags(parser: argparse.ArgumentParser, cls, title: str) -> None:
    group = parser.add_argument_group(title)
    for f in fields(cls):
        names = [f"--{f.name}"] + ([f"--{f.name.replace('_', '-')}"] if "_" in f.name else [])
        default = f.default if f.default is not MISSING else None
        if isinstance(default, bool):
            group.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                               help=f"(preset default {default})")
        else:
            group.add_argument(*names, dest=f.name, type=type(default), default=None, metavar=type(default).__name__.upper(),
                               help=f"(default {default})")


def _overrides(args: argparse.Namespace, cls) -> dict:
    return {f.name: getattr(args, f.name) for f in fields(cls) if getattr(args, f.name, None) is not None}


def _resolve_preset(args):
    from .model import ModelConfig
    from .presets import get_preset
    from .train import TrainConfig
    preset = get_preset(args.preset)
    model_over, train_over = _overrides(args, ModelConfig), _overrides(args, TrainConfig)
    for k, v in model_over.items():
        setattr(preset.model, k, v)
    for k, v in train_over.items():
        setattr(preset.train, k, v)
    return preset, model_over, train_over


# --- shared data location --------------------------------------------------------------------------------
def shared_data_root() -> Path:
    """Where the real puzzle data lives: $TRM_DATA_ROOT, else ../shared/data beside the repo or the cwd."""
    env = os.environ.get("TRM_DATA_ROOT")
    if env:
        return Path(env)
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        cand = base.parent / "shared" / "data"
        if cand.is_dir():
            return cand
    return Path("../shared/data")


def build_preset_data(recipe: dict, out: Path, progress: bool = True) -> Path:
    from .data import sudoku
    recipe = dict(recipe)
    recipe.pop("path", None)
    task = recipe.pop("task", "sudoku")
    if task == "maze":
        from .data import maze
        return maze.build_maze(out, progress=progress, **recipe)
    if task == "arc":
        from .data import arc
        train_c, test_c = arc.COLLECTIONS[recipe.pop("version")]
        return arc.build_arc(out, root=shared_data_root() / "arc", train_collections=train_c,
                             test_collections=test_c, progress=progress, **recipe)
    pools = recipe.pop("pools", [])
    lists = []
    if pools:
        available = sudoku.sudoku_pools(shared_data_root() / "sudoku")
        for p in pools:
            paths = available[p]
            missing = [str(x) for x in paths if not Path(x).is_file()]
            if missing:
                raise UserError(f"puzzle list {missing[0]} not found (set TRM_DATA_ROOT to the folder holding sudoku/)")
            lists += paths
    return sudoku.build_sudoku(out, lists=lists, progress=progress, **recipe)


# --- subcommands -----------------------------------------------------------------------------------------
def cmd_presets(args) -> None:
    from .presets import PRESETS
    for p in PRESETS.values():
        m = p.model
        print(f"{p.name:20s} {p.about}")
        print(f"{'':20s} mixer={m.mixer} d={m.d} L={m.L} n={m.n} T={m.T} N_sup={m.N_sup} batch={p.train.batch_size} "
              f"steps={p.train.steps} lr={p.train.lr} data={p.data.get('path', '-')}")
    from .sampling import SAMPLER_PRESETS
    print("\ntest-time samplers (trm eval / solve / sweep --sampler NAME; flags override):")
    for name, (about, c) in SAMPLER_PRESETS.items():
        print(f"{name:20s} K={c.K} sigma={c.sigma:g} D={c.D} noise={c.noise} select={c.select}: {about}")


def cmd_params(args) -> None:
    from .model import TRM, count_parameters
    preset, _, _ = _resolve_preset(args)
    counts = count_parameters(TRM(preset.model))
    m = preset.model
    print(f"preset {preset.name}: mixer={m.mixer} d={m.d} L={m.L} vocab={m.vocab_size} seq_len={m.seq_len} "
          f"prefix={m.prefix_len}")
    print(f"puzzle-embedding table (trained by sign-SGD, not counted below): {m.num_puzzle_ids} ids x "
          f"{m.puzzle_emb_dim} = {counts['puzzle_embedding']}")
    print("trainable parameters:")
    print(counts["trainable"])


def cmd_data_sudoku(args) -> None:
    from .data import sudoku
    lists = [Path(x) for x in args.list]
    for pool in args.pool:
        pools = sudoku.sudoku_pools(Path(args.sudoku_dir) if args.sudoku_dir else shared_data_root() / "sudoku")
        if pool not in pools:
            raise UserError(f"unknown pool '{pool}' (choose from {', '.join(pools)})")
        lists += [Path(x) for x in pools[pool]]
    for f in lists + [Path(x) for x in args.csv]:
        if not f.is_file():
            raise UserError(f"no such file: {f}")
    if (args.train is not None and args.train < 0) or (args.test is not None and args.test < 1) or args.generate < 0:
        raise UserError("--train must be >= 0, --test >= 1 and --generate >= 0")
    if not (lists or args.csv or args.generate):
        raise UserError("no source given: use --pool, --list, --csv or --generate")
    t0 = time.time()
    out = sudoku.build_sudoku(args.out, size=args.size, lists=lists, csvs=args.csv, generate=args.generate,
                              train=args.train, test=args.test, test_fraction=args.test_fraction, seed=args.seed,
                              workers=args.workers, overwrite=args.overwrite, progress=not args.quiet)
    meta = json.loads((out / "meta.json").read_text())
    print(f"wrote {out}: train {meta['splits']['train']}, test {meta['splits']['test']} "
          f"({time.time() - t0:.1f} s)")


def cmd_data_maze(args) -> None:
    from .data import maze
    for f in args.csv + args.test_csv:
        if not Path(f).is_file():
            raise UserError(f"no such file: {f}")
    if not 2 <= args.size <= maze.MAX_SIZE or args.train < 0 or (args.test < 1 and not args.test_csv):
        raise UserError(f"--size must be 2..{maze.MAX_SIZE}, --train >= 0 and --test >= 1")
    t0 = time.time()
    out = maze.build_maze(args.out, size=args.size, wall_density=maze.parse_density(args.wall_density),
                          min_path=args.min_path, exact=args.exact, train=args.train, test=args.test,
                          csvs=args.csv, test_csvs=args.test_csv, seed=args.seed, overwrite=args.overwrite,
                          progress=not args.quiet)
    meta = json.loads((out / "meta.json").read_text())
    print(f"wrote {out}: train {meta['splits']['train']}, test {meta['splits']['test']} mazes, "
          f"{meta['unique_shortest_path_fraction']:.1%} with a unique shortest path ({time.time() - t0:.1f} s)")


def cmd_data_arc(args) -> None:
    from .data import arc
    train_c, test_c = arc.COLLECTIONS[args.version]
    if args.train_collection or args.test_collection or args.task:
        train_c, test_c = tuple(args.train_collection), tuple(args.test_collection)
        if not (test_c or args.task):
            raise UserError("give --test-collection (or --task FILE) with --train-collection")
    if args.augments < 1 or args.task_limit < 0:
        raise UserError("--augments must be >= 1 and --task-limit >= 0")
    root = Path(args.root) if args.root else shared_data_root() / "arc"
    out = arc.build_arc(args.out, root=root, train_collections=train_c, test_collections=test_c,
                        test_task_files=args.task, augments=args.augments, translate=not args.no_translate,
                        task_limit=args.task_limit, seed=args.seed, force_overlap=args.force_overlap,
                        overwrite=args.overwrite, progress=not args.quiet)
    meta = json.loads((out / "meta.json").read_text())
    print(f"wrote {out}: train {meta['splits']['train']}, test {meta['splits']['test']} examples, "
          f"{meta['num_puzzle_ids']} puzzle ids, tasks {meta['tasks']['train']} + {meta['tasks']['test']} "
          f"({meta['build_seconds']} s)")
    for tid, pairs in meta["dropped_leaking_pairs"].items():
        print(f"left out of training: task {tid} pair{'s' if len(pairs) > 1 else ''} {pairs} "
              f"(input = a test input of a test task)")
    if meta["forced_overlap"]:
        print(f"warning: {len(meta['forced_overlap'])} test tasks are also trained on in full (--force-overlap)")


def cmd_train(args) -> None:
    from .evaluate import summary_line
    from .presets import get_preset
    from .train import Trainer
    if args.resume:
        from .model import ModelConfig
        from .train import TrainConfig
        overrides = _overrides(args, TrainConfig)
        if _overrides(args, ModelConfig):
            raise UserError("the model cannot be changed when resuming")
        trainer = Trainer(ModelConfig(), TrainConfig(), resume=args.resume, overrides=overrides,
                          progress=not args.quiet)
        print(f"resuming {trainer.run_dir} at step {trainer.step}")
    else:
        if not args.preset:
            raise UserError("give --preset NAME (trm presets lists them) or --resume RUN_DIR")
        preset, _, _ = _resolve_preset(args)
        cfg = preset.train
        if not cfg.data:
            if not preset.data:
                raise UserError(f"preset {preset.name} names no dataset: pass --data DIR")
            cfg.data = preset.data["path"]
            if not (Path(cfg.data) / "meta.json").exists():
                print(f"building the dataset of {preset.name} in {cfg.data} ...")
                build_preset_data(preset.data, Path(cfg.data), progress=not args.quiet)
        if not cfg.out:
            cfg.out = f"runs/{preset.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        if (Path(cfg.out) / "checkpoint").exists():
            raise UserError(f"{cfg.out} already holds a run: resume it with --resume {cfg.out} or pick another --out")
        trainer = Trainer(preset.model, cfg, preset=preset.name, progress=not args.quiet)
        if trainer.main:
            print(f"training {preset.name} into {cfg.out} on {trainer.device} "
                  f"({trainer.world} process{'es' if trainer.world > 1 else ''})")
    result = trainer.fit()
    if trainer.main and result is not None:
        print(f"final test ({result['weights']} weights, step {result['step']}): {summary_line(result)}")
        if "raw" in result:
            print(f"raw (non-EMA) weights: exact {result['raw']['exact_accuracy']:.4f}  "
                  f"cell {result['raw']['cell_accuracy']:.4f}")
        print(f"checkpoint: {trainer.run_dir / 'checkpoint'}")


def cmd_eval(args) -> None:
    import torch

    from .checkpoint import load_model
    from .data import validator
    from .data.format import load_dataset
    from .evaluate import evaluate, summary_line
    from .runtime import pick_device
    ds = load_dataset(args.data)
    is_arc = ds.meta.get("task") == "arc"
    if (args.oracle or args.pool_with) and not is_arc:
        raise UserError("--oracle and --pool-with are for ARC datasets (votes over augmented versions)")
    if is_arc and args.split != "test":
        raise UserError("ARC votes are counted on the test split (its rows carry each version's transform)")
    if args.oracle:
        return _arc_oracle(args)
    if not args.checkpoint:
        raise UserError("give --checkpoint RUN (or --oracle for an ARC dataset)")
    device = pick_device(args.device)
    model, cfg = load_model(args.checkpoint, device)
    if ds.seq_len != model.cfg.seq_len or ds.vocab_size != model.cfg.vocab_size:
        raise UserError(f"dataset {args.data} (seq_len {ds.seq_len}, vocab {ds.vocab_size}) does not fit the model "
                        f"(seq_len {model.cfg.seq_len}, vocab {model.cfg.vocab_size})")
    if args.D is not None and args.D < 1:
        raise UserError("--D must be >= 1")
    sampler = _sampler_config(args, model)
    if sampler is not None:
        return _eval_sampled(args, model, ds, sampler, is_arc)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    m = evaluate(model, ds[args.split], D=args.D, batch_size=args.batch_size, dtype=args.dtype, limit=args.limit,
                 progress=not (args.quiet or args.json), validity=validator(ds.meta),
                 keep_predictions=ds.meta.get("task") == "arc")
    seconds = time.perf_counter() - t0
    m = {"checkpoint": str(args.checkpoint), "data": str(args.data), "split": args.split, **m,
         "seconds": round(seconds, 3), "puzzles_per_second": round(m["n"] / seconds, 2)}
    if "predictions" in m:  # ARC: map every version's answer back and vote
        m["arc"] = _arc_votes(args, ds[args.split], m.pop("predictions"), m.pop("q_halt"))
    if args.json:
        print(json.dumps(m))
    else:
        print(summary_line(m))
        print("exact accuracy by supervision step: " + " ".join(f"{a:.3f}" for a in m["exact_accuracy_by_step"]))
        print(f"{m['n']} puzzles x {m['D']} steps in {seconds:.1f} s: {m['puzzles_per_second']:.1f} puzzles/s "
              f"({device}, {torch.get_num_threads()} threads, batch {args.batch_size})")
        if "arc" in m:
            r = m["arc"]
            print(f"ARC ({r['tasks']} tasks, {r['pairs']} test pairs, votes of {r['votes']}): "
                  + "  ".join(f"{k} {r[k]:.4f}" for k in r if k.startswith("pass@")))
            print(f"submission: {r['submission']}  (this evaluation's predictions, for --pool-with: "
                  f"{r['predictions']})")
        if m["exact_accuracy_by_rating"]:
            print("exact accuracy by rating (solver guesses): " + ", ".join(
                f"{k}: {v['exact_accuracy']:.3f} (n={v['n']})" for k, v in m["exact_accuracy_by_rating"].items()))


# --- test-time scaling (trm.sampling) --------------------------------------------------------------------
SAMPLER_FLAGS = ("K", "sigma", "noise", "select", "stop_after", "stop_margin")


def _add_sampler_flags(p: argparse.ArgumentParser, sweep: bool = False) -> None:
    g = p.add_argument_group("test-time scaling (PTRM: K noisy rollouts, one picked; any of these turns it on)")
    g.add_argument("--sampler", default=None, help="the papers' settings: ptrm-sudoku, ptrm-maze, ptrm-arc "
                   "(trm presets lists them); the flags below override")
    if not sweep:
        g.add_argument("--K", type=int, default=None, help="rollouts per puzzle (ARC: per augmented version)")
        g.add_argument("--sigma", type=float, default=None, help="std of the Gaussian noise (paper: 0.2-1.0)")
        g.add_argument("--noise", default=None, choices=["z", "y", "init"],
                       help="z (paper) or y: added before every supervision step; init: the initial state only")
        g.add_argument("--select", default=None, choices=["best-q", "mode", "q-vote"],
                       help="which rollout's answer counts: highest final q_halt (paper), most frequent answer, "
                       "or the answer with the largest sum of sigmoid(q_halt)")
        g.add_argument("--stop-after", type=int, default=None,
                       help="freeze a rollout once q_halt > --stop-margin for this many steps in a row (saves "
                       "compute; the paper runs all D steps)")
        g.add_argument("--stop-margin", type=float, default=None)
    g.add_argument("--seeds", default=None, help="comma-separated noise seeds, results averaged (default 0)")
    g.add_argument("--max-rows", type=int, default=0,
                   help="rollout rows (puzzles x K) per forward pass (default: what fits in --memory-gb)")
    g.add_argument("--memory-gb", type=float, default=1.0, help="memory bound of the rollout state (default 1)")


def _int_list(text: str, flag: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{flag} takes comma-separated integers, not '{text}'") from None


def _float_list(text: str, flag: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{flag} takes comma-separated numbers, not '{text}'") from None


def _sampler_config(args, model):
    """The SamplerConfig the flags ask for, or None when no test-time-scaling flag was given."""
    from .sampling import SamplerConfig, get_sampler_preset
    given = {k: getattr(args, k) for k in SAMPLER_FLAGS if getattr(args, k, None) is not None}
    if args.sampler is None and not given and args.seeds is None:
        return None
    cfg = get_sampler_preset(args.sampler) if args.sampler else SamplerConfig()
    for k, v in given.items():
        setattr(cfg, k, v)
    if args.D is not None:
        cfg.D = args.D
    cfg.D = cfg.D or model.cfg.N_sup
    cfg.validate()
    if args.max_rows < 0 or not args.memory_gb > 0:
        raise UserError("--max-rows must be >= 0 and --memory-gb > 0")
    return cfg


def _eval_sampled(args, model, ds, cfg, is_arc: bool) -> None:
    """trm eval with a sampler: every selection rule and pass@K at cfg.K, the deterministic run beside them,
    averaged over --seeds; on ARC also the task-level vote of the --select answers (first seed)."""
    import numpy as np
    import torch

    from .sampling import SamplerConfig, mean_over_seeds, rescued, sample, score
    split = ds[args.split]
    n = min(len(split), args.limit) if args.limit else len(split)
    seeds = _int_list(args.seeds, "--seeds") if args.seeds else [0]
    inputs, labels, ids = (np.asarray(a[:n]) for a in (split.inputs, split.labels, split.puzzle_ids))
    common = dict(labels=labels, max_rows=args.max_rows, memory_gb=args.memory_gb, dtype=args.dtype,
                  progress=not (args.quiet or args.json))
    t0 = time.perf_counter()
    det = sample(model, inputs, ids, SamplerConfig(K=1, D=cfg.D), desc="deterministic", **common)
    t1 = time.perf_counter()
    runs = [sample(model, inputs, ids, cfg, seed=s, keep_selected=is_arc and i == 0, desc=f"seed {s}", **common)
            for i, s in enumerate(seeds)]
    t2 = time.perf_counter()
    speed = {"deterministic_puzzles_per_second": round(n / (t1 - t0), 3),
             "sampled_puzzles_per_second": round(n * len(seeds) / (t2 - t1), 3)}
    Ks = sorted({1, cfg.K})
    m = {"checkpoint": str(args.checkpoint), "data": str(args.data), "split": args.split, "n": n,
         "sampler": {**vars(cfg), "seeds": seeds}, "deterministic": score(det, [1])[0],
         "scores": mean_over_seeds([score(r, Ks) for r in runs]),
         "rescued": mean_over_seeds([rescued(r, det, [cfg.K]) for r in runs])[0], **speed}
    if is_arc:
        m["arc"] = _arc_votes(args, split, runs[0].selected, runs[0].selected_q)
    if args.json:
        print(json.dumps(m))
        return
    s, d, res = m["scores"][-1], m["deterministic"], m["rescued"]
    pm = lambda k: f"{s[k]:.4f}" + (f" +- {s[k + ' std']:.4f}" if f"{k} std" in s else "")  # noqa: E731
    print(f"{n} puzzles, D={cfg.D}, K={cfg.K} rollouts, noise on {cfg.noise} sigma {cfg.sigma:g}, "
          f"seeds {','.join(map(str, seeds))} (mean +- std over seeds)")
    print(f"  deterministic (K=1, sigma 0)  exact {d['best-q@K']:.4f}  cells {d['best-q cell accuracy']:.4f}")
    for k, what in (("best-q@K", "highest final q_halt"), ("mode@K", "most frequent answer"),
                    ("q-vote@K", "sum of sigmoid(q_halt)"), ("pass@K", "any rollout right: the oracle bound")):
        print(f"  {k:10s} {pm(k):>18s}   {what}{'   <- --select' if k.startswith(cfg.select) else ''}")
    if res["det_failures"]:
        print(f"  of the {res['det_failures']} puzzles the deterministic run fails: {res['rescued_by_any']:.1%} "
              f"solved by some rollout, {res['rescued_by_best_q']:.1%} by best-Q")
    print(f"  network calls per puzzle: {s['calls_per_puzzle']:.0f} (deterministic {d['calls_per_puzzle']:.0f}"
          + (f"; the early stop saves {1 - s['calls_per_puzzle'] / s['full_calls_per_puzzle']:.1%} of "
             f"{s['full_calls_per_puzzle']}" if cfg.stop_after else "") + ")")
    print(f"  speed: {m['sampled_puzzles_per_second']:.2f} puzzles/s with K={cfg.K}, deterministic "
          f"{m['deterministic_puzzles_per_second']:.2f} puzzles/s ({model.y_init.device}, "
          f"{torch.get_num_threads()} threads)")
    if "arc" in m:
        r = m["arc"]
        print(f"ARC ({r['tasks']} tasks, {r['pairs']} test pairs, {cfg.select} of K in each version, then the "
              f"vote): " + "  ".join(f"{k} {r[k]:.4f}" for k in r if k.startswith("pass@")))


def cmd_sweep(args) -> None:
    from .checkpoint import load_model, resolve_checkpoint
    from .data.format import load_dataset
    from .runtime import pick_device
    from .sweep import SweepConfig, run_sweep, table
    ds = load_dataset(args.data)
    device = pick_device(args.device)
    model, _ = load_model(args.checkpoint, device)
    if ds.seq_len != model.cfg.seq_len or ds.vocab_size != model.cfg.vocab_size:
        raise UserError(f"dataset {args.data} does not fit the model (seq_len/vocab)")
    cfg = SweepConfig(Ks=_int_list(args.K, "--K"), sigmas=_float_list(args.sigma, "--sigma"),
                      Ds=_int_list(args.D, "--D") if args.D else [model.cfg.N_sup],
                      noises=[v for v in args.noise.split(",") if v], seeds=_int_list(args.seeds or "0,1,2", "--seeds"),
                      stop_after=_int_list(args.stop_after, "--stop-after") if args.stop_after else [],
                      stop_margin=args.stop_margin, limit=args.limit)
    if args.sampler:  # the paper's point is always in the grid
        from .sampling import get_sampler_preset
        p = get_sampler_preset(args.sampler)
        cfg.Ks, cfg.sigmas, cfg.Ds = (sorted({*cfg.Ks, p.K}), sorted({*cfg.sigmas, p.sigma}),
                                      sorted({*cfg.Ds, p.D}))
    out = Path(args.out) if args.out else resolve_checkpoint(args.checkpoint).parent / "sweep"
    r = run_sweep(model, ds[args.split], cfg, out, dtype=args.dtype, max_rows=args.max_rows,
                  memory_gb=args.memory_gb, progress=not args.quiet, log=(lambda *a: None) if args.quiet else print)
    print(table(r))
    print(f"written: {out / 'sweep.csv'}, {out / 'sweep.json'}, " + ", ".join(Path(p).name for p in r["plots"]))


def _arc_oracle(args) -> None:
    from . import arc_eval
    r = arc_eval.oracle(args.data)
    r.pop("ranked")
    print(json.dumps(r) if args.json else f"oracle (true outputs of {r['rows']} versions mapped back and voted): "
          f"pass@1 {r['pass@1']:.4f} over {r['pairs']} test pairs of {r['tasks']} tasks, "
          f"{r['inputs_not_recovered']} inputs not recovered")
    if r["pass@1"] < 1.0 or r["inputs_not_recovered"]:
        raise UserError("the augment -> invert -> vote pipeline lost information (see above)")


def _arc_votes(args, split, predictions, q_halt) -> dict:
    """ARC: this checkpoint's votes (plus those of --pool-with), the Kaggle submission, and this evaluation's
    predictions saved beside it so that a later evaluation can pool them."""
    from . import arc_eval
    from .checkpoint import resolve_checkpoint
    from .data import arc
    cands = arc_eval.pool(split, arc_eval.candidates(split, predictions, q_halt), args.pool_with)
    tt = arc.read_test_tasks(args.data)
    r = arc_eval.score(tt, cands)
    sub = Path(args.submission) if args.submission else resolve_checkpoint(args.checkpoint).parent / "submission.json"
    atomic_write_json(sub, arc_eval.submission(tt, r.pop("ranked")))
    saved = sub.with_name(f"{sub.stem}_predictions.npz")
    arc_eval.save_predictions(saved, split, predictions, q_halt)
    votes = f"{1 + len(args.pool_with)} evaluations, pooled" if args.pool_with else "this checkpoint"
    return {**r, "votes": votes, "submission": str(sub), "predictions": str(saved)}


def _solve_arc(args, model, cfg) -> None:
    """`trm solve TASK.json --checkpoint RUN` for an ARC checkpoint: two attempts per test pair."""
    from . import arc_eval
    from .data import arc
    if args.puzzle is None or not Path(args.puzzle).is_file():
        raise UserError("give an ARC task JSON file ({\"train\": [...], \"test\": [...]}): trm solve TASK.json "
                        "--checkpoint RUN")
    if args.augments < 1:
        raise UserError("--augments must be >= 1")
    task = arc.load_task_file(args.puzzle)
    data = args.data or cfg.get("train", {}).get("data")
    sampler = _sampler_config(args, model)
    r = arc_eval.solve(model, task, data, augments=args.augments, D=args.D, dtype=args.dtype, sampler=sampler)
    if args.json:
        print(json.dumps(r))
        return
    how = ("its versions in the checkpoint's dataset (puzzle embeddings trained on its demonstrations)"
           if r["trained_versions"] else "a task new to this checkpoint: blank puzzle embedding, no adaptation "
           "(docs/data.md, 'A new task')")
    print(f"task {r['task']}: {r['versions']} versions voted, {how}")
    for p, rec in enumerate(r["pairs"], 1):
        for a, (grid, votes, conf) in enumerate(zip(rec["attempts"], rec["votes"], rec["confidence"]), 1):
            print(f"test pair {p}, attempt_{a} ({votes} votes, confidence {conf:.3f}):")
            print("\n".join(" ".join(str(v) for v in row) for row in grid))
        if not rec["attempts"]:
            print(f"test pair {p}: no answer (no version produced a grid)")
        if "correct" in rec:
            print(f"test pair {p}: {'solved' if rec['correct'] else 'not solved'} (the task file has its output)")


def _read_puzzle_arg(text: str) -> str:
    if text == "-":
        return sys.stdin.read()
    p = Path(text)
    if "\n" not in text and len(text) < 256 and p.is_file():
        return p.read_text()
    return text


def cmd_solve(args) -> None:
    import torch

    from .checkpoint import load_model
    from .data import sudoku
    from .evaluate import rollout
    from .runtime import pick_device
    device = pick_device(args.device)
    model, cfg = load_model(args.checkpoint, device)
    size = int(cfg.get("data_meta", {}).get("size", 9))
    task = cfg.get("data_meta", {}).get("task", "sudoku")
    if task == "arc":
        return _solve_arc(args, model, cfg)
    if task != "sudoku":
        raise UserError(f"trm solve takes Sudoku and ARC checkpoints; {args.checkpoint} was trained on {task} "
                        f"(evaluate it with trm eval)")
    if args.puzzle is None and args.data is None and args.index is not None:
        args.data = cfg.get("train", {}).get("data")  # the test split the checkpoint was evaluated on
    if args.data is not None:
        from .data.format import load_dataset
        split = load_dataset(args.data)["test"]
        args.index = args.index or 0
        if not 0 <= args.index < len(split):
            raise UserError(f"--index {args.index} is outside the test split (0..{len(split) - 1})")
        puzzle = sudoku.decode(split.inputs[args.index])
    elif args.puzzle is None:
        raise UserError("give a puzzle (81 characters, a grid, a file or -) or --data DIR --index I")
    else:
        try:
            puzzle = sudoku.parse_puzzle(_read_puzzle_arg(args.puzzle), size)
        except ValueError as e:
            raise UserError(f"bad puzzle: {e}") from None
    sampler = _sampler_config(args, model)
    if sampler is not None:
        return _solve_sampled(args, model, puzzle, size, sampler)
    D = args.D or model.cfg.N_sup
    inputs = torch.from_numpy(sudoku.encode(puzzle)[None].astype("int64")).to(device)
    ids = torch.zeros(1, dtype=torch.long, device=device)
    answers = []  # the answer after every supervision step, for --trace
    t0 = time.perf_counter()
    for step, _, out in rollout(model, inputs, ids, D, dtype=args.dtype, stop_when_halted=not args.no_halt):
        if args.trace:
            answers.append((sudoku.decode(out.logits.argmax(-1)[0].cpu().numpy()), float(out.q_halt[0])))
    seconds = time.perf_counter() - t0
    solution = sudoku.decode(out.logits.argmax(-1)[0].cpu().numpy())
    obeys, keeps = sudoku.is_solution(solution, size), sudoku.keeps_givens(puzzle, solution)
    q = float(out.q_halt[0])
    confidence = float(torch.sigmoid(out.q_halt[0]))
    result = {"solution": "".join(str(int(v)) for v in solution), "valid": bool(obeys and keeps),
              "obeys_rules": bool(obeys), "keeps_givens": bool(keeps), "steps": step, "q_halt": q,
              "confidence": confidence, "seconds": round(seconds, 4)}
    trace = _trace(puzzle, size, answers) if args.trace else []
    if args.json:
        print(json.dumps({**result, "trace": trace} if args.trace else result))
        return
    for t, row in enumerate(trace, 1):
        wrong = "" if row["wrong_cells"] is None else f"  {row['wrong_cells']:2d} cells wrong"
        print(f"step {t:2d}: q_halt {row['q_halt']:+6.2f}{wrong}  {row['changed_cells']:2d} changed  "
              f"{'valid' if row['valid'] else 'not valid'}")
    print("puzzle:")
    print(sudoku.format_grid(puzzle, size))
    print("model's answer:")
    print(sudoku.format_grid(solution, size))
    verdict = "a valid solution" if result["valid"] else (
        "NOT valid: " + ", ".join(w for w, ok in (("breaks the rules", obeys), ("changes givens", keeps)) if not ok))
    print(f"{verdict}; {step} supervision step{'s' if step > 1 else ''}, Q confidence {confidence:.3f} "
          f"(q_halt {q:+.2f}), {seconds * 1000:.0f} ms")


def _solve_sampled(args, model, puzzle, size: int, cfg) -> None:
    """One Sudoku with K noisy rollouts: the answer --select picks, and how the rollouts split."""
    import numpy as np
    import torch

    from .data import sudoku
    from .sampling import fingerprint, sample
    if args.trace:
        raise UserError("--trace follows one deterministic rollout; leave out the sampler flags to use it")
    seed = _int_list(args.seeds, "--seeds")[0] if args.seeds else 0
    t0 = time.perf_counter()
    r = sample(model, sudoku.encode(puzzle)[None], np.zeros(1, np.int64), cfg, seed=seed, keep_selected=True,
               max_rows=args.max_rows, memory_gb=args.memory_gb, dtype=args.dtype)
    seconds = time.perf_counter() - t0
    solution = sudoku.decode(r.selected[0])
    ids = r.answer[0, -1]
    agree = int((ids == int(fingerprint(torch.from_numpy(r.selected[:1].astype(np.int64)))[0])).sum())
    obeys, keeps = sudoku.is_solution(solution, size), sudoku.keeps_givens(puzzle, solution)
    result = {"solution": "".join(str(int(v)) for v in solution), "valid": bool(obeys and keeps),
              "obeys_rules": bool(obeys), "keeps_givens": bool(keeps), "steps": cfg.D, "K": cfg.K,
              "sigma": cfg.sigma, "noise": cfg.noise, "select": cfg.select, "seed": seed,
              "q_halt": float(r.selected_q[0]), "confidence": float(1 / (1 + np.exp(-r.selected_q[0]))),
              "rollouts_agreeing": agree, "distinct_answers": int(len(np.unique(ids))),
              "seconds": round(seconds, 4)}
    if args.json:
        print(json.dumps(result))
        return
    print("puzzle:")
    print(sudoku.format_grid(puzzle, size))
    print(f"model's answer ({cfg.select} of {cfg.K} rollouts, noise on {cfg.noise} sigma {cfg.sigma:g}, "
          f"D={cfg.D}):")
    print(sudoku.format_grid(solution, size))
    verdict = "a valid solution" if result["valid"] else (
        "NOT valid: " + ", ".join(w for w, ok in (("breaks the rules", obeys), ("changes givens", keeps)) if not ok))
    print(f"{verdict}; {agree} of {cfg.K} rollouts give this answer ({result['distinct_answers']} distinct), "
          f"q_halt {result['q_halt']:+.2f}, {seconds * 1000:.0f} ms")


def _trace(puzzle, size: int, answers: list) -> list[dict]:
    """Per supervision step: q_halt, cells changed since the step before, whether the answer is valid and, when
    trm's exact solver finds a unique solution, how many cells differ from it."""
    from .data import sudoku
    sols, _ = sudoku.solve(puzzle, size, limit=2)
    truth = sols[0] if len(sols) == 1 else None
    rows, prev = [], puzzle
    for answer, q in answers:
        rows.append({"q_halt": round(q, 3), "changed_cells": int((answer != prev).sum()),
                     "valid": bool(sudoku.is_solution(answer, size) and sudoku.keeps_givens(puzzle, answer)),
                     "wrong_cells": None if truth is None else int((answer != truth).sum())})
        prev = answer
    return rows


def _add_build_flags(p: argparse.ArgumentParser) -> None:
    """Flags every dataset builder takes."""
    p.add_argument("--seed", type=int, default=0, help="seed of the split, sampling and augmentation")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset (atomically)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    from .model import ModelConfig
    from .train import TrainConfig
    p = Parser(prog="trm", allow_abbrev=False, description="Tiny Recursive Models: train, evaluate and solve grid puzzles.")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("presets", help="list the named configurations").set_defaults(func=cmd_presets)

    sp = sub.add_parser("params", help="count a preset's parameters (puzzle-embedding table on its own line)")
    sp.add_argument("--preset", required=True)
    _add_field_flags(sp, ModelConfig, "model (override the preset)")
    sp.set_defaults(func=cmd_params)

    dp = sub.add_parser("data", help="build datasets")
    dsub = dp.add_subparsers(dest="task", required=True)
    s = dsub.add_parser("sudoku", help="build a Sudoku dataset from puzzle lists, CSVs or the generator")
    s.add_argument("--out", required=True, help="dataset directory to write")
    s.add_argument("--pool", action="append", default=[], help="named list group in the shared data: 17clue or hard")
    s.add_argument("--list", action="append", default=[], help="a file of 81-char puzzles, one a line (repeatable)")
    s.add_argument("--csv", action="append", default=[], help="a Sudoku-Extreme CSV source,question,answer,rating")
    s.add_argument("--generate", type=int, default=0, help="number of minimal puzzles to generate")
    s.add_argument("--size", type=int, default=9, choices=[4, 6, 9], help="grid size (generator, lists)")
    s.add_argument("--train", type=int, default=None, help="seeded subsample of N training puzzles (default all; 0 = an evaluation-only set)")
    s.add_argument("--test", type=int, default=None, help="number of test puzzles (default test-fraction of all)")
    s.add_argument("--test-fraction", type=float, default=0.1)
    s.add_argument("--workers", type=int, default=None, help="solver processes (default: all cores)")
    s.add_argument("--sudoku-dir", default=None, help="folder of the puzzle lists (default ../shared/data/sudoku)")
    _add_build_flags(s)
    s.set_defaults(func=cmd_data_sudoku)

    m = dsub.add_parser("maze", help="generate random-wall mazes like Maze-Hard, or read Maze-Hard CSVs")
    m.add_argument("--out", required=True, help="dataset directory to write")
    m.add_argument("--size", type=int, default=30, help="grid side (Maze-Hard: 30; 15 for CPU-scale sets)")
    m.add_argument("--wall-density", default="0.3:0.5",
                   help="chance that a cell is a wall: a value, or LO:HI drawn per maze (Maze-Hard's: 0.3:0.5)")
    m.add_argument("--min-path", type=int, default=110,
                   help="keep mazes whose shortest S-G path is longer than this (Maze-Hard: 110; 30 at 15x15)")
    m.add_argument("--exact", action="store_true",
                   help="Maze-Hard's literal rejection distribution (docs/data.md), tens of times slower")
    m.add_argument("--train", type=int, default=1000, help="training mazes (Maze-Hard: 1000)")
    m.add_argument("--test", type=int, default=1000, help="test mazes (Maze-Hard: 1000)")
    m.add_argument("--csv", action="append", default=[],
                   help="a Maze-Hard CSV source,question,answer,rating (repeatable); split with --seed")
    m.add_argument("--test-csv", action="append", default=[],
                   help="a CSV that is the test split as it is (Maze-Hard's test.csv); --csv files are then train")
    _add_build_flags(m)
    m.set_defaults(func=cmd_data_maze)

    a = dsub.add_parser("arc", help="build ARC-AGI-1 or -2 from Kaggle-format JSON")
    a.add_argument("--out", required=True, help="dataset directory to write")
    a.add_argument("--version", choices=["arc1", "arc2"], default="arc1",
                   help="arc1: training + concept, tested on evaluation; arc2: training2 + concept, on evaluation2")
    a.add_argument("--root", default=None, help="folder of arc-agi_*_challenges.json (default ../shared/data/arc)")
    a.add_argument("--train-collection", action="append", default=[], help="instead of --version (repeatable)")
    a.add_argument("--test-collection", action="append", default=[], help="instead of --version (repeatable)")
    a.add_argument("--task", action="append", default=[],
                   help="an ARC task JSON file to test on (repeatable); alone: a set for --freeze-weights")
    a.add_argument("--augments", type=int, default=1000, help="versions per task (dihedral x colours, deduplicated)")
    a.add_argument("--no-translate", action="store_true", help="keep training grids at the canvas corner")
    a.add_argument("--task-limit", type=int, default=0, help="a seeded subset: N training and N/4 test tasks")
    a.add_argument("--force-overlap", action="store_true",
                   help="build even if test task ids are among the training tasks (their test outputs get trained on)")
    _add_build_flags(a)
    a.set_defaults(func=cmd_data_arc)

    tp = sub.add_parser("train", help="train a preset (or resume a run)")
    tp.add_argument("--preset", help="named configuration (trm presets)")
    tp.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    tp.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_field_flags(tp, ModelConfig, "model (override the preset)")
    _add_field_flags(tp, TrainConfig, "training (override the preset)")
    tp.set_defaults(func=cmd_train)

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
    _add_sampler_flags(ep)
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
    _add_sampler_flags(wp, sweep=True)
    wp.set_defaults(func=cmd_sweep)

    sv = sub.add_parser("solve", help="solve one Sudoku, or one ARC task (two attempts), with a checkpoint")
    sv.add_argument("puzzle", nargs="?",
                    help="Sudoku: 81 characters ('.' or '0' blank), a grid, a file, or - for stdin; ARC: a task JSON")
    sv.add_argument("--checkpoint", required=True)
    sv.add_argument("--data", default=None, help="take the puzzle from this dataset's test split (with --index)")
    sv.add_argument("--index", type=int, default=None,
                    help="solve test puzzle I of --data (default: the dataset the checkpoint trained on)")
    sv.add_argument("--D", type=int, default=None, help="maximum supervision steps (default: the training N_sup)")
    sv.add_argument("--no-halt", action="store_true", help="run all D steps instead of stopping when Q says halt")
    sv.add_argument("--augments", type=int, default=8, help="ARC: versions voted for a task new to the checkpoint")
    sv.add_argument("--trace", action="store_true",
                    help="show every supervision step: q_halt, cells changed, cells wrong (against trm's exact solver)")
    sv.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp32"])
    sv.add_argument("--device", default="auto")
    sv.add_argument("--json", action="store_true")
    _add_sampler_flags(sv)
    sv.set_defaults(func=cmd_solve)
    from .analysis.cli import add_parser as add_analyze_parser
    add_analyze_parser(sub)
    return p


def main(argv=None) -> int:
    from .runtime import exit_worker
    return exit_worker(_main(argv))  # a torchrun worker ends here, without the interpreter's teardown


def _main(argv=None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--"]:  # `torchrun ... -m trm.cli -- train ...` keeps torchrun off trm's options
        argv = argv[1:]
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a usage error already printed on one line
        return int(e.code or 0)
    from .runtime import tune_allocator
    tune_allocator()
    try:
        args.func(args)
    except (UserError, CheckpointError, DatasetError) as e:
        print(f"trm: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, PermissionError, IsADirectoryError) as e:
        print(f"trm: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("trm: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug or an environment problem: still one line; TRM_DEBUG=1 shows the traceback
        if os.environ.get("TRM_DEBUG"):
            raise
        msg = str(e).splitlines()[0] if str(e) else ""
        print(f"trm: error: {type(e).__name__}: {msg} (set TRM_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
