"""Analytic model FLOPs (multiply-add = 2 FLOPs; matmuls and convolutions only, elementwise work ignored)."""

from __future__ import annotations

from .layers import swiglu_hidden
from .trm import ModelConfig


def ssd_flops(cfg: ModelConfig) -> int:
    """One SSD mixer on one sequence: the projections, and per direction the depthwise conv and the chunked
    scan's matmuls (trm.model.ssd.ssd_chunked: C B^T, the masked product, the chunk states, the state passing,
    the states' read-out), padding to whole chunks included."""
    tokens, d, N = cfg.total_len, cfg.d, cfg.ssd_state
    inner = cfg.ssd_expand * d
    Q = min(cfg.ssd_chunk, tokens)
    chunks = -(-tokens // Q)
    scan = 2 * chunks * Q * (Q * N + Q * inner + 2 * inner * N) + 2 * chunks * chunks * inner * N
    scan += 2 * tokens * (inner + 2 * N) * cfg.ssd_conv
    proj = 2 * tokens * d * (2 * inner + 2 * N + inner // cfg.ssd_head_dim) + 2 * tokens * inner * d
    return proj + scan * (2 if cfg.ssd_bidirectional else 1)


def net_call_flops(cfg: ModelConfig, batch: int) -> int:
    """One forward call of the network f on a batch."""
    tokens, d = cfg.total_len, cfg.d
    h = swiglu_hidden(d, cfg.expansion)
    total = 0
    for mixer in cfg.layer_mixers:
        total += 2 * tokens * (d * 2 * h + h * d)  # channel SwiGLU
        if mixer == "attention":
            total += 2 * tokens * (d * 3 * d + d * d) + 2 * 2 * tokens * tokens * d
        elif mixer == "ssd":
            total += ssd_flops(cfg)
        else:
            hs = swiglu_hidden(tokens, cfg.expansion)
            total += 2 * d * (tokens * 2 * hs + hs * tokens)
    return batch * total


def heads_flops(cfg: ModelConfig, batch: int) -> int:
    return batch * 2 * (cfg.seq_len * cfg.d * cfg.vocab_size + cfg.d * 2)


def train_step_flops(cfg: ModelConfig, batch: int) -> int:
    """One supervision step in training: the calls without a graph forward only, those with one (TRM: the last
    recursion) and the heads forward + backward (backward = 2x forward)."""
    call, grad = net_call_flops(cfg, batch), cfg.grad_calls_per_step
    return (cfg.calls_per_step - grad) * call + 3 * (grad * call + heads_flops(cfg, batch))


def eval_step_flops(cfg: ModelConfig, batch: int) -> int:
    return cfg.calls_per_step * net_call_flops(cfg, batch) + heads_flops(cfg, batch)
