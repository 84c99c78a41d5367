"""Mamba-2 as a token mixer: the SSD layer (Dao & Gu 2024, "Transformers are SSMs: Generalized Models and
Efficient Algorithms Through Structured State Space Duality", arXiv 2405.21060), as TRM + Mamba-2 puts it in
the recursive network (Wang & Reid 2026, "Tiny Recursive Reasoning with Mamba-2 Attention Hybrid",
arXiv 2602.12078).

The mixer, on h (B, L, d), with d_inner = expand * d cut into H = d_inner / P heads of width P, state size N
and one group (B and C shared by every head, Mamba-2's ngroups = 1):

    z, xBC, dt = in_proj(h)                  z, x: d_inner wide; B, C: N wide; dt: one per head
    x, B, C    = silu(conv1d(xBC))           depthwise and causal, kernel K (a short local mix, as Mamba-2's)
    dt         = softplus(dt + dt_bias)      dt_bias: softplus^-1 of dt drawn log-uniform in [1e-3, 1e-1]
    A          = -exp(A_log)                 a scalar per head, A_log = log U[1, 16]
    y          = SSD(x, dt, A, B, C) + D x   D: a skip per head, 1 at init
    out        = out_proj(rms_norm(y * silu(z)))

SSD, per head, with x_t in R^P, B_t and C_t in R^N and a_t = dt_t A <= 0, is the selective scan

    h_t = exp(a_t) h_{t-1} + dt_t x_t B_t^T          (h_t: P x N, h_0 = 0)
    y_t = h_t C_t

and, unrolled, a masked attention without softmax (the duality): y = (M o C B^T) (dt x) with the
1-semiseparable decay mask M_ts = exp(a_{s+1} + ... + a_t) for s <= t and 0 above the diagonal, the exponential
of the segment sum of a. `ssd_naive` computes the first form (L sequential steps), `ssd_quadratic` the second
(L x L), `ssd_chunked` the paper's SSD algorithm, which the model runs: the sequence cut into chunks of Q; inside
a chunk the quadratic form; between chunks the recurrence carried by the chunk-final states only,

    S_c = exp(a summed over chunk c) S_{c-1} + (chunk c's own state),    y_t += exp(a_first + ... + a_t) C_t S_{c-1}

O(L Q (N + P) + L N P) work instead of O(L^2), the same numbers for every Q (tests/test_ssd.py).

Puzzles are not read left to right, so by default (`bidirectional`) the same weights run the causal part (conv,
scan, D skip) over the sequence and over its reverse, and the two are averaged before the gate:

    y = (inner(xBC) + flip(inner(flip(xBC)))) / 2

Every token then sees every other, and the mixer commutes with reversal: mixer(flip(h)) = flip(mixer(h)). Shared
weights keep the parameter count of one direction; averaging, not summing, keeps y at one direction's scale (the
gated RMSNorm removes the scale anyway, but the eps and bf16 see it). Run as one batch of 2B: one conv, one scan.

Not here: a fast path. On CUDA, `mamba_ssm`'s fused kernels (mamba_chunk_scan_combined) compute the same scan
and could replace `ssd_chunked` when importable; this module stays pure PyTorch so it runs on every device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Linear, rms_norm


def segsum(a: torch.Tensor) -> torch.Tensor:
    """(..., T) -> (..., T, T): out[t, s] = a[s+1] + ... + a[t] for s <= t (0 on the diagonal), -inf above it.

    A masked cumulative sum, not cumsum(a)[t] - cumsum(a)[s]: over a long sequence the difference of two long
    sums loses the digits of a short segment in float32."""
    T = a.shape[-1]
    ones = torch.ones(T, T, dtype=torch.bool, device=a.device)
    sums = a[..., :, None].expand(*a.shape, T).masked_fill(~ones.tril(-1), 0).cumsum(-2)
    return sums.masked_fill(~ones.tril(), -math.inf)


def ssd_naive(x, dt, A, B, C) -> torch.Tensor:
    """The recurrence, one step at a time. x (b, l, H, P), dt (b, l, H), A (H,), B and C (b, l, N) -> (b, l, H, P)."""
    state = x.new_zeros(x.shape[0], x.shape[2], x.shape[3], B.shape[-1])   # (b, H, P, N)
    ys = []
    for t in range(x.shape[1]):
        decay = torch.exp(dt[:, t] * A)[..., None, None]
        state = decay * state + (dt[:, t, :, None] * x[:, t])[..., None] * B[:, t, None, None, :]
        ys.append((state @ C[:, t, None, :, None]).squeeze(-1))
    return torch.stack(ys, 1)


def ssd_quadratic(x, dt, A, B, C) -> torch.Tensor:
    """The dual form: y = (M o C B^T) (dt x), M = exp(segsum(dt A)), all L x L at once."""
    mask = segsum((dt * A).transpose(1, 2)).exp()                           # (b, H, l, l)
    scores = C @ B.transpose(1, 2)                                          # (b, l, l), shared by the heads
    return ((scores[:, None] * mask) @ (x * dt[..., None]).transpose(1, 2)).transpose(1, 2)


def ssd_chunked(x, dt, A, B, C, chunk: int) -> torch.Tensor:
    """The SSD algorithm: quadratic inside chunks of `chunk` tokens, the recurrence across them. Same shapes."""
    b, l, H, P = x.shape
    Q = min(chunk, l)
    pad = -l % Q
    if pad:  # zero steps at the end: a = 0 keeps the state, dt x = 0 adds nothing; cut off below
        x, dt, B, C = (F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad)) for t in (x, dt, B, C))
    c = x.shape[1] // Q
    a = (dt * A).view(b, c, Q, H).permute(0, 3, 1, 2)                       # (b, H, c, Q)
    xdt = (x * dt[..., None]).view(b, c, Q, H, P).permute(0, 3, 1, 2, 4)    # (b, H, c, Q, P)
    B, C = B.view(b, 1, c, Q, -1), C.view(b, 1, c, Q, -1)                   # (b, 1, c, Q, N)
    cum = a.cumsum(-1)                                                      # decay from the chunk's start
    # inside each chunk: the quadratic form. The segment sums as differences of the chunk's cumulative sums
    # (as Mamba-2's fused kernels take them): a chunk is short, and this is half segsum's time on CPU
    upper = torch.ones(Q, Q, dtype=torch.bool, device=x.device).triu(1)
    decay = (cum[..., :, None] - cum[..., None, :]).masked_fill(upper, -math.inf).exp()
    y = ((C @ B.transpose(-1, -2)) * decay) @ xdt                            # (b, H, c, Q, P)
    # each chunk's final state from its own tokens, then the states entering each chunk (none for the first)
    states = (xdt * (cum[..., -1:] - cum).exp()[..., None]).transpose(-1, -2) @ B   # (b, H, c, P, N)
    passed = segsum(cum[..., -1]).exp() @ states.flatten(-2)                # state at each chunk's end
    entering = F.pad(passed[:, :, :-1], (0, 0, 1, 0)).view_as(states)
    y = y + (C @ entering.transpose(-1, -2)) * cum.exp()[..., None]
    return y.permute(0, 2, 3, 1, 4).reshape(b, c * Q, H, P)[:, :l]


class SSD(nn.Module):
    """The Mamba-2 mixer (module docstring): (B, L, d) -> (B, L, d), causal or bidirectional."""

    norm_dim = -1

    def __init__(self, dim: int, *, state: int = 64, head_dim: int = 32, expand: int = 2, conv: int = 4,
                 chunk: int = 64, bidirectional: bool = True, eps: float = 1e-5,
                 dt_min: float = 1e-3, dt_max: float = 0.1, dt_floor: float = 1e-4):
        super().__init__()
        inner = expand * dim
        assert inner % head_dim == 0, "ssd_expand * d must be divisible by ssd_head_dim"
        self.inner, self.state, self.head_dim, self.heads = inner, state, head_dim, inner // head_dim
        self.chunk, self.bidirectional, self.eps = chunk, bidirectional, eps
        self.in_proj = Linear(dim, 2 * inner + 2 * state + self.heads)     # z, x, B, C, dt
        width = inner + 2 * state
        self.conv = nn.Conv1d(width, width, conv, groups=width)  # PyTorch's init, with bias; causal: see below
        # Mamba-2's init: dt log-uniform in [dt_min, dt_max] through the inverse softplus; A from U[1, 16]
        dt = torch.empty(self.heads).uniform_(math.log(dt_min), math.log(dt_max)).exp().clamp(min=dt_floor)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.empty(self.heads).uniform_(1, 16).log())
        self.D = nn.Parameter(torch.ones(self.heads))
        for p in (self.dt_bias, self.A_log, self.D):  # Mamba-2 keeps its SSM parameters out of weight decay
            p._no_weight_decay = True
        self.out_proj = Linear(inner, dim)

    def inner_scan(self, xbc: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        """The causal part, left to right: conv, scan, D skip. (b, L, d_inner + 2N), (b, L, H) -> (b, L, d_inner)."""
        # zeros on the left only: nn.Conv1d's padding would pad both ends and compute K - 1 outputs to throw away
        xbc = F.silu(self.conv(F.pad(xbc.transpose(1, 2), (self.conv.kernel_size[0] - 1, 0))).transpose(1, 2))
        x, B, C = xbc.split([self.inner, self.state, self.state], -1)
        x = x.unflatten(-1, (self.heads, self.head_dim))
        y = ssd_chunked(x, F.softplus(dt + self.dt_bias), -self.A_log.exp(), B, C, self.chunk)
        return (y + self.D[:, None] * x).flatten(2)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b = h.shape[0]
        z, xbc, dt = self.in_proj(h).split([self.inner, self.inner + 2 * self.state, self.heads], -1)
        if not self.bidirectional:
            y = self.inner_scan(xbc, dt)
        else:
            y = self.inner_scan(torch.cat((xbc, xbc.flip(1))), torch.cat((dt, dt.flip(1))))
            y = (y[:b] + y[b:].flip(1)) / 2
        return self.out_proj(rms_norm(y * F.silu(z), self.eps))


def ssd_parameters(dim: int, *, state: int, head_dim: int, expand: int, conv: int) -> int:
    """Trainable weights of one SSD mixer: in_proj, the conv (weights and bias), dt_bias, A_log, D, out_proj."""
    inner = expand * dim
    heads = inner // head_dim
    return dim * (2 * inner + 2 * state + heads) + (inner + 2 * state) * (conv + 1) + 3 * heads + inner * dim
