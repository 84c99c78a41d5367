"""Per-token losses. Label 0 marks a token that is not scored (PAD)."""

from __future__ import annotations

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
