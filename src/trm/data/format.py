"""The on-disk dataset format shared by every task (see docs/data.md).

A dataset is a directory:

    meta.json                 task, grid shape, seq_len, vocab_size, num_puzzle_ids, split sizes, provenance
    <split>/inputs.npy        (N, seq_len) uint8 tokens, 0 = PAD
    <split>/labels.npy        (N, seq_len) uint8 target tokens, 0 = not scored
    <split>/puzzle_ids.npy    (N,) int32 row of the puzzle-embedding table (0 = the shared/blank id)
    <split>/<extra>.npy       optional per-example arrays (ratings, group ids, ...)

Splits are "train" and "test". The whole directory is written beside its destination and renamed into
place, so a killed build never leaves a half-written dataset behind. meta.json also records a content hash of
the arrays (`fingerprint`, see `dataset_fingerprint`), so that a run can tell the data it trained on.

Also here: what every builder shares about its sources and its destination (`check_out_dir`, `read_csv_rows`,
`parse_rating`), and the check that a dataset fits a model (`check_compatible`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import (  # noqa: F401 (trm.train imports these)
    atomic_dir, atomic_write_bytes, atomic_write_json, check_replaceable)

FORMAT_VERSION = 1
REQUIRED_ARRAYS = ("inputs", "labels", "puzzle_ids")


class DatasetError(ValueError):
    """A dataset directory is missing, incomplete or inconsistent (message is one line)."""


@dataclass
class Split:
    inputs: np.ndarray
    labels: np.ndarray
    puzzle_ids: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass
class Dataset:
    path: Path
    meta: dict
    splits: dict[str, Split]
    _checked: set = field(default_factory=set, repr=False, compare=False)

    @property
    def seq_len(self) -> int:
        return int(self.meta["seq_len"])

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    @property
    def num_puzzle_ids(self) -> int:
        return int(self.meta["num_puzzle_ids"])

    @property
    def fingerprint(self) -> str:
        return dataset_fingerprint(self.path)

    def __getitem__(self, split: str) -> Split:
        if split not in self.splits:
            raise DatasetError(f"dataset {self.path} has no split '{split}' (has: {', '.join(self.splits)})")
        if split not in self._checked:  # on first use, not at load: `trm solve` need not read a GB train split
            _check_values(self.path / split, self.splits[split], self.meta)
            self._checked.add(split)
        return self.splits[split]


def _check_values(where: Path, split: Split, meta: dict) -> None:
    """Tokens and puzzle ids inside the ranges meta.json declares: past them, an embedding lookup in torch
    would fail with an IndexError far from the cause."""
    vocab, ids = int(meta["vocab_size"]), int(meta["num_puzzle_ids"])
    for name, a, hi, what in (("inputs", split.inputs, vocab, f"vocab_size {vocab}"),
                              ("labels", split.labels, vocab, f"vocab_size {vocab}"),
                              ("puzzle_ids", split.puzzle_ids, ids, f"num_puzzle_ids {ids}")):
        if a.dtype.kind not in "iu":
            raise DatasetError(f"{where / name}.npy holds {a.dtype} values: expected integers")
        if not len(a):
            continue
        top = int(a.max())
        low = int(a.min()) if a.dtype.kind == "i" else 0
        if low < 0 or top >= hi:
            bad = low if low < 0 else top
            raise DatasetError(f"{where / name}.npy holds the value {bad}, outside 0..{hi - 1} "
                               f"(meta.json: {what}): the dataset is damaged or its meta.json is not its own")


def check_compatible(meta: dict, model_cfg, name: str = "the dataset") -> None:
    """Refuse data that does not fit a model (a ModelConfig, or anything with its seq_len, vocab_size,
    num_puzzle_ids and prefix_len): the same seq_len and vocab_size, and no more puzzle ids than the model's
    embedding table has rows (a model without puzzle embeddings takes any). Raises DatasetError, one line."""
    got = {k: int(meta[k]) for k in ("seq_len", "vocab_size", "num_puzzle_ids")}
    want = {k: int(getattr(model_cfg, k)) for k in got}
    wrong = [f"{k} {got[k]} (model: {want[k]})" for k in ("seq_len", "vocab_size") if got[k] != want[k]]
    if getattr(model_cfg, "prefix_len", 1) and got["num_puzzle_ids"] > want["num_puzzle_ids"]:
        wrong.append(f"num_puzzle_ids {got['num_puzzle_ids']} (model's table: {want['num_puzzle_ids']} rows)")
    if wrong:
        task = f"{meta.get('task', '?')}" + (f" {meta['size']}x{meta['size']}" if meta.get("size") else "")
        raise DatasetError(f"{name} ({task}) does not fit the model: {', '.join(wrong)}")


# --- where a dataset goes, what it is built from --------------------------------------------------------
def check_out_dir(out_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse a destination before the build, not after minutes of it: an existing one without --overwrite,
    a file, a folder under a file, and (with --overwrite) a folder that is not a dataset, which is never
    deleted."""
    out = Path(out_dir)
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise DatasetError(f"cannot write {out}: {parent} is a file, not a folder")
            break
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise DatasetError(f"{out} already exists (pass --overwrite to replace it)")
        if not out.is_dir():
            raise DatasetError(f"{out} is a file, not a dataset: not replacing it (choose another --out)")
        check_replaceable(out, "dataset")  # only a dataset: never a user's folder, the current one, a link
    return out


