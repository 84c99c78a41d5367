"""Optimizers and the learning-rate schedule (REFERENCE.md section 2)."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from adam_atan2_pytorch import AdamAtan2

from .model.trm import PuzzleEmbedding


def build_optimizer(params, *, name: str, lr: float, weight_decay: float, betas: tuple[float, float]):
    """AdamATan2 with a = b = 1 (the reference's constants: no epsilon, decoupled weight decay), or AdamW."""
    if name == "adam_atan2":
        return AdamAtan2(params, lr=lr, betas=betas, weight_decay=weight_decay, a=1.0, b=1.0)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer '{name}' (choose adam_atan2 or adamw)")


def lr_at(step: int, *, base: float, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup, then cosine from base down to base * min_ratio (1.0 = constant, as published)."""
    if step < warmup:
        return base * step / max(1, warmup)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


class SignSGDEmbedding:
    """Sign-SGD with decoupled weight decay on the rows of the puzzle-embedding table used in the batch.

    Gradients of the batch rows (PuzzleEmbedding.local) are gathered from every process and summed per
    identifier, so every process applies the same update and the tables stay identical; rows not in the
    batch are not touched (no decay either).
    """

    def __init__(self, emb: PuzzleEmbedding, *, lr: float, weight_decay: float):
        self.emb, self.lr, self.weight_decay = emb, lr, weight_decay

    @torch.no_grad()
    def step(self) -> None:
        local, ids = self.emb.local, self.emb.local_ids
        if local is None or local.grad is None:
            return
        grad = local.grad
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            ws = dist.get_world_size()
            all_grads = [torch.empty_like(grad) for _ in range(ws)]
            all_ids = [torch.empty_like(ids) for _ in range(ws)]
            dist.all_gather(all_grads, grad.contiguous())
            dist.all_gather(all_ids, ids.contiguous())
            grad, ids = torch.cat(all_grads), torch.cat(all_ids)
        uniq, inverse = torch.unique(ids, return_inverse=True)
        summed = torch.zeros(len(uniq), grad.shape[1], dtype=grad.dtype, device=grad.device)
        summed.index_add_(0, inverse, grad)
        w = self.emb.weight
        rows = w[uniq] * (1 - self.lr * self.weight_decay) - self.lr * torch.sign(summed)
        w[uniq] = rows.to(w.dtype)
        self.emb.local = self.emb.local_ids = None

    def zero_grad(self) -> None:
        self.emb.local = self.emb.local_ids = None
