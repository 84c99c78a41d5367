"""Datasets: one module per task, sharing the on-disk format of trm.data.format."""

from __future__ import annotations

from typing import Callable

import numpy as np

from .format import (Dataset, DatasetError, Split, check_compatible, dataset_fingerprint, load_dataset,
                     write_dataset)

Augment = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]
Validity = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (inputs, predictions) tokens -> bool per sample


def augmenter(meta: dict) -> Augment | None:
    """The on-the-fly training augmentation a dataset asks for in meta.json ("augment"), or None."""
    kind = meta.get("augment")
    if not kind:
        return None
    if kind == "sudoku":
        from . import sudoku
        size = int(meta["size"])
        return lambda inputs, labels, rng: sudoku.augment(inputs, labels, size, rng)
    if kind == "dihedral":  # square grids whose labels turn with them (Maze-Hard CSVs)
        from .dihedral import augment_square
        side = int(round(int(meta["seq_len"]) ** 0.5))
        return lambda inputs, labels, rng: augment_square(inputs, labels, side, rng)
    if kind == "maze":  # generated mazes: turned, then labelled again by the generator's tie-break
        from . import maze
        size = int(meta["size"])
        return lambda inputs, labels, rng: maze.augment(inputs, labels, size, rng)
    raise DatasetError(f"unknown augmentation '{kind}' in meta.json")


def validator(meta: dict) -> Validity | None:
    """Whether a predicted answer is *a* correct answer to its question, where the label may not be the only
    one (a maze with several shortest paths); None for tasks without such a check."""
    task, size = meta.get("task"), meta.get("size")
    if task == "sudoku":
        from . import sudoku
        return lambda inputs, preds: np.array([
            sudoku.is_solution(sudoku.decode(p), size) and sudoku.keeps_givens(sudoku.decode(q), sudoku.decode(p))
            for q, p in zip(inputs, preds)], dtype=bool)
    if task == "maze":
        from . import maze
        return lambda inputs, preds: maze.valid_paths(inputs, preds, size)
    return None


__all__ = ["Dataset", "DatasetError", "Split", "augmenter", "check_compatible", "dataset_fingerprint", "load_dataset",
           "validator", "write_dataset"]
