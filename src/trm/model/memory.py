"""What a training step holds in memory, estimated before anything is allocated: a batch that cannot fit is
refused with a message instead of being killed by the kernel without one (`--batch_size 100000` on the 4x4
preset asked for ~130 GB).

The estimate counts the tensors the graph keeps for backward in the calls that carry gradients (TRM: the
last recursion, n + 1 calls of L blocks), plus the carry, the heads, and the weights with their gradients,
optimizer moments and EMA copy. Against the peak RSS of one CPU step (batch 32-1024; MLP-T and attention;
16 to 225 cells; trm, multiz, HRM's two networks and grad all; d 32-512; fp32 and bf16) it gave 0.86 to
1.18 times the measured growth.
"""

from __future__ import annotations

import os

import torch

from .layers import swiglu_hidden
from .trm import ModelConfig


def _block_floats(cfg: ModelConfig) -> float:
    """Floats per token one block keeps for backward: the SwiGLUs' gate, up, silu(gate) and product, the
    attention's q, k, v and their rotations, and the residual sums and norms (about 8 d)."""
    tokens, d = cfg.total_len, cfg.d
    floats = 4 * swiglu_hidden(d, cfg.expansion) + 8 * d
    if cfg.mixer == "attention":
        floats += 13 * d + 2 * cfg.heads  # + the softmax statistics per head
    else:  # MLP-T: its hidden width runs over the sequence axis, d values each, shared by the tokens
        floats += 4 * swiglu_hidden(tokens, cfg.expansion) * d / tokens
    return floats


def parameter_count(cfg: ModelConfig) -> int:
    """Trainable parameters, counted from the config (no model is built)."""
    tokens, d = cfg.total_len, cfg.d
    block = 3 * d * swiglu_hidden(d, cfg.expansion)
    block += 4 * d * d if cfg.mixer == "attention" else 3 * tokens * swiglu_hidden(tokens, cfg.expansion)
    pos = tokens * d if cfg.pos == "learned" else 0
    return cfg.networks * cfg.L * block + 2 * cfg.vocab_size * d + 2 * d + 2 + pos


def train_step_bytes(cfg: ModelConfig, batch_size: int, *, dtype: str = "fp32", ema: bool = True) -> int:
    """Peak bytes of one training step on `batch_size` slots. Under bf16 autocast the graph keeps the matmul
    outputs in bf16 and the norms in fp32: measured, two thirds of the fp32 peak."""
    tokens = cfg.total_len
    states = cfg.n + 2 if cfg.recursion == "multiz" else 3  # x, y and the latent(s), and the next carry's
    graph = cfg.grad_calls_per_step * cfg.L * _block_floats(cfg) * (0.65 if dtype == "bf16" else 1.0)
    per_slot = tokens * (graph + 2 * states * cfg.d) + 6 * cfg.seq_len * cfg.vocab_size  # logits, fp64 loss
    weights = parameter_count(cfg) * (4 + int(ema))  # weights, gradients, two Adam moments, the EMA copy
    table = cfg.puzzle_emb_dim * (cfg.num_puzzle_ids + 2 * batch_size) if cfg.prefix_len else 0  # + batch rows
    return int(4 * (batch_size * per_slot + weights + table))


def available_bytes(device: torch.device) -> int | None:
    """Memory free for this process: the GPU's free memory, or the host's MemAvailable (None: unknown)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        import psutil
        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_train_memory(cfg: ModelConfig, batch_size: int, device: torch.device, *, dtype: str = "fp32",
                       ema: bool = True, world: int = 1, available: int | None = None) -> int:
    """Refuse (ValueError, one line) a batch whose step would not fit in this process's memory; returns the
    estimate. `batch_size` is the global batch, split over `world` processes. TRM_SKIP_MEMORY_CHECK=1 skips
    the refusal (an estimate, not a measurement)."""
    per_process = -(-batch_size // world)
    need = train_step_bytes(cfg, per_process, dtype=dtype, ema=ema)
    free = available_bytes(device) if available is None else available
    if free is not None and need > free and not os.environ.get("TRM_SKIP_MEMORY_CHECK"):
        fixed = train_step_bytes(cfg, 0, dtype=dtype, ema=ema)
        per_slot = train_step_bytes(cfg, 1, dtype=dtype, ema=ema) - fixed
        fits = max(0, (free - fixed) // max(1, per_slot)) * world
        raise ValueError(f"batch_size {batch_size} needs about {need / 2**30:.1f} GiB for a training step, and "
                         f"{device} has {free / 2**30:.1f} GiB available: use a smaller --batch_size (about "
                         f"{fits} fits) (TRM_SKIP_MEMORY_CHECK=1 to try anyway)")
    return need


def saved_bytes(fn, params) -> tuple[int, object]:
    """Bytes of the distinct storages autograd saves for the backward while fn() runs (the storages of
    `params` excluded), and what fn returned."""
    skip = {p.untyped_storage().data_ptr() for p in params}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in skip:
            seen[s.data_ptr()] = s.nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(seen.values()), out


def saved_for_backward(model, batch_size: int, *, seed: int = 0) -> int:
    """Measured, not estimated: the bytes of the tensors autograd keeps for the backward of one training
    supervision step of `model` (from the initial carry, on random puzzles drawn from `seed`), the weights
    excluded. What grows with depth shows here: TRM's last recursion (n + 1 calls) or a fixed-point model's
    solve under each gradient (unrolled: every iteration; implicit: none of them)."""
    cfg = model.cfg
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randint(1, cfg.vocab_size, (batch_size, cfg.seq_len), generator=g).to(device)
    ids = torch.zeros(batch_size, dtype=torch.long, device=device)
    model.train()
    saved, _ = saved_bytes(lambda: model(model.initial_carry(batch_size, device), inputs, ids), model.parameters())
    model.pop_jacobian_loss()  # the penalty's graph (jac_penalty > 0) is counted above, not kept
    return saved