CSV_COLUMNS = ("source", "question", "answer", "rating")  # Sudoku-Extreme's and Maze-Hard's CSVs


def read_csv_rows(path: str | os.PathLike, columns=CSV_COLUMNS) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each row of a CSV with this header; blank lines skipped. A file that is not
    such a CSV (no header, no rows, too few fields, not text, a field the csv module refuses) raises
    DatasetError naming the file and the line."""
    path, rows, reader = Path(path), 0, None
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or [h.strip() for h in header[:len(columns)]] != list(columns):
                raise DatasetError(f"{path} line 1: expected the header {','.join(columns)}")
            for row in reader:
                if not row:
                    continue
                if len(row) < len(columns):
                    raise DatasetError(f"{path} line {reader.line_num}: expected {len(columns)} fields "
                                       f"({','.join(columns)}), got {len(row)}")
                rows += 1
                yield reader.line_num, row
    except csv.Error as e:
        what = str(e)
        if "field limit" in what:  # usually an unclosed quote that swallowed the rest of the file
            what = f"a field longer than {csv.field_size_limit()} characters (an unclosed quote?)"
        raise DatasetError(f"{path} line {reader.line_num if reader else 1}: not a valid CSV row: {what}") from None
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not a UTF-8 text file (byte {e.start}: {e.reason})") from None
    if not rows:
        raise DatasetError(f"{path}: no rows after the header")


def parse_rating(text: str, where: str) -> int:
    """A CSV's rating field: a whole number that fits int32 ("12" and "12.0" are 12; "1.5", "inf" refused)."""
    try:
        v = float(text)
    except ValueError:
        raise DatasetError(f"{where}: the rating {text!r} is not a number") from None
    if not (v.is_integer() and -2**31 <= v < 2**31):
        raise DatasetError(f"{where}: the rating {text!r} must be a whole number from -2^31 to 2^31 - 1")
    return int(v)


# --- writing, fingerprinting and loading ---------------------------------------------------------------
FINGERPRINT_KEYS = ("format", "task", "size", "box", "charset", "seq_len", "vocab_size", "num_puzzle_ids",
                    "augment", "splits")  # what says how to read the arrays; provenance and timings are not


def content_hash(path: Path, meta: dict) -> str:
    """blake2b-128 of the meta keys that say how to read the data, of each split's .npy files and of the JSON
    files beside meta.json (ARC's test_tasks.json: the answers scored against), in a fixed order."""
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps({k: meta.get(k) for k in FINGERPRINT_KEYS}, sort_keys=True).encode())
    files = [f for name in sorted(meta.get("splits", {})) for f in sorted((path / name).glob("*.npy"))]
    files += [f for f in sorted(path.glob("*.json")) if f.name != "meta.json"]
    for f in files:
        h.update(f"\0{f.relative_to(path).as_posix()}\0{f.stat().st_size}\0".encode())
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 24):
                h.update(chunk)
    return h.hexdigest()


