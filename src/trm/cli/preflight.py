"""Checks the evaluation-side commands (trm eval, sweep, solve, analyze) run before any compute: flags in range,
matplotlib present where plots come last, and a dataset that fits the checkpoint.

A dataset fits when it holds the task and size the checkpoint trained on, then its sequence length, vocabulary
and puzzle-embedding table. Shape alone is not enough: 4x4 Sudoku and 4x4 mazes are both 16 cells of 6 tokens,
and a Sudoku model scored on mazes reported a number with exit 0."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ..data.format import Dataset, Split, load_dataset
from ..model import TRM
from .common import UserError


def check_flags(args, *limits: tuple) -> None:
    """(name, minimum) or (name, minimum, note) per integer flag: UserError unless the value given is >= minimum
    (flags left at None are not checked)."""
    for name, low, *note in limits:
        value = getattr(args, name, None)
        if value is not None and not value >= low:
            flag = "--" + (name if len(name) == 1 else name.replace("_", "-"))
            raise UserError(f"{flag} must be >= {low}{f' ({note[0]})' if note else ''} (got {value})")


def need_matplotlib(command: str) -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UserError(f"{command} draws its figures with matplotlib, which is not installed: pip install "
                        f"matplotlib (or pip install -e '.[plots]')") from None


def trained_meta(ckpt_cfg: dict) -> dict:
    """The meta of the dataset a checkpoint trained on: recorded with it ("data_meta"), or, for runs recorded
    without it, read from the training dataset's meta.json when that is still there ({} when not)."""
    meta = dict(ckpt_cfg.get("data_meta") or {})
    if "task" not in meta:
        try:
            meta = {**json.loads((Path(ckpt_cfg["train"]["data"]) / "meta.json").read_text()), **meta}
        except (KeyError, TypeError, OSError, ValueError):
            pass
    return meta


def describe(meta: dict) -> str:
    size = meta.get("size")
    return f"{meta.get('task', 'unknown')}" + (f" {size}x{size}" if size else "")


def check_data_fits(ds: Dataset, model: TRM, ckpt_cfg: dict, split: Split | None = None) -> None:
    """UserError (one line) when the dataset is not what the checkpoint can be scored on."""
    c, trained = model.cfg, trained_meta(ckpt_cfg)
    for key in ("task", "size"):  # either side may not record it (an imported reference model: "unknown")
        mine, theirs = trained.get(key), ds.meta.get(key)
        if None not in (mine, theirs) and "unknown" not in (mine, theirs) and mine != theirs:
            raise UserError(f"dataset {ds.path} holds {describe(ds.meta)} puzzles and does not fit the model, "
                            f"trained on {describe(trained)}")
    if ds.seq_len != c.seq_len or ds.vocab_size != c.vocab_size:
        raise UserError(f"dataset {ds.path} (seq_len {ds.seq_len}, vocab {ds.vocab_size}) does not fit the model "
                        f"(seq_len {c.seq_len}, vocab {c.vocab_size})")
    if split is not None and len(split) and int(np.max(split.puzzle_ids)) >= c.num_puzzle_ids:
        raise UserError(f"dataset {ds.path} has puzzle ids up to {int(np.max(split.puzzle_ids))}, beyond the "
                        f"model's table of {c.num_puzzle_ids} (was it trained on another dataset?)")


def question_input(args, model: TRM, ckpt_cfg: dict, usage: str) -> tuple[np.ndarray | None, str | None]:
    """What `trm solve` is asked: (test row --index of --data, None), --data defaulting to the dataset the
    checkpoint trained on and checked to fit it; or (None, the text of the puzzle argument: itself, a file,
    or - for stdin). `usage` says what to give when neither is."""
    if args.puzzle is None and args.data is None and args.index is not None:
        args.data = ckpt_cfg.get("train", {}).get("data")  # the test split the checkpoint was evaluated on
    if args.data is not None:
        ds = load_dataset(args.data)
        split = ds["test"]
        check_data_fits(ds, model, ckpt_cfg, split)
        index = args.index or 0
        if not 0 <= index < len(split):
            raise UserError(f"--index {index} is outside the test split (0..{len(split) - 1})")
        return split.inputs[index], None
    if args.puzzle is None:
        raise UserError(f"give {usage} or --data DIR --index I")
    text = args.puzzle
    if text == "-":
        text = sys.stdin.read()
    elif "\n" not in text and len(text) < 256 and Path(text).is_file():
        text = Path(text).read_text()
    return None, text
