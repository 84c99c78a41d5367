"""The on-disk dataset format shared by every task (see docs/data.md).

A dataset is a directory:

    meta.json                 task, grid shape, seq_len, vocab_size, num_puzzle_ids, split sizes, provenance
    <split>/inputs.npy        (N, seq_len) uint8 tokens, 0 = PAD
    <split>/labels.npy        (N, seq_len) uint8 target tokens, 0 = not scored
    <split>/puzzle_ids.npy    (N,) int32 row of the puzzle-embedding table (0 = the shared/blank id)
    <split>/<extra>.npy       optional per-example arrays (ratings, group ids, ...)

Splits are "train" and "test". The whole directory is written beside its destination and renamed into
place, so a killed build never leaves a half-written dataset behind.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_dir, atomic_write_bytes, atomic_write_json  # noqa: F401 (trm.train imports these)

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

    @property
    def seq_len(self) -> int:
        return int(self.meta["seq_len"])

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    @property
    def num_puzzle_ids(self) -> int:
        return int(self.meta["num_puzzle_ids"])

    def __getitem__(self, split: str) -> Split:
        if split not in self.splits:
            raise DatasetError(f"dataset {self.path} has no split '{split}' (has: {', '.join(self.splits)})")
        return self.splits[split]


def write_dataset(out_dir: str | os.PathLike, meta: dict, splits: dict[str, dict[str, np.ndarray]],
                  overwrite: bool = False) -> Path:
    """Write a dataset atomically: built in a sibling temp dir, then renamed into place (trm.atomic)."""
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise DatasetError(f"{out} already exists (pass --overwrite to replace it)")
    for name, arrays in splits.items():
        missing = [k for k in REQUIRED_ARRAYS if k not in arrays]
        if missing:
            raise DatasetError(f"split '{name}' lacks arrays: {', '.join(missing)}")
        n = len(arrays["inputs"])
        for k, a in arrays.items():
            if len(a) != n:
                raise DatasetError(f"split '{name}': array '{k}' has {len(a)} rows, inputs has {n}")
    meta = dict(meta, format=FORMAT_VERSION, splits={k: len(v["inputs"]) for k, v in splits.items()})
    with atomic_dir(out) as tmp:
        for name, arrays in splits.items():
            (tmp / name).mkdir()
            for key, arr in arrays.items():
                np.save(tmp / name / f"{key}.npy", np.ascontiguousarray(arr))
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
    for key in ("task", "seq_len", "vocab_size", "num_puzzle_ids", "splits"):
        if key not in meta:
            raise DatasetError(f"{meta_path} lacks the key '{key}'")
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
        if arrays["inputs"].shape[1:] != (meta["seq_len"],):
            raise DatasetError(f"{path / name}/inputs.npy has shape {arrays['inputs'].shape}, "
                               f"expected (N, {meta['seq_len']})")
        core = {k: arrays.pop(k) for k in REQUIRED_ARRAYS}
        splits[name] = Split(**core, extras=arrays)
    return Dataset(path=path, meta=meta, splits=splits)
