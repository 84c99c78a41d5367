"""`trm solve`: one Sudoku or maze (trm.trusted: decoded under the rules, optionally verified) or one ARC task
(trm.arc_eval.solve, two attempts) with a checkpoint."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .. import arc_eval
from ..checkpoint import load_model
from ..data.format import load_dataset
from ..data import arc, sudoku
from ..runtime import pick_device
from ..shipped import pick
from ..trusted import solve_sudoku
from .common import UserError, add_sampler_flags, sampler_config, seed_list
from .preflight import check_flags, question_input, trained_meta
from .trust import add_trust_flags, notes, solve_maze, trust_options, verify_lines


def add_parsers(sub) -> None:
    sv = sub.add_parser("solve", help="solve one Sudoku, or one ARC task (two attempts), with a checkpoint")
    sv.add_argument("puzzle", nargs="?",
                    help="Sudoku: 81 characters ('.' or '0' blank), a grid, a file, or - for stdin; ARC: a task JSON")
    sv.add_argument("--checkpoint", default=None,
                    help="run or checkpoint directory (default: the shipped model for the puzzle; trm models)")
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
    add_sampler_flags(sv)
    add_trust_flags(sv)
    sv.set_defaults(func=cmd_solve)


def cmd_solve(args) -> None:
    check_flags(args, ("D", 1), ("augments", 1))  # --D 0 used to mean the default silently
    if args.checkpoint is None:
        args.checkpoint = _shipped_for(args)
    model, cfg = load_model(args.checkpoint, pick_device(args.device))
    meta = trained_meta(cfg)
    size, task = int(meta.get("size", 9)), meta.get("task", "sudoku")
    if task == "arc":
        return _solve_arc(args, model, cfg)
    if task == "maze":
        return solve_maze(args, model, cfg)
    if task != "sudoku":
        raise UserError(f"trm solve takes Sudoku and ARC checkpoints; {args.checkpoint} was trained on {task} "
                        f"(evaluate it with trm eval)")
    puzzle = _sudoku_puzzle(args, model, cfg, size)
    opts = trust_options(args, model.cfg.N_sup)  # decoding, PTRM, --verify (cli/trust.py)
    sampler = opts["sampler"]
    r = solve_sudoku(model, puzzle, size, D=args.D, dtype=args.dtype, halt=not args.no_halt, trace=args.trace,
                     seed=seed_list(args)[0], max_rows=args.max_rows, memory_gb=args.memory_gb, **opts)
    if args.json:
        print(json.dumps(r))
        return
    for t, row in enumerate(r.get("trace", []), 1):
        wrong = "" if row["wrong_cells"] is None else f"  {row['wrong_cells']:2d} cells wrong"
        print(f"step {t:2d}: q_halt {row['q_halt']:+6.2f}{wrong}  {row['changed_cells']:2d} changed  "
              f"{'valid' if row['valid'] else 'not valid'}")
    print("puzzle:")
    print(sudoku.format_grid(puzzle, size))
    verdict = "a valid solution" if r["valid"] else "NOT valid: " + ", ".join(
        w for w, ok in (("breaks the rules", r["obeys_rules"]), ("changes givens", r["keeps_givens"])) if not ok)
    ms = f"{r['seconds'] * 1000:.0f} ms"
    if "verify" in r:
        head, tail = verify_lines(r, verdict, ms)
        print(head, sudoku.format_grid([int(c) for c in r["solution"]], size), tail, sep="\n")
    elif sampler is not None:
        print(f"model's answer ({r['select']} of {r['K']} rollouts, noise on {r['noise']} sigma {r['sigma']:g}, "
              f"D={r['steps']}):")
        print(sudoku.format_grid([int(c) for c in r["solution"]], size))
        print(f"{verdict}; {r['rollouts_agreeing']} of {r['K']} rollouts give this answer "
              f"({r['distinct_answers']} distinct), q_halt {r['q_halt']:+.2f}, {ms}")
    else:
        print("model's answer:")
        print(sudoku.format_grid([int(c) for c in r["solution"]], size))
        print(f"{verdict}; {r['steps']} supervision step{'s' if r['steps'] > 1 else ''}, Q confidence "
              f"{r['confidence']:.3f} (q_halt {r['q_halt']:+.2f}), {ms}")
    for line in notes(r):
        print(line)


def _shipped_for(args) -> Path:
    """The shipped model (trm.shipped) for the puzzle asked: its task and size from --data's meta, or from the
    puzzle's text (16, 36 or 81 Sudoku cells; a square of maze characters). The text read (stdin, a file) is
    kept in args.puzzle for the solve that follows."""
    if args.data is not None:
        meta = load_dataset(args.data).meta
        return pick(meta.get("task", "sudoku"), int(meta.get("size", 0)))
    if args.puzzle is None:
        raise UserError("give a puzzle (81 characters, a grid, a file or -), or --checkpoint RUN")
    if args.puzzle.endswith(".json") and Path(args.puzzle).is_file():
        raise UserError("trm ships no ARC model: give --checkpoint RUN for an ARC task")
    text = sys.stdin.read() if args.puzzle == "-" else args.puzzle
    if args.puzzle != "-" and "\n" not in text and len(text) < 256 and Path(text).is_file():
        text = Path(text).read_text()
    args.puzzle = text
    try:
        size = int(round(len(sudoku.parse_cells(text)) ** 0.5))
    except ValueError as e:
        cells = "".join(text.strip("\n").split("\n"))
        side = int(round(len(cells) ** 0.5))
        if side * side == len(cells) and set(cells) <= set("# SG") and "S" in cells:
            return pick("maze", side)
        raise UserError(f"bad puzzle: {e} (or a maze of '#', ' ', 'S', 'G')") from None
    return pick("sudoku", size)


def _sudoku_puzzle(args, model, cfg: dict, size: int):
    """The puzzle argument (text, a grid, a file or -), or test puzzle --index of --data (by default the
    dataset the checkpoint trained on), which must hold Sudoku of the checkpoint's size."""
    row, text = question_input(args, model, cfg, "a puzzle (81 characters, a grid, a file or -)")
    if row is not None:
        return sudoku.decode(row)
    try:
        return sudoku.parse_puzzle(text, size)
    except ValueError as e:
        raise UserError(f"bad puzzle: {e}") from None


def _solve_arc(args, model, cfg: dict) -> None:
    """`trm solve TASK.json --checkpoint RUN` for an ARC checkpoint: two attempts per test pair."""
    if args.puzzle is None or not Path(args.puzzle).is_file():
        raise UserError("give an ARC task JSON file ({\"train\": [...], \"test\": [...]}): trm solve TASK.json "
                        "--checkpoint RUN")
    task = arc.load_task_file(args.puzzle)
    data = args.data or cfg.get("train", {}).get("data")
    r = arc_eval.solve(model, task, data, augments=args.augments, D=args.D, dtype=args.dtype,
                       sampler=sampler_config(args, model.cfg.N_sup))
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
