"""Analytic model FLOPs (multiply-add = 2 FLOPs; matmuls only, elementwise work ignored)."""

from __future__ import annotations

from .layers import swiglu_hidden
from .trm import ModelConfig


def net_call_flops(cfg: ModelConfig, batch: int) -> int:
    """One forward call of the network f on a batch."""
    tokens, d = cfg.total_len, cfg.d
    h = swiglu_hidden(d, cfg.expansion)
    per_layer = 2 * tokens * (d * 2 * h + h * d)  # channel SwiGLU
    if cfg.mixer == "attention":
        per_layer += 2 * tokens * (d * 3 * d + d * d) + 2 * 2 * tokens * tokens * d
    else:
        hs = swiglu_hidden(tokens, cfg.expansion)
        per_layer += 2 * d * (tokens * 2 * hs + hs * tokens)
    return batch * cfg.L * per_layer


def heads_flops(cfg: ModelConfig, batch: int) -> int:
    return batch * 2 * (cfg.seq_len * cfg.d * cfg.vocab_size + cfg.d * 2)


def train_step_flops(cfg: ModelConfig, batch: int) -> int:
    """One supervision step in training: T-1 cycles forward only, the last cycle and heads forward + backward
    (backward = 2x forward)."""
    call = net_call_flops(cfg, batch)
    return (cfg.T - 1) * (cfg.n + 1) * call + 3 * ((cfg.n + 1) * call + heads_flops(cfg, batch))


def eval_step_flops(cfg: ModelConfig, batch: int) -> int:
    return cfg.T * (cfg.n + 1) * net_call_flops(cfg, batch) + heads_flops(cfg, batch)
