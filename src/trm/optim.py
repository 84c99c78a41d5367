"""Optimizers and the learning-rate schedule: AdamATan2 as the reference trains, AdamW, Muon for the networks'
matrices, sign-SGD for the puzzle embeddings, warm-up + cosine."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from adam_atan2_pytorch import AdamAtan2

from .model.trm import PuzzleEmbedding


OPTIMIZERS = ("adam_atan2", "adamw", "muon")


class Chain:
    """Several optimizers stepped as one (Muon for the matrices, AdamW for the rest): the interface the
    trainer uses (step, zero_grad, param_groups, state_dict)."""

    def __init__(self, *optimizers: torch.optim.Optimizer):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict]:
        return [g for o in self.optimizers for g in o.param_groups]

    def step(self) -> None:
        for o in self.optimizers:
            o.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"chain": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state: dict) -> None:
        if "chain" not in state or len(state["chain"]) != len(self.optimizers):
            raise ValueError("the checkpoint's optimizer state is not this optimizer's (was --optimizer changed?)")
        for o, s in zip(self.optimizers, state["chain"]):
            o.load_state_dict(s)


def muon_split(named_params) -> tuple[list, list]:
    """(matrices of the networks, everything else): Muon orthogonalises the updates of hidden weight
    matrices; embeddings, the heads and learned positions stay with AdamW, as Muon's authors advise."""
    matrices, rest = [], []
    for name, p in named_params:
        if not p.requires_grad:
            continue
        (matrices if p.ndim == 2 and name.split(".")[0] in ("net", "net_y") else rest).append(p)
    return matrices, rest


def decay_groups(params: list) -> list:
    """The parameters as one list, or, where some are marked `_no_weight_decay` (the SSD mixer's dt_bias,
    A_log and D, as Mamba-2 trains them), two groups: the rest at the optimizer's weight decay, the marked ones at 0."""
    keep = [p for p in params if getattr(p, "_no_weight_decay", False)]
    if not keep:
        return params  # one group: the optimizer state of every other model is as it always was
    return [{"params": [p for p in params if not getattr(p, "_no_weight_decay", False)]},
            {"params": keep, "weight_decay": 0.0}]


def build_optimizer(named_params, *, name: str, lr: float, weight_decay: float, betas: tuple[float, float],
                    muon_lr: float = 0.0, muon_weight_decay: float = -1.0):
    """AdamATan2 with a = b = 1 (the reference's constants: no epsilon, decoupled weight decay), AdamW, or
    Muon on the networks' matrices with AdamW on the rest ("Speed is Confidence", arXiv 2601.19085, reached
    the TRM baseline on Sudoku-Extreme in about a tenth of the steps). With muon_lr 0, Muon's update is
    rescaled to AdamW's RMS (`match_rms_adamw`), so one lr serves both; with muon_lr > 0 it runs at that lr in
    its own scale (`original`: the orthogonalised update times sqrt(max(1, rows / cols))), as the paper does
    (Muon 0.02, weight decay 0.005; AdamW 1e-4, weight decay 1.0). Each group's "lr_scale" is its peak lr over
    `lr`, so the trainer's schedule moves both."""
    named_params = list(named_params)
    params = [p for _, p in named_params]
    if name == "adam_atan2":
        return AdamAtan2(decay_groups(params), lr=lr, betas=betas, weight_decay=weight_decay, a=1.0, b=1.0)
    if name == "adamw":
        return torch.optim.AdamW(decay_groups(params), lr=lr, betas=betas, weight_decay=weight_decay)
    if name == "muon":
        matrices, rest = muon_split(named_params)
        own = muon_lr > 0
        muon = torch.optim.Muon(matrices, lr=muon_lr if own else lr, momentum=0.95,
                                weight_decay=weight_decay if muon_weight_decay < 0 else muon_weight_decay,
                                adjust_lr_fn="original" if own else "match_rms_adamw")
        for g in muon.param_groups:
            g["lr_scale"] = (muon_lr / lr) if own else 1.0
        return Chain(muon, torch.optim.AdamW(decay_groups(rest), lr=lr, betas=betas, weight_decay=weight_decay))
    raise ValueError(f"unknown optimizer '{name}' (choose {', '.join(OPTIMIZERS)})")


def lr_at(step: int, *, base: float, warmup: int, total: int, min_ratio: float, decay_fraction: float = 1.0) -> float:
    """Linear warmup, then cosine from base down to base * min_ratio (1.0 = constant, as published). With
    decay_fraction f < 1 the lr holds at base and the cosine runs over the last f of the steps after the warm-up
    (warmup-stable-decay: a run keeps its peak lr for most of a budget and still ends annealed)."""
    if step < warmup:
        return base * step / max(1, warmup)
    span = max(1, total - warmup)
    start = warmup + (1 - decay_fraction) * span
    progress = min(1.0, max(0.0, (step - start) / max(1.0, decay_fraction * span)))
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


class SignSGDEmbedding:
    """Sign-SGD with decoupled weight decay on the rows of the puzzle-embedding table used in the batch.

    Gradients of the batch rows (PuzzleEmbedding.batch_grad) are gathered from every process and summed per
    identifier, so every process applies the same update and the tables stay identical; rows not in the
    batch are not touched (no decay either).
    """

    def __init__(self, emb: PuzzleEmbedding, *, lr: float, weight_decay: float):
        self.emb, self.lr, self.weight_decay = emb, lr, weight_decay

    @torch.no_grad()
    def step(self) -> None:
        batch = self.emb.batch_grad()
        if batch is None:
            return
        grad, ids = batch
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

    def zero_grad(self) -> None:
        self.emb.batch_grad()  # drops the batch's rows
