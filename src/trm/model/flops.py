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
    """One supervision step in training: the calls without a graph forward only, those with one (TRM: the last
    recursion) and the heads forward + backward (backward = 2x forward)."""
    call, grad = net_call_flops(cfg, batch), cfg.grad_calls_per_step
    return (cfg.calls_per_step - grad) * call + 3 * (grad * call + heads_flops(cfg, batch))


def eval_step_flops(cfg: ModelConfig, batch: int) -> int:
    return cfg.calls_per_step * net_call_flops(cfg, batch) + heads_flops(cfg, batch)
