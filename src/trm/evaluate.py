"""Deterministic evaluation: every sample runs D supervision steps; the halting head is scored, not obeyed."""

from __future__ import annotations

import numpy as np
import torch
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


@torch.inference_mode()
def evaluate(model: TRM, split: Split, *, D: int | None = None, batch_size: int = 256, dtype: str = "auto",
             limit: int = 0, progress: bool = False, desc: str = "eval", validity=None,
             keep_predictions: bool = False) -> dict:
    """Exact and cell accuracy after every supervision step, and how well the halting head would do.

    `validity(inputs, predictions)` (trm.data.validator) adds `valid_fraction`: the share of final answers that
    are correct answers even where they differ from the label (a maze's other shortest paths).
    keep_predictions adds the final answers ("predictions", (n, L) uint8) and their "q_halt" (n,) for voting."""
    was_training = model.training
    model.eval()
    device = model.y_init.device
    D = D or model.cfg.N_sup
    n = min(len(split), limit) if limit else len(split)
    exact_by_step = np.zeros(D, dtype=np.int64)
    cells_by_step = np.zeros(D, dtype=np.int64)
    total_cells = n_scored = 0  # rows without a scored cell (an ARC test output nobody knows) are not counted
    halt_steps, halted_any, correct_at_halt, q_final_ok, final_exact, valid, scored = [], [], [], [], [], [], []
    preds, qs = [], []
    bar = tqdm(total=n, desc=desc, disable=not progress, leave=False, unit="puzzle")
    for s in range(0, n, batch_size):
        e = min(n, s + batch_size)
        inputs, labels, ids = _batch(split, s, e, device)
        mask = labels != IGNORE
        n_cells = mask.sum(-1)
        total_cells += int(n_cells.sum())
        n_scored += int((n_cells > 0).sum())
        B = e - s
        halt_step = torch.full((B,), D, device=device)
        halted = torch.zeros(B, dtype=torch.bool, device=device)
        at_halt = torch.zeros(B, dtype=torch.bool, device=device)
        for t, _, out in rollout(model, inputs, ids, D, dtype=dtype):
            cell_ok = (out.logits.argmax(-1) == labels) & mask
            n_ok = cell_ok.sum(-1)
            exact = (n_ok == n_cells) & (n_cells > 0)
            exact_by_step[t - 1] += int(exact.sum())
            cells_by_step[t - 1] += int(n_ok.sum())
            newly = ~halted & (out.q_halt > 0)
            halt_step = torch.where(newly, t, halt_step)
            at_halt = torch.where(newly, exact, at_halt)
            halted |= newly
        at_halt = torch.where(halted, at_halt, exact)  # never halted: the answer after D steps
        halt_steps.append(halt_step.cpu()); halted_any.append(halted.cpu())
        correct_at_halt.append(at_halt.cpu()); q_final_ok.append(((out.q_halt > 0) == exact).cpu())
        final_exact.append(exact.cpu()); scored.append((n_cells > 0).cpu())
        if keep_predictions:
            preds.append(out.logits.argmax(-1).to(torch.uint8).cpu().numpy())
            qs.append(out.q_halt.float().cpu().numpy())
        if validity is not None:
            valid.append(validity(inputs.cpu().numpy(), out.logits.argmax(-1).cpu().numpy()))
        bar.update(B)
    bar.close()
    model.train(was_training)
    halt_steps, halted_any = torch.cat(halt_steps).float(), torch.cat(halted_any)
    # the halting head is judged on the rows that have an answer to be right about
    sc = torch.cat(scored)
    correct_at_halt, q_final_ok, halted_any = torch.cat(correct_at_halt)[sc], torch.cat(q_final_ok)[sc], halted_any[sc]
    n_halted = int(halted_any.sum())
    by_rating = {}
    if "ratings" in split.extras:  # Sudoku: accuracy against the solver's guess count (difficulty)
        ratings, ok = np.asarray(split.extras["ratings"][:n]), torch.cat(final_exact).numpy()
        for lo, hi in RATING_BUCKETS:
            sel = (ratings >= lo) & (ratings <= hi)
            if sel.any():
                by_rating[f"{lo}-{hi}" if hi < 10**9 else f">={lo}"] = {"n": int(sel.sum()),
                                                                     "exact_accuracy": float(ok[sel].mean())}
    extra = {"valid_fraction": float(np.concatenate(valid).mean())} if valid else {}
    if keep_predictions:
        extra.update(predictions=np.concatenate(preds), q_halt=np.concatenate(qs))
    return {
        "n": n,
        "D": D,
        "n_scored": n_scored,
        "exact_accuracy": exact_by_step[-1] / max(n_scored, 1),
        "cell_accuracy": cells_by_step[-1] / max(total_cells, 1),
        "exact_accuracy_by_step": (exact_by_step / max(n_scored, 1)).round(6).tolist(),
        "cell_accuracy_by_step": (cells_by_step / max(total_cells, 1)).round(6).tolist(),
        "exact_accuracy_at_halt": float(correct_at_halt.float().sum()) / max(n_scored, 1),
        "mean_halt_steps": float(halt_steps.mean()),
        "halt_rate": n_halted / max(n_scored, 1),
        "halting_precision": float(correct_at_halt[halted_any].float().mean()) if n_halted else None,
        "q_halt_accuracy": float(q_final_ok.float().sum()) / max(n_scored, 1),
        "exact_accuracy_by_rating": by_rating,
        **extra,
    }


def summary_line(m: dict) -> str:
    prec = "n/a" if m["halting_precision"] is None else f"{m['halting_precision']:.3f}"
    return (f"exact {m['exact_accuracy']:.4f}  cell {m['cell_accuracy']:.4f}  (D={m['D']}, n={m['n']})  "
            f"halting: mean steps {m['mean_halt_steps']:.2f}, rate {m['halt_rate']:.3f}, precision {prec}, "
            f"exact at halt {m['exact_accuracy_at_halt']:.4f}"
            + (f"  valid {m['valid_fraction']:.4f}" if "valid_fraction" in m else ""))
