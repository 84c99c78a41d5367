"""The losses of deep supervision (a loss at every supervision step). Label 0 marks a token that is not scored.

Per-token cross-entropies (stablemax, softmax), and `act_loss`: the loss of one supervision step, the answer's
token loss plus the Q head's halting loss (and HRM's optional continue loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE = 0


def _stablemax_s(x: torch.Tensor) -> torch.Tensor:
    # s(x) = 1/(1-x) for x < 0, x+1 otherwise: positive, monotone, and linear (not exponential) for
    # large logits, which is what keeps the loss stable (Prieto et al., used by HRM/TRM).
    return torch.where(x < 0, 1 / (1 - x), x + 1)


def stablemax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, dtype=torch.float64) -> torch.Tensor:
    """-log(s(x_label) / sum s(x)), per token; 0 where the label is IGNORE. float64 as in the reference."""
    s = _stablemax_s(logits.to(dtype))
    logp = torch.log(s / s.sum(-1, keepdim=True))
    mask = labels != IGNORE
    picked = torch.gather(logp, -1, torch.where(mask, labels, 0).long().unsqueeze(-1)).squeeze(-1)
    return torch.where(mask, -picked, 0)


def softmax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    mask = labels != IGNORE
    loss = F.cross_entropy(logits.to(dtype).flatten(0, -2), torch.where(mask, labels, 0).long().flatten(),
                           reduction="none").view(labels.shape)
    return torch.where(mask, loss, 0)


LOSSES = {"stablemax": stablemax_cross_entropy, "softmax": softmax_cross_entropy}


@dataclass
class LossParts:
    """One supervision step's loss and what it saw, summed over the batch (the trainer divides by it)."""
    total: torch.Tensor       # lm + 0.5 * (q_halt + q_continue), summed over the batch (not divided by it)
    lm: torch.Tensor          # sum over samples of the mean token loss over scored tokens
    q_halt: torch.Tensor      # BCE(q_halt, whole answer correct), summed
    q_continue: torch.Tensor  # BCE(q_continue, target) summed, 0 when no target
    cell_ok: torch.Tensor     # (B, L) bool: argmax == label on scored tokens
    seq_ok: torch.Tensor      # (B,) bool: every scored token right
    n_cells: torch.Tensor     # (B,) scored tokens per sample


def act_loss(logits: torch.Tensor, labels: torch.Tensor, q_halt: torch.Tensor, q_continue: torch.Tensor, *,
             loss: str = "stablemax", q_continue_target: torch.Tensor | None = None,
             loss_dtype: torch.dtype = torch.float64, weights: torch.Tensor | None = None) -> LossParts:
    """The loss of one supervision step: logits (B, L, V) against labels (B, L); q_halt, q_continue (B,).

    The Q head learns to predict whether the current answer is right (the halting target of TRM); the
    continue logit is trained only when a `q_continue_target` is given (HRM's Q-learning, see
    `q_continue_target`). `loss_dtype` is the precision of the token loss (float64 as in the reference).
    `weights` (B,) scale each sample's losses (a supervision-step weighting); the parts are then weighted sums.
    """
    token_loss_fn = LOSSES.get(loss)
    if token_loss_fn is None:
        raise ValueError(f"unknown loss '{loss}' (choose {' or '.join(LOSSES)})")
    mask = labels != IGNORE
    n_cells = mask.sum(-1)
    token_loss = token_loss_fn(logits, labels, loss_dtype)
    per_sample = token_loss.sum(-1) / n_cells.clamp_min(1)
    with torch.no_grad():
        cell_ok = (logits.argmax(-1) == labels) & mask
        seq_ok = cell_ok.sum(-1) == n_cells
    q_halt_loss = F.binary_cross_entropy_with_logits(q_halt, seq_ok.float(), reduction="none")
    q_continue_loss = (torch.zeros_like(q_halt_loss) if q_continue_target is None else
                       F.binary_cross_entropy_with_logits(q_continue, q_continue_target, reduction="none"))
    if weights is not None:
        w = weights.to(per_sample.dtype)
        per_sample, q_halt_loss, q_continue_loss = per_sample * w, q_halt_loss * w, q_continue_loss * w
    lm, q_halt_loss, q_continue_loss = per_sample.sum(), q_halt_loss.sum(), q_continue_loss.sum()
    return LossParts(total=lm + 0.5 * (q_halt_loss + q_continue_loss), lm=lm, q_halt=q_halt_loss,
                     q_continue=q_continue_loss, cell_ok=cell_ok, seq_ok=seq_ok, n_cells=n_cells)


def q_continue_target(next_q_halt: torch.Tensor, next_q_continue: torch.Tensor, is_last: torch.Tensor) -> torch.Tensor:
    """HRM's bootstrapped continue target: sigmoid of the next step's Q (its logits computed without
    gradients): the halt logit where this step was the sample's last (`is_last`, N_sup reached), else the
    better of halt and continue."""
    return torch.sigmoid(torch.where(is_last, next_q_halt, torch.maximum(next_q_halt, next_q_continue)))