def dataset_fingerprint(path: str | os.PathLike, recompute: bool = False) -> str:
    """A 32-hex-digit content hash of a dataset: equal for the same arrays, whatever the path or build time.
    Builders write it into meta.json ("fingerprint"), so reading it is free; a dataset built before that has
    it computed here, reading every array once (recompute=True does that for any dataset, as a check)."""
    path = Path(path)
    meta_path = path / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        raise DatasetError(f"{path} is not a trm dataset: {meta_path} is missing or unreadable") from None
    if not recompute and isinstance(meta.get("fingerprint"), str):
        return meta["fingerprint"]
    return content_hash(path, meta)


def write_dataset(out_dir: str | os.PathLike, meta: dict, splits: dict[str, dict[str, np.ndarray]],
                  overwrite: bool = False) -> Path:
    """Write a dataset atomically: built in a sibling temp dir, then renamed into place (trm.atomic)."""
    out = check_out_dir(out_dir, overwrite)
    for name, arrays in splits.items():
        missing = [k for k in REQUIRED_ARRAYS if k not in arrays]
        if missing:
            raise DatasetError(f"split '{name}' lacks arrays: {', '.join(missing)}")
        n = len(arrays["inputs"])
        for k, a in arrays.items():
            if len(a) != n:
                raise DatasetError(f"split '{name}': array '{k}' has {len(a)} rows, inputs has {n}")
    meta = dict(meta, format=FORMAT_VERSION, splits={k: len(v["inputs"]) for k, v in splits.items()})
    with atomic_dir(out, kind="dataset") as tmp:
        for name, arrays in splits.items():
            (tmp / name).mkdir()
            for key, arr in arrays.items():
                np.save(tmp / name / f"{key}.npy", np.ascontiguousarray(arr))
        meta["fingerprint"] = content_hash(tmp, meta)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out


def load_dataset(path: str | os.PathLike, mmap: bool = True) -> Dataset:
    """Load a dataset directory; raises DatasetError with a one-line message when it is unusable."""
    path = Path(path)
    meta_path = path / "meta.json"
    if not path.is_dir():
        raise DatasetError(f"no dataset at {path} (build one with `trm data sudoku --out {path}`)")
    if not meta_path.is_file():
        raise DatasetError(f"{path} is not a trm dataset: meta.json is missing")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{meta_path} is not valid JSON ({e.msg})") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{meta_path} is not a JSON object")
    for key in ("task", "seq_len", "vocab_size", "num_puzzle_ids", "splits"):
        if key not in meta:
            raise DatasetError(f"{meta_path} lacks the key '{key}'")
    for key in ("seq_len", "vocab_size", "num_puzzle_ids"):
        if not isinstance(meta[key], int) or isinstance(meta[key], bool) or meta[key] < 1:
            raise DatasetError(f"{meta_path}: '{key}' must be a whole number >= 1, not {meta[key]!r}")
    if not isinstance(meta["splits"], dict) or not all(isinstance(n, int) and n >= 0 for n in meta["splits"].values()):
        raise DatasetError(f"{meta_path}: 'splits' must map split names to row counts")
    splits = {}
    for name, n in meta["splits"].items():
        arrays = {}
        for f in sorted((path / name).glob("*.npy")):
            try:
                arrays[f.stem] = np.load(f, mmap_mode="r" if mmap else None)
            except (ValueError, OSError) as e:
                raise DatasetError(f"{f} is unreadable ({e})") from None
        missing = [k for k in REQUIRED_ARRAYS if k not in arrays]
        if missing:
            raise DatasetError(f"{path / name} lacks {', '.join(k + '.npy' for k in missing)}")
        for k, a in arrays.items():
            if len(a) != n:
                raise DatasetError(f"{path / name / k}.npy has {len(a)} rows, meta.json says {n}")
        for k, shape in (("inputs", (n, meta["seq_len"])), ("labels", (n, meta["seq_len"])), ("puzzle_ids", (n,))):
            if arrays[k].shape != shape:
                raise DatasetError(f"{path / name}/{k}.npy has shape {arrays[k].shape}, expected "
                                   f"({'N, ' + str(meta['seq_len']) if len(shape) == 2 else 'N,'}) with N = {n}")
        core = {k: arrays.pop(k) for k in REQUIRED_ARRAYS}
        splits[name] = Split(**core, extras=arrays)
    return Dataset(path=path, meta=meta, splits=splits)
