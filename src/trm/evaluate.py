"""Deterministic evaluation: every sample runs D supervision steps; the halting head is scored, not obeyed."""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from .data.format import Split
from .losses import IGNORE
from .model import TRM
from .runtime import autocast


RATING_BUCKETS = ((0, 0), (1, 2), (3, 10), (11, 100), (101, 10**9))


def _batch(split: Split, s: int, e: int, device):
    take = lambda a: torch.from_numpy(np.asarray(a[s:e]).astype(np.int64)).to(device)  # noqa: E731
    return take(split.inputs), take(split.labels), take(split.puzzle_ids)


@torch.inference_mode()
def rollout(model: TRM, inputs: torch.Tensor, puzzle_ids: torch.Tensor, D: int, *, dtype: str = "auto",
            stop_when_halted: bool = False):
    """Run up to D supervision steps from the initial carry; yields (step, carry, StepOutput) after each.

    With stop_when_halted the loop ends once every sample's q_halt is positive (used by `trm solve`).
    """
    device = inputs.device
    carry = model.initial_carry(inputs.shape[0], device)
    x = None
    for t in range(1, D + 1):
        with autocast(device, dtype):
            if x is None:  # the question does not change between steps: embed it once
                x = model.embed_input(inputs, puzzle_ids)
            carry, y = model.deep_recursion(x, carry)
            out = model.heads(y)
        yield t, carry, out
        if stop_when_halted and bool((out.q_halt > 0).all()):
            return


