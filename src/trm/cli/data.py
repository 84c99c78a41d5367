"""`trm data sudoku|maze|arc`: build a dataset (trm.data) and say what was written."""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

from ..data import arc, maze, sudoku
from ..data.recipes import pool_lists, shared_data_root
from .common import UserError


def add_parsers(sub) -> None:
    dp = sub.add_parser("data", help="build datasets")
    dsub = dp.add_subparsers(dest="task", required=True)
    s = dsub.add_parser("sudoku", help="build a Sudoku dataset from puzzle lists, CSVs or the generator")
    s.add_argument("--out", required=True, help="dataset directory to write")
    s.add_argument("--pool", action="append", default=[], help="named list group in the shared data: 17clue or hard")
    s.add_argument("--list", action="append", default=[], help="a file of 81-char puzzles, one a line (repeatable)")
    s.add_argument("--csv", action="append", default=[], help="a Sudoku-Extreme CSV source,question,answer,rating")
    s.add_argument("--generate", type=int, default=0, help="number of minimal puzzles to generate")
    s.add_argument("--size", type=int, default=9, choices=[4, 6, 9], help="grid size (generator, lists)")
    s.add_argument("--train", type=int, default=None,
                   help="seeded subsample of N training puzzles (default all; 0 = an evaluation-only set)")
    s.add_argument("--test", type=int, default=None, help="number of test puzzles (default test-fraction of all)")
    s.add_argument("--test-fraction", type=float, default=0.1, help="share of the puzzles tested on, without --test")
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
    m.add_argument("--unique-path", action="store_true",
                   help="add walls off the label's path until it is the only shortest one (no tie-break to learn)")
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


def _add_build_flags(p: argparse.ArgumentParser) -> None:
    """Flags every dataset builder takes."""
    p.add_argument("--seed", type=int, default=0, help="seed of the split, sampling and augmentation")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset (atomically)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _in_user_terms(cmd):
    """What the builders leave to the system (a full disk, a number past a type's range) as one line naming
    the file; the input errors they find themselves are DatasetError / ValueError already."""
    @functools.wraps(cmd)
    def run(args):
        if args.seed < 0:
            raise UserError(f"--seed must be >= 0, not {args.seed}")
        try:
            return cmd(args)
        except OSError as e:  # FileExistsError, NotADirectoryError, a full disk...: the file and the reason
            raise UserError(f"{e.filename or args.out}: {e.strerror or e}") from None
        except OverflowError as e:
            raise UserError(f"building {args.out}: a number out of range ({e})") from None
    return run


@_in_user_terms
def cmd_data_sudoku(args) -> None:
    lists = [Path(x) for x in args.list]
    if args.pool:
        lists += pool_lists(args.pool, Path(args.sudoku_dir) if args.sudoku_dir else None)
    for f in lists + [Path(x) for x in args.csv]:
        if not f.is_file():
            raise UserError(f"no such file: {f}")
    if (args.train is not None and args.train < 0) or (args.test is not None and args.test < 1) or args.generate < 0:
        raise UserError("--train must be >= 0, --test >= 1 and --generate >= 0")
    if args.test is None and not 0 < args.test_fraction < 1:
        raise UserError(f"--test-fraction must lie between 0 and 1, not {args.test_fraction}")
    if not (lists or args.csv or args.generate):
        raise UserError("no source given: use --pool, --list, --csv or --generate")
    t0 = time.time()
    out = sudoku.build_sudoku(args.out, size=args.size, lists=lists, csvs=args.csv, generate=args.generate,
                              train=args.train, test=args.test, test_fraction=args.test_fraction, seed=args.seed,
                              workers=args.workers, overwrite=args.overwrite, progress=not args.quiet)
    meta = json.loads((out / "meta.json").read_text())
    print(f"wrote {out}: train {meta['splits']['train']}, test {meta['splits']['test']} "
          f"({time.time() - t0:.1f} s)")


@_in_user_terms
def cmd_data_maze(args) -> None:
    for f in args.csv + args.test_csv:
        if not Path(f).is_file():
            raise UserError(f"no such file: {f}")
    if not 2 <= args.size <= maze.MAX_SIZE or args.train < 0 or (args.test < 1 and not args.test_csv):
        raise UserError(f"--size must be 2..{maze.MAX_SIZE}, --train >= 0 and --test >= 1")
    t0 = time.time()
    out = maze.build_maze(args.out, size=args.size, wall_density=maze.parse_density(args.wall_density),
                          min_path=args.min_path, exact=args.exact, unique_path=args.unique_path,
                          train=args.train, test=args.test, csvs=args.csv, test_csvs=args.test_csv,
                          seed=args.seed, overwrite=args.overwrite, progress=not args.quiet)
    meta = json.loads((out / "meta.json").read_text())
    print(f"wrote {out}: train {meta['splits']['train']}, test {meta['splits']['test']} mazes, "
          f"{meta['unique_shortest_path_fraction']:.1%} with a unique shortest path ({time.time() - t0:.1f} s)")


@_in_user_terms
def cmd_data_arc(args) -> None:
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
