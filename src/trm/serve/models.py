"""The checkpoints `trm serve` offers: found once at start, each loaded on its first request and then kept."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..checkpoint import CheckpointError, load_config, load_model, resolve_checkpoint
from ..data import maze, sudoku
from ..data.format import DatasetError, load_dataset
from ..model import TRM
from ..shipped import list_models, models_dir

SERVED = ("sudoku", "maze", "arc")  # the tasks the page draws


class RequestError(ValueError):
    """A request the server refuses: HTTP status and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Entry:
    name: str
    path: Path   # the checkpoint directory
    cfg: dict
    model: TRM | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def task(self) -> str:
        return self.cfg.get("data_meta", {}).get("task", "sudoku")

    @property
    def size(self) -> int:
        return int(self.cfg.get("data_meta", {}).get("size", 9 if self.task == "sudoku" else 30))

    @property
    def data(self) -> Path | None:
        """The dataset the checkpoint trained on, where it still exists (its test split gives sample puzzles)."""
        d = self.cfg.get("train", {}).get("data")
        return Path(d) if d and (Path(d) / "meta.json").is_file() else None


def find_checkpoints(paths: list[str | Path]) -> list[Path]:
    """Checkpoint directories: each path a run or checkpoint directory, or a folder whose subfolders are runs."""
    found = []
    for p in map(Path, paths):
        try:
            found.append(resolve_checkpoint(p))
            continue
        except CheckpointError:
            if not p.is_dir():
                raise
        runs = []
        for sub in sorted(q for q in p.iterdir() if q.is_dir()):
            try:
                runs.append(resolve_checkpoint(sub))
            except CheckpointError:
                pass
        if not runs:
            raise CheckpointError(f"no checkpoint in {p} nor in its subfolders")
        found += runs
    return found


def default_models_dir() -> Path | None:
    """The shipped models' folder (trm.shipped.models_dir), if it holds a model."""
    d = models_dir()
    return d if list_models(d) else None


class Models:
    """Named checkpoints (the run folder's name; a repeated name gets -2, -3), loaded lazily, thread-safe."""

    def __init__(self, paths: list[str | Path], device="cpu"):
        self.device = device
        self.entries: dict[str, Entry] = {}
        for ckpt in find_checkpoints(paths):
            base = ckpt.parent.name if ckpt.name in ("checkpoint", "checkpoint.old") else ckpt.name
            name, i = base, 1
            while name in self.entries:
                i += 1
                name = f"{base}-{i}"
            self.entries[name] = Entry(name, ckpt, load_config(ckpt))

    def describe(self) -> list[dict]:
        """What GET /api/models returns for each model."""
        out = []
        for e in self.entries.values():
            m = e.cfg["model"]
            n_test = None
            if e.data is not None and e.task != "arc":
                try:
                    n_test = len(load_dataset(e.data)["test"])
                except (DatasetError, OSError, ValueError):
                    pass
            out.append({"name": e.name, "task": e.task, "size": e.size, "served": e.task in SERVED,
                        "N_sup": m.get("N_sup"), "recursion": m.get("recursion", "trm"), "mixer": m.get("mixer"),
                        "d": m.get("d"), "step": e.cfg.get("step"), "path": str(e.path),
                        "data": None if e.data is None else str(e.data), "test_puzzles": n_test})
        return out

    def entry(self, name: str | None) -> Entry:
        if name is None and len(self.entries) == 1:
            return next(iter(self.entries.values()))
        if not isinstance(name, str) or name not in self.entries:
            raise RequestError(404, f"unknown model {name!r} (models: {', '.join(self.entries)})")
        e = self.entries[name]
        if e.task not in SERVED:
            raise RequestError(400, f"model {name} was trained on {e.task}; the server solves "
                                    f"{' and '.join(SERVED)}")
        return e

    def load(self, e: Entry) -> TRM:
        with e.lock:  # two first requests at once load it once
            if e.model is None:
                e.model, _ = load_model(e.path, self.device)
        return e.model

    def test_puzzle(self, e: Entry, index: int) -> str:
        """Test puzzle `index` of the model's dataset, as the text /api/solve takes."""
        if e.task == "arc":
            raise RequestError(404, "an ARC dataset keeps no task JSON to draw from: load a task file")
        if e.data is None:
            raise RequestError(404, f"model {e.name} has no dataset here to draw puzzles from")
        split = load_dataset(e.data)["test"]
        if not 0 <= index < len(split):
            raise RequestError(400, f"index {index} is outside the test split (0..{len(split) - 1})")
        return puzzle_text(e.task, e.size, np.asarray(split.inputs[index]))


def puzzle_text(task: str, size: int, tokens: np.ndarray) -> str:
    if task == "sudoku":
        return "".join(str(int(v)) if v else "." for v in sudoku.decode(tokens))
    return maze.to_text(tokens, size)


def parse_puzzle(task: str, size: int, text) -> np.ndarray:
    """The tokens of a puzzle's text: Sudoku as `trm solve` reads it; a maze as size lines of '# SG'."""
    if not isinstance(text, str) or not text.strip():
        raise RequestError(400, "'puzzle' must be a non-empty string")
    try:
        if task == "sudoku":
            return sudoku.encode(sudoku.parse_puzzle(text, size))
        return maze.parse_question(text, size)
    except ValueError as e:
        raise RequestError(400, f"bad puzzle: {e}") from None
