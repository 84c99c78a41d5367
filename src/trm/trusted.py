"""Answers a person can trust: decoding under the puzzle's own constraints, and a search that keeps sampling PTRM
rollouts until one obeys the rules. What `trm solve` and `trm serve` print.

Decoding the logits of one answer (`decode_answers`, `how`):

- "raw": the model's own argmax over the whole vocabulary, as `trm eval` scores it. It may write a blank or
  padding token into a cell, or overwrite a given.
- "constrained" (the default of `trm solve`): the cells the puzzle fixes keep their token (Sudoku: the givens;
  maze: walls, S and G) and every free cell takes the argmax over the tokens it may hold (Sudoku: the digits
  1..size, never blank or padding; maze: open or path). Nothing else changes: a digit may still repeat in a row.
- "propagate" (Sudoku): "constrained", then cells are filled most-confident first. The free cell whose most
  probable remaining digit has the highest probability (renormalised over its remaining candidates) takes that
  digit, and the digit leaves the candidates of its row, column and box; a cell with one candidate left is
  therefore placed next (naked singles). No search and no backtracking: a cell whose candidates run out takes its
  "constrained" digit, and the answer then breaks a rule (and says so).

Verifying (`verify_search`): the deterministic rollout first, then batches of K noisy PTRM rollouts (trm.sampling:
batch b draws the noise streams of puzzle index b), each answer decoded as above and checked by the task's rule
checker (trm.data.validator: a Sudoku that obeys the rules and keeps its givens; a maze path that is a shortest
S-G path) until one passes or the budget of rollouts is spent. It reports the rollouts and network calls used.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .data import maze, sudoku, validator
from .model import TRM
from .sampling import SamplerConfig, _pick, fingerprint, sample

DECODE = ("constrained", "propagate", "raw")


@dataclass
class Task:
    """The puzzle family of a checkpoint, as far as decoding and checking need it."""
    kind: str   # sudoku or maze
    size: int   # side of the grid

    def allowed(self, inputs: np.ndarray, vocab: int) -> np.ndarray:
        """(L, vocab) bool: the tokens each cell may hold in an answer to `inputs` (tokens, (L,))."""
        inputs = np.asarray(inputs).reshape(-1).astype(np.int64)
        ok = np.zeros((len(inputs), vocab), bool)
        if self.kind == "sudoku":
            free = inputs <= 1  # PAD 0, blank 1; digit d is token d + 1
            ok[np.flatnonzero(free)[:, None], np.arange(2, self.size + 2)[None]] = True
        else:
            free = inputs == maze.OPEN
            ok[free, maze.OPEN] = ok[free, maze.PATH] = True
        ok[np.flatnonzero(~free), inputs[~free]] = True
        return ok

    def valid(self, inputs: np.ndarray, answers: np.ndarray) -> np.ndarray:
        """(K,) bool: which answers (tokens, (K, L)) the rule checker accepts."""
        check = validator({"task": self.kind, "size": self.size})
        answers = np.asarray(answers).reshape(len(answers), -1)
        return check(np.broadcast_to(np.asarray(inputs).reshape(1, -1), answers.shape), answers)


def task_of(cfg: dict) -> Task:
    """The Task of a checkpoint's config (its dataset meta); ValueError for tasks without a rule checker."""
    meta = cfg.get("data_meta", {})
    kind = meta.get("task", "sudoku")
    if kind not in ("sudoku", "maze"):
        raise ValueError(f"constrained decoding and --verify need a Sudoku or maze checkpoint, not {kind}")
    return Task(kind, int(meta.get("size", 9 if kind == "sudoku" else 30)))


def decode_answers(logits: np.ndarray, inputs: np.ndarray, task: Task, how: str = "constrained") -> np.ndarray:
    """Answers (tokens, (K, L) uint8) from the logits (K, L, vocab) of K rollouts of one puzzle (module doc)."""
    if how not in DECODE:
        raise ValueError(f"decoding must be one of {', '.join(DECODE)}, not '{how}'")
    logits = np.asarray(logits, np.float32)
    if how == "raw":
        return logits.argmax(-1).astype(np.uint8)
    ok = task.allowed(inputs, logits.shape[-1])
    masked = np.where(ok[None], logits, -np.inf)
    if how == "constrained":
        return masked.argmax(-1).astype(np.uint8)
    if task.kind != "sudoku":
        raise ValueError("propagation is for Sudoku (a maze has no digits to place)")
    return np.stack([_propagate(m, inputs, task.size) for m in masked]).astype(np.uint8)


