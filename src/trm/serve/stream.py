"""The events of one streamed solve: trm.trusted's per-batch and per-step calls turned into JSON-ready dicts.

    {"event": "start", "task", "size", "puzzle", "truth"}     truth: the unique right answer, or null
    {"event": "batch", "batch", "K", "sigma", "D", "noise"}   before each batch of rollouts (verify: several)
    {"event": "step", "batch", "step", "rollouts": [...], "pca": {...}}
        each rollout: k, grid (as /api/solve's "solution"), changed (cells changed since the step before),
        wrong (cells that differ from the truth; null without one), valid, q_halt, halt_step (the first step
        with q_halt > 0 so far, where Q would halt; null before)
        pca: "paths" (per rollout, its y's projection on the first two principal components at every step so
        far) and "explained" (their share of the variance)
    {"event": "final", "result": what /api/solve returns}
    {"event": "error", "error": one line}

PCA: y of the answer cells, flattened, after a fixed random projection to PROJ dimensions (a Gaussian matrix,
seeded: distances are kept up to a few percent, Johnson-Lindenstrauss), then a PCA (trm.analysis.landscape) of
all the states of the batch so far, refit at every step, so the path's axes settle as the run goes.
"""

from __future__ import annotations

import numpy as np

from ..analysis.landscape import fit_pca
from ..data import maze, sudoku
from ..trusted import Task
from .models import puzzle_text

PROJ = 128


class StepEvents:
    def __init__(self, task: Task, inputs: np.ndarray, truth: np.ndarray | None, send):
        self.task, self.inputs, self.truth, self.send = task, np.asarray(inputs).reshape(-1), truth, send
        self.batch = -1
        self._proj = None

    def start(self) -> None:
        self.send({"event": "start", "task": self.task.kind, "size": self.task.size,
                   "puzzle": puzzle_text(self.task.kind, self.task.size, self.inputs),
                   "truth": None if self.truth is None else self.text(self.truth)})

    def text(self, tokens) -> str:
        """A grid as /api/solve's "solution" writes it (Sudoku: digits, 0 blank; maze: rows of '# SGo')."""
        if self.task.kind == "sudoku":
            return "".join(str(int(v)) for v in sudoku.decode(tokens))
        return maze.to_text(tokens, self.task.size)

    def on_batch(self, b: int, cfg) -> None:
        self.batch = b
        self.prev: dict[int, np.ndarray] = {}
        self.halt: dict[int, int | None] = {}
        self.states: dict[int, list[np.ndarray]] = {}
        self.send({"event": "batch", "batch": b, "K": cfg.K, "sigma": cfg.sigma, "D": cfg.D, "noise": cfg.noise})

    def on_step(self, t: int, rows, answers: np.ndarray, q: np.ndarray, y: np.ndarray) -> None:
        valid = self.task.valid(self.inputs, answers)
        flat = y.reshape(len(y), -1)
        if self._proj is None or self._proj.shape[0] != flat.shape[1]:
            k = min(PROJ, flat.shape[1])
            rng = np.random.default_rng(0)
            self._proj = (rng.standard_normal((flat.shape[1], k)) / np.sqrt(k)).astype(np.float32)
        low = flat @ self._proj
        out = []
        for i, k in enumerate(int(r) for r in rows):
            a = answers[i]
            before = self.prev.get(k, self.inputs)
            if self.halt.get(k) is None and q[i] > 0:
                self.halt[k] = t
            self.prev[k] = a
            self.states.setdefault(k, []).append(low[i])
            out.append({"k": k, "grid": self.text(a), "changed": np.flatnonzero(a != before).tolist(),
                        "wrong": None if self.truth is None else np.flatnonzero(a != self.truth).tolist(),
                        "valid": bool(valid[i]), "q_halt": round(float(q[i]), 4), "halt_step": self.halt.get(k)})
        self.send({"event": "step", "batch": self.batch, "step": t, "rollouts": out, "pca": self._pca()})

    def _pca(self) -> dict:
        keys = sorted(self.states)
        every = np.concatenate([np.stack(self.states[k]) for k in keys])
        if len(every) < 2:
            return {"paths": {str(k): [[0.0, 0.0]] for k in keys}, "explained": [0.0, 0.0]}
        pca = fit_pca(every, k=2)
        paths = {}
        for k in keys:
            xy = pca.transform(np.stack(self.states[k]))
            if xy.shape[1] < 2:
                xy = np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))
            paths[str(k)] = np.round(xy, 4).tolist()
        return {"paths": paths, "explained": np.round(np.pad(pca.explained, (0, 2 - len(pca.explained))), 4).tolist()}

    def final(self, result: dict) -> None:
        self.send({"event": "final", "result": result})
