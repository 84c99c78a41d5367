"""One Sudoku with a checkpoint: the deterministic answer (optionally step by step) or the answer PTRM picks
among K noisy rollouts, each checked against the rules and the givens. Returns what `trm solve --json` prints."""

from __future__ import annotations

import time

import numpy as np
import torch

from .data import sudoku
from .evaluate import rollout
from .model import TRM
from .sampling import SamplerConfig, fingerprint, sample


def _checked(puzzle: np.ndarray, solution: np.ndarray, size: int) -> dict:
    obeys, keeps = sudoku.is_solution(solution, size), sudoku.keeps_givens(puzzle, solution)
    return {"solution": "".join(str(int(v)) for v in solution), "valid": bool(obeys and keeps),
            "obeys_rules": bool(obeys), "keeps_givens": bool(keeps)}


def solve_sudoku(model: TRM, puzzle: np.ndarray, size: int, *, D: int | None = None, dtype: str = "auto",
                 halt: bool = True, trace: bool = False) -> dict:
    """Up to D supervision steps (default N_sup), stopping once q_halt > 0 when `halt`: the model's answer, its
    checks, the steps run and the Q head's confidence. trace adds "trace": one row per step (`trace_rows`)."""
    if D is not None and D < 1:
        raise ValueError(f"D must be >= 1 (got {D})")
    device = model.device
    inputs = torch.from_numpy(sudoku.encode(puzzle)[None].astype("int64")).to(device)
    ids = torch.zeros(1, dtype=torch.long, device=device)
    answers = []  # the answer after every supervision step, for the trace
    t0 = time.perf_counter()
    for step, _, out in rollout(model, inputs, ids, model.cfg.N_sup if D is None else D, dtype=dtype,
                                stop_when_halted=halt):
        if trace:
            answers.append((sudoku.decode(out.logits.argmax(-1)[0].cpu().numpy()), float(out.q_halt[0])))
    seconds = time.perf_counter() - t0
    solution = sudoku.decode(out.logits.argmax(-1)[0].cpu().numpy())
    result = {**_checked(puzzle, solution, size), "steps": step, "q_halt": float(out.q_halt[0]),
              "confidence": float(torch.sigmoid(out.q_halt[0])), "seconds": round(seconds, 4)}
    if trace:
        result["trace"] = trace_rows(puzzle, size, answers)
    return result


def solve_sudoku_sampled(model: TRM, puzzle: np.ndarray, size: int, cfg: SamplerConfig, *, seed: int = 0,
                         max_rows: int = 0, memory_gb: float = 1.0, dtype: str = "auto") -> dict:
    """cfg.K noisy rollouts of one Sudoku (PTRM): the answer cfg.select picks, its checks, and how the rollouts
    split (how many give that answer, how many distinct answers there are)."""
    t0 = time.perf_counter()
    r = sample(model, sudoku.encode(puzzle)[None], np.zeros(1, np.int64), cfg, seed=seed, keep_selected=True,
               max_rows=max_rows, memory_gb=memory_gb, dtype=dtype)
    seconds = time.perf_counter() - t0
    ids = r.answer[0, -1]
    agree = int((ids == int(fingerprint(torch.from_numpy(r.selected[:1].astype(np.int64)))[0])).sum())
    return {**_checked(puzzle, sudoku.decode(r.selected[0]), size), "steps": cfg.D, "K": cfg.K,
            "sigma": cfg.sigma, "noise": cfg.noise, "select": cfg.select, "seed": seed,
            "q_halt": float(r.selected_q[0]), "confidence": float(1 / (1 + np.exp(-r.selected_q[0]))),
            "rollouts_agreeing": agree, "distinct_answers": int(len(np.unique(ids))), "seconds": round(seconds, 4)}


def trace_rows(puzzle: np.ndarray, size: int, answers: list) -> list[dict]:
    """Per supervision step, from its (answer, q_halt): q_halt, cells changed since the step before, whether the
    answer is valid and, when trm's exact solver finds a unique solution, how many cells differ from it."""
    sols, _ = sudoku.solve(puzzle, size, limit=2)
    truth = sols[0] if len(sols) == 1 else None
    rows, prev = [], puzzle
    for answer, q in answers:
        rows.append({"q_halt": round(q, 3), "changed_cells": int((answer != prev).sum()),
                     "valid": bool(sudoku.is_solution(answer, size) and sudoku.keeps_givens(puzzle, answer)),
                     "wrong_cells": None if truth is None else int((answer != truth).sum())})
        prev = answer
    return rows