def _propagate(masked: np.ndarray, inputs: np.ndarray, size: int) -> np.ndarray:
    """One Sudoku answer, most-confident cell first, each placed digit struck from its peers (module doc)."""
    _, peers, _ = sudoku._geometry(size)
    inputs = np.asarray(inputs).reshape(-1)
    p = np.exp(masked - masked.max(-1, keepdims=True))  # -inf (not allowed) -> 0
    fallback = masked.argmax(-1)
    answer = np.where(inputs > 1, inputs, 0).astype(np.int64)
    cand = p > 0
    for c in np.flatnonzero(inputs > 1):  # the givens are placed already
        cand[list(peers[c]), inputs[c]] = False
    free = set(np.flatnonzero(inputs <= 1).tolist())
    while free:
        cells = np.fromiter(free, np.int64)
        w = np.where(cand[cells], p[cells], 0.0)
        total = w.sum(-1)
        stuck = cells[total <= 0]
        if len(stuck):  # no candidate left: the constrained digit, which breaks a rule
            answer[stuck] = fallback[stuck]
            free -= set(stuck.tolist())
            continue
        conf = w.max(-1) / total
        i = int(np.argmax(conf))
        c, tok = int(cells[i]), int(np.argmax(w[i]))
        answer[c] = tok
        free.discard(c)
        cand[list(peers[c]), tok] = False
    return answer


# --- rollouts with decoded answers ---------------------------------------------------------------------------
@dataclass
class Batch:
    """K rollouts of one puzzle: answers decoded, the model's own argmax, final q_halt, steps and calls run."""
    answers: np.ndarray    # (K, L) uint8 decoded tokens
    raw: np.ndarray        # (K, L) uint8 argmax tokens
    q: np.ndarray          # (K,) float32 q_halt after the rollout's last step
    steps_run: np.ndarray  # (K,) supervision steps run
    calls: int             # network applications run, all K together


def run_batch(model: TRM, task: Task, inputs: np.ndarray, cfg: SamplerConfig, *, seed: int = 0, index: int = 0,
              how: str = "constrained", dtype: str = "auto", max_rows: int = 0, memory_gb: float = 1.0,
              on_step=None) -> Batch:
    """cfg.K rollouts of one puzzle (trm.sampling.sample; noise streams (seed, index, k)), decoded by `how`.

    on_step(t, answers (R, L), q (R,), y (R, L, d) float32) after every supervision step, for the rows still
    running (all K while no early stop froze any; `rows` index them): the hook `trm serve` streams through.
    max_rows, memory_gb: trm.sampling's chunking, without on_step."""
    K = cfg.K
    inputs = np.asarray(inputs).reshape(-1)
    logits: list = [None] * K

    def keep(t, rows, carry, out):
        lg = out.logits.float().cpu().numpy()
        rows = rows.cpu().numpy()
        for i, r in enumerate(rows):
            logits[int(r)] = lg[i]
        if on_step is not None:
            y = carry.y[:, model.cfg.prefix_len:].float().cpu().numpy()
            on_step(t, rows, decode_answers(lg, inputs, task, how), out.q_halt.float().cpu().numpy(), y)

    # with on_step: one chunk of all K rows, so that every call sees a whole step
    r = sample(model, inputs[None], np.zeros(1, np.int64), cfg, seed=seed, index_offset=index,
               max_rows=K if on_step is not None else max_rows, memory_gb=memory_gb, dtype=dtype, on_step=keep)
    lg = np.stack(logits)
    steps_run = r.steps_run[0, -1].astype(np.int64)
    return Batch(answers=decode_answers(lg, inputs, task, how), raw=lg.argmax(-1).astype(np.uint8),
                 q=r.q[0, -1].copy(), steps_run=steps_run, calls=int(steps_run.sum()) * r.calls_per_step)


def select(batch: Batch, rule: str) -> int:
    """The rollout whose decoded answer `rule` (best-q, mode, q-vote) picks."""
    ids = fingerprint(torch.from_numpy(batch.answers.astype(np.int64))).numpy()
    return _pick(ids, batch.q, rule)


# --- verification --------------------------------------------------------------------------------------------
@dataclass
class VerifyConfig:
    budget: int = 64   # most rollouts tried, the deterministic one included
    sampler: SamplerConfig = field(default_factory=lambda: SamplerConfig(K=8, sigma=0.3))
    # the noisy batches: K rollouts each; sigma 0.3 is PTRM's Sudoku setting; D 0 = the checkpoint's N_sup

    def validate(self) -> None:
        if self.budget < 1:
            raise ValueError("--verify-budget must be >= 1 (rollouts, the deterministic one included)")
        self.sampler.validate()
        if self.sampler.sigma == 0 and self.budget > 1:
            raise ValueError("--verify with --sigma 0 repeats the deterministic rollout: give a sigma > 0")