def evaluate(model: TRM, split: Split, *, D: int | None = None, batch_size: int = 256, dtype: str = "auto",
             limit: int = 0, progress: bool = False, desc: str = "eval", validity=None,
             keep_predictions: bool = False, shard: tuple[int, int] = (0, 1)) -> dict:
    """Exact and cell accuracy after every supervision step, and how well the halting head would do.

    `validity(inputs, predictions)` (trm.data.validator) adds `valid_fraction`: the share of final answers that
    are correct answers even where they differ from the label (a maze's other shortest paths).
    keep_predictions adds the final answers ("predictions", (n, L) uint8) and their "q_halt" (n,) for voting.
    shard=(rank, world): in a process group, every rank runs its own block of the rows and the blocks are
    gathered in row order, so each rank returns the figures of one process running them all.
    A fixed-point model (solver fpi or anderson) adds "solver": its solves' iterations and residuals
    (TRM.solver_stats; this rank's solves)."""
    D = D or model.cfg.N_sup
    n = min(len(split), limit) if limit else len(split)
    rank, world = shard
    with model.solves_apart() as solves:  # apart from training's, when a training loop evaluates
        rows = score_rows(model, split, range(n * rank // world, n * (rank + 1) // world), D=D,
                          batch_size=batch_size, dtype=dtype, progress=progress, desc=desc, validity=validity,
                          keep_predictions=keep_predictions)
    if world > 1:
        blocks = [None] * world
        dist.all_gather_object(blocks, rows)
        rows = join_blocks(blocks)
    if not rows:
        raise ValueError("nothing to evaluate: the split has no rows")
    m = summarise(rows, split, D)
    if model.cfg.uses_solver:
        m["solver"] = solves.summary()
    return m


def join_blocks(blocks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """`score_rows` of consecutive row blocks, as one; an empty block (a rank with no rows) adds nothing."""
    blocks = [b for b in blocks if b]
    return {k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]} if blocks else {}


@torch.inference_mode()
def score_rows(model: TRM, split: Split, rows: range, *, D: int, batch_size: int = 256, dtype: str = "auto",
               progress: bool = False, desc: str = "eval", validity=None,
               keep_predictions: bool = False) -> dict[str, np.ndarray]:
    """Run D supervision steps on split[rows]; what `summarise` needs, one entry per row ({} for no rows)."""
    was_training = model.training
    model.eval()
    device = model.device
    out_rows = {k: [] for k in ("exact", "cells_ok", "n_cells", "halt_step", "halted", "at_halt", "q_final_ok")}
    if validity is not None:
        out_rows["valid"] = []
    if keep_predictions:
        out_rows.update(predictions=[], q_halt=[])
    bar = tqdm(total=len(rows), desc=desc, disable=not progress, leave=False, unit="puzzle")
    for s in range(rows.start, rows.stop, batch_size):
        e = min(rows.stop, s + batch_size)
        inputs, labels, ids = _batch(split, s, e, device)
        mask = labels != IGNORE
        n_cells = mask.sum(-1)
        B = e - s
        halt_step = torch.full((B,), D, device=device)
        halted = torch.zeros(B, dtype=torch.bool, device=device)
        at_halt = torch.zeros(B, dtype=torch.bool, device=device)
        exact_steps, cells_steps = [], []
        for t, _, out in rollout(model, inputs, ids, D, dtype=dtype):
            cell_ok = (out.logits.argmax(-1) == labels) & mask
            n_ok = cell_ok.sum(-1)
            exact = (n_ok == n_cells) & (n_cells > 0)  # rows without a scored cell (unknown ARC outputs): never
            exact_steps.append(exact); cells_steps.append(n_ok)
            newly = ~halted & (out.q_halt > 0)
            halt_step = torch.where(newly, t, halt_step)
            at_halt = torch.where(newly, exact, at_halt)
            halted |= newly
        at_halt = torch.where(halted, at_halt, exact)  # never halted: the answer after D steps
        for k, v in (("exact", torch.stack(exact_steps, 1)), ("cells_ok", torch.stack(cells_steps, 1)),
                     ("n_cells", n_cells), ("halt_step", halt_step), ("halted", halted), ("at_halt", at_halt),
                     ("q_final_ok", (out.q_halt > 0) == exact)):
            out_rows[k].append(v.cpu().numpy())
        if keep_predictions:
            out_rows["predictions"].append(out.logits.argmax(-1).to(torch.uint8).cpu().numpy())
            out_rows["q_halt"].append(out.q_halt.float().cpu().numpy())
        if validity is not None:
            out_rows["valid"].append(validity(inputs.cpu().numpy(), out.logits.argmax(-1).cpu().numpy()))
        bar.update(B)
    bar.close()
    model.train(was_training)
    return {k: np.concatenate(v) for k, v in out_rows.items()} if len(rows) else {}


def summarise(r: dict[str, np.ndarray], split: Split, D: int) -> dict:
    """The figures of `evaluate` from its rows (split[0:n], in order)."""
    n = len(r["n_cells"])
    sc = r["n_cells"] > 0  # the halting head is judged on the rows that have an answer to be right about
    n_scored, total_cells = int(sc.sum()), int(r["n_cells"].sum())
    exact_by_step, cells_by_step = r["exact"].sum(0), r["cells_ok"].sum(0)
    correct_at_halt, q_final_ok, halted_any = r["at_halt"][sc], r["q_final_ok"][sc], r["halted"][sc]
    n_halted = int(halted_any.sum())
    by_rating = {}
    if "ratings" in split.extras:  # Sudoku: accuracy against the solver's guess count (difficulty)
        ratings, ok = np.asarray(split.extras["ratings"][:n]), r["exact"][:, -1]
        for lo, hi in RATING_BUCKETS:
            sel = (ratings >= lo) & (ratings <= hi)
            if sel.any():
                by_rating[f"{lo}-{hi}" if hi < 10**9 else f">={lo}"] = {"n": int(sel.sum()),
                                                                     "exact_accuracy": float(ok[sel].mean())}
    extra = {"valid_fraction": float(r["valid"].mean())} if "valid" in r else {}
    if "predictions" in r:
        extra.update(predictions=r["predictions"], q_halt=r["q_halt"])
    return {
        "n": n,
        "D": D,
        "n_scored": n_scored,
        "exact_accuracy": int(exact_by_step[-1]) / max(n_scored, 1),
        "cell_accuracy": int(cells_by_step[-1]) / max(total_cells, 1),
        "exact_accuracy_by_step": (exact_by_step / max(n_scored, 1)).round(6).tolist(),
        "cell_accuracy_by_step": (cells_by_step / max(total_cells, 1)).round(6).tolist(),
        "exact_accuracy_at_halt": int(correct_at_halt.sum()) / max(n_scored, 1),
        "mean_halt_steps": float(r["halt_step"].astype(np.float64).mean()),
        "halt_rate": n_halted / max(n_scored, 1),
        "halting_precision": float(correct_at_halt[halted_any].mean()) if n_halted else None,
        "q_halt_accuracy": int(q_final_ok.sum()) / max(n_scored, 1),
        "exact_accuracy_by_rating": by_rating,
        **extra,
    }


def summary_line(m: dict) -> str:
    prec = "n/a" if m["halting_precision"] is None else f"{m['halting_precision']:.3f}"
    return (f"exact {m['exact_accuracy']:.4f}  cell {m['cell_accuracy']:.4f}  (D={m['D']}, n={m['n']})  "
            f"halting: mean steps {m['mean_halt_steps']:.2f}, rate {m['halt_rate']:.3f}, precision {prec}, "
            f"exact at halt {m['exact_accuracy_at_halt']:.4f}"
            + (f"  valid {m['valid_fraction']:.4f}" if "valid_fraction" in m else "")
            + (solver_line(m["solver"]) if m.get("solver", {}).get("solves") else ""))


def solver_line(s: dict) -> str:
    """The distribution of a fixed-point model's solves (fixed_point.SolveLog.summary), for summary_line."""
    return (f"  solver: {s['solves']} solves, iterations mean {s['iter_mean']:.1f} p50 {s['iter_p50']:g} p90 "
            f"{s['iter_p90']:g} max {s['iter_max']:g}, residual mean {s['res_mean']:.1e} p90 {s['res_p90']:.1e} "
            f"max {s['res_max']:.1e}, converged {s['converged']:.1%}")