def verify_config(budget: int, given: dict, *, D: int = 0, preset: SamplerConfig | None = None) -> VerifyConfig:
    """What --verify runs: batches of K = 8 rollouts at sigma 0.3 (or a sampler preset's), with the sampler
    fields given (K, sigma, noise, ...) set on them and D when given (0 = the checkpoint's N_sup)."""
    s = replace(preset) if preset is not None else VerifyConfig().sampler
    for k, v in given.items():
        setattr(s, k, v)
    s.D = D or s.D
    return VerifyConfig(budget=budget, sampler=s)


@dataclass
class Verified:
    found: bool          # some rollout passed the rule checker
    batch: Batch         # the batch holding the answer reported (not found: all rollouts run)
    pick: int            # its rollout in that batch
    rollouts: int        # rollouts run
    calls: int           # network applications run
    first_valid: int | None   # overall index of the answer when found (0 = the deterministic rollout)
    batches: int


def verify_search(model: TRM, task: Task, inputs: np.ndarray, vcfg: VerifyConfig, *, seed: int = 0,
                  how: str = "constrained", dtype: str = "auto", max_rows: int = 0, memory_gb: float = 1.0,
                  on_batch=None, on_step=None) -> Verified:
    """The deterministic rollout, then noisy batches, until an answer passes the rule checker (module doc).

    Found: the best-q valid answer of the first batch holding one. Not found: the answer vcfg.sampler.select
    picks among all the rollouts run. on_batch(b, cfg) before batch b; on_step as in run_batch."""
    vcfg.validate()
    s = vcfg.sampler
    D = s.D or model.cfg.N_sup
    done, b, batches = 0, 0, []
    while done < vcfg.budget:
        k = 1 if b == 0 else min(s.K, vcfg.budget - done)
        cfg = (SamplerConfig(K=1, sigma=0.0, D=D) if b == 0 else
               SamplerConfig(K=k, sigma=s.sigma, D=D, noise=s.noise, select=s.select, stop_after=s.stop_after,
                             stop_margin=s.stop_margin))
        if on_batch is not None:
            on_batch(b, cfg)
        batch = run_batch(model, task, inputs, cfg, seed=seed, index=b, how=how, dtype=dtype, max_rows=max_rows,
                          memory_gb=memory_gb, on_step=on_step)
        batches.append(batch)
        ok = task.valid(inputs, batch.answers)
        if ok.any():
            pick = int(np.flatnonzero(ok)[np.argmax(batch.q[ok])])
            return Verified(True, batch, pick, done + k, sum(x.calls for x in batches), done + pick, b + 1)
        done += k
        b += 1
    every = Batch(*(np.concatenate([getattr(x, f) for x in batches]) for f in ("answers", "raw", "q", "steps_run")),
                  calls=sum(x.calls for x in batches))
    return Verified(False, every, select(every, s.select), done, every.calls, None, b)


# --- one puzzle: what `trm solve --json` prints -------------------------------------------------------------
def _sigmoid(q: float) -> float:
    return 1 / (1 + math.exp(-q)) if q > -80 else 0.0


def _checked(puzzle: np.ndarray, solution: np.ndarray, size: int) -> dict:
    obeys, keeps = sudoku.is_solution(solution, size), sudoku.keeps_givens(puzzle, solution)
    return {"solution": "".join(str(int(v)) for v in solution), "valid": bool(obeys and keeps),
            "obeys_rules": bool(obeys), "keeps_givens": bool(keeps)}


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


def report(task: Task, inputs: np.ndarray, answer: np.ndarray) -> dict:
    """The answer (tokens) as `trm solve --json` shows it, with the rule checker's verdict."""
    if task.kind == "sudoku":
        return _checked(sudoku.decode(inputs), sudoku.decode(answer), task.size)
    return {"solution": maze.to_text(answer, task.size), "valid": bool(task.valid(inputs, answer[None])[0])}


def solve(model: TRM, task: Task, inputs: np.ndarray, *, how: str = "constrained",
          sampler: SamplerConfig | None = None, verify: VerifyConfig | None = None, D: int | None = None,
          halt: bool = True, seed: int = 0, dtype: str = "auto", max_rows: int = 0, memory_gb: float = 1.0,
          on_batch=None, on_step=None) -> dict:
    """One puzzle (tokens, (L,)): the deterministic answer (up to D steps, stopping once q_halt > 0 when `halt`),
    the answer sampler.select picks among sampler.K noisy rollouts, or with `verify` the first answer that passes
    the rules. Every answer decoded by `how`. Returns `report`'s keys, steps, q_halt, confidence, seconds (with
    a sampler: its settings, rollouts_agreeing, distinct_answers), plus "decode", "cells_decoded" (cells where the answer differs from the
    model's own argmax) and, with `verify`, "verify". on_batch(b, cfg) before every batch of rollouts, on_step
    as in run_batch."""
    inputs = np.asarray(inputs).reshape(-1)
    chunks = dict(dtype=dtype, max_rows=max_rows, memory_gb=memory_gb, on_step=on_step)
    t0 = time.perf_counter()
    if verify is not None:
        v = verify_search(model, task, inputs, verify, seed=seed, how=how, on_batch=on_batch, **chunks)
        batch, pick = v.batch, v.pick
        s = verify.sampler
        extra = {"steps": int(batch.steps_run[pick]), "verify": {
            "found": v.found, "rollouts": v.rollouts, "network_calls": v.calls, "budget": verify.budget,
            "first_valid_rollout": v.first_valid, "batches": v.batches, "K": s.K, "sigma": s.sigma,
            "noise": s.noise, "D": s.D or model.cfg.N_sup}}
    else:
        # no sampler: one rollout without noise; halting = freeze once q_halt > 0 (sample's stop after 1 step)
        cfg = sampler or SamplerConfig(K=1, sigma=0.0, D=D or model.cfg.N_sup, stop_after=1 if halt else 0)
        if on_batch is not None:
            on_batch(0, cfg)
        batch = run_batch(model, task, inputs, cfg, seed=seed, how=how, **chunks)
        extra = {}
        if (sampler is None and halt and how != "raw" and batch.steps_run[0] < cfg.D
                and not task.valid(inputs, batch.answers[:1])[0]):
            # Q halted on an answer the rule checker refuses: a halt is trusted only where the checker agrees,
            # so run on to D (deterministic: the steps up to the halt repeat and are not shown again). --raw
            # keeps the model's own halting, as evaluation scores it
            halted = int(batch.steps_run[0])
            later = None if on_step is None else (lambda t, *a: on_step(t, *a) if t > halted else None)
            batch = run_batch(model, task, inputs, replace(cfg, stop_after=0), seed=seed, how=how,
                              **{**chunks, "on_step": later})
            extra = {"halted_at": halted, "ran_past_halt": True}
        if sampler is None:
            pick, extra = 0, {"steps": int(batch.steps_run[0]), **extra}
        else:
            pick = select(batch, sampler.select)
            ids = fingerprint(torch.from_numpy(batch.answers.astype(np.int64))).numpy()
            extra = {"steps": sampler.D or model.cfg.N_sup, "K": sampler.K, "sigma": sampler.sigma,
                     "noise": sampler.noise, "select": sampler.select, "seed": seed,
                     "rollouts_agreeing": int((ids == ids[pick]).sum()),
                     "distinct_answers": int(len(np.unique(ids)))}
    seconds = time.perf_counter() - t0
    q = float(batch.q[pick])
    return {**report(task, inputs, batch.answers[pick]), **extra, "q_halt": q, "confidence": _sigmoid(q),
            "decode": how, "cells_decoded": int((batch.answers[pick] != batch.raw[pick]).sum()),
            "seconds": round(seconds, 4)}


def solve_sudoku(model: TRM, puzzle: np.ndarray, size: int, *, trace: bool = False, on_step=None, **kw) -> dict:
    """`solve` for a Sudoku (digits, 0 blank); trace adds `trace_rows` of the deterministic rollout (q_halt,
    cells changed, valid, cells wrong against trm's exact solver)."""
    answers = []

    def step(t, rows, ans, q, y):
        answers.append((sudoku.decode(ans[0]), float(q[0])))
        if on_step is not None:
            on_step(t, rows, ans, q, y)

    trace = trace and kw.get("sampler") is None and kw.get("verify") is None
    r = solve(model, Task("sudoku", size), sudoku.encode(puzzle), on_step=step if trace else on_step, **kw)
    if trace:
        r["trace"] = trace_rows(puzzle, size, answers)
    return r


def truth_of(task: Task, inputs: np.ndarray) -> np.ndarray | None:
    """The one right answer (tokens) when it is unique: trm's exact Sudoku solver finds exactly one solution, or
    the maze has exactly one shortest path; else None."""
    inputs = np.asarray(inputs).reshape(-1)
    if task.kind == "sudoku":
        sols, _ = sudoku.solve(sudoku.decode(inputs), task.size, limit=2)
        return sudoku.encode(sols[0]) if len(sols) == 1 else None
    if not maze.unique_shortest_paths(inputs[None], task.size)[0]:
        return None
    return maze.label(inputs[None], task.size)[0]
