"""Building blocks of the TRM network: init, RMSNorm, SwiGLU, RoPE, the token mixers, the block.

A token mixer is a part passed into `Block`: a module mapping (B, L, d) to (B, L, d) with a `norm_dim` saying
which axis the block normalises after adding it back (-1: channels; -2: the sequence axis, as MLP-T does).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Std of a standard normal truncated at +-2 sigma; dividing by it makes the *real* std what was asked
# (the reference initialises every linear layer this way, std 1/sqrt(fan_in)).
_TRUNC2_STD = math.sqrt(1 - 4 * math.exp(-2) / math.sqrt(2 * math.pi) / math.erf(2 / math.sqrt(2)))


def trunc_normal_(t: torch.Tensor, std: float) -> torch.Tensor:
    s = std / _TRUNC2_STD
    return nn.init.trunc_normal_(t, std=s, a=-2 * s, b=2 * s)


def swiglu_hidden(dim: int, expansion: float) -> int:
    """Hidden width of a SwiGLU: 2/3 of expansion*dim, rounded up to a multiple of 256 (d=512 -> 1536)."""
    return math.ceil(round(expansion * dim * 2 / 3) / 256) * 256


class Linear(nn.Linear):
    """nn.Linear with the reference init: truncated normal, std 1/sqrt(fan_in), zero bias."""

    def __init__(self, fan_in: int, fan_out: int, bias: bool = False):
        super().__init__(fan_in, fan_out, bias=bias)

    def reset_parameters(self) -> None:
        trunc_normal_(self.weight, 1 / math.sqrt(self.in_features))
        if self.bias is not None:
            nn.init.zeros_(self.bias)


def rms_norm(h: torch.Tensor, eps: float = 1e-5, dim: int = -1) -> torch.Tensor:
    """Weightless RMSNorm computed in fp32 (fp64 stays fp64: the float64 tests check gradients), returned in the
    input dtype."""
    h32 = h if h.dtype == torch.float64 else h.float()
    return (h32 * torch.rsqrt(h32.square().mean(dim, keepdim=True) + eps)).to(h.dtype)


GLUS = ("swiglu", "sigmoid_norm")


def glu(gate: torch.Tensor, up: torch.Tensor, kind: str = "swiglu", dim: int = -1) -> torch.Tensor:
    """The gated unit of an MLP before its down-projection; `dim` is the hidden axis. swiglu (the reference):
    silu(gate) * up. sigmoid_norm ("Speed is Confidence", arXiv 2601.19085, sec. 3.4): sigmoid(gate) *
    RMSNorm(gate * up) over the hidden axis, which bounds what reaches the down-projection; the paper reports
    Muon fails with the standard SwiGLU and trains with this one."""
    if kind == "swiglu":
        return silu_mul(gate, up)
    if kind != "sigmoid_norm":
        raise ValueError(f"glu must be one of {', '.join(GLUS)} (got '{kind}')")
    if not (torch.is_grad_enabled() and (gate.requires_grad or up.requires_grad)):
        # in place in the two fresh matmul outputs (most calls of a supervision step run without autograd)
        gu = up.mul_(gate)
        return gu.mul_(_inv_rms(gu, dim).to(gu.dtype)).mul_(torch.sigmoid_(gate))
    return _SigmoidNorm.apply(gate, up, dim)


def _inv_rms(p: torch.Tensor, dim: int) -> torch.Tensor:
    """(mean of p^2 over dim + eps)^-1/2, kept dim, in fp32 or wider (as rms_norm). vecdot, not vector_norm:
    no squared copy, and 2x faster over the strided hidden axis of the MLP-T mixer on CPU."""
    w = p if p.dtype == torch.float64 else p.float()
    return torch.linalg.vecdot(w, w, dim=dim).unsqueeze(dim).div_(p.shape[dim]).add_(1e-5).rsqrt_()


class _SigmoidNorm(torch.autograd.Function):
    """sigmoid(g) * p c with p = g * u and c = (mean_h(p^2) + eps)^-1/2, the mean over the hidden axis. Saves
    only g, u and c (autograd's chain of seven ops kept every intermediate and ran 2.6x the SwiGLU's time).
    Backward, with A = G * sigmoid(g) and r = p c:  dp = c (A - r mean_h(A r)),
    dg = G r sigmoid'(g) + dp u,  du = dp g."""

    @staticmethod
    def forward(ctx, gate, up, dim):
        p = gate * up
        c = _inv_rms(p, dim)
        ctx.save_for_backward(gate, up, c)
        ctx.dim = dim
        return p.mul_(c.to(p.dtype)).mul_(torch.sigmoid(gate))

    @staticmethod
    def backward(ctx, grad):
        gate, up, c = ctx.saved_tensors
        dim, wide = ctx.dim, c.dtype
        g, u, grad = gate.to(wide), up.to(wide), grad.to(wide)  # no copies in fp32 / fp64
        s = torch.sigmoid(g)
        r = (g * u).mul_(c)
        a = grad * s
        m = torch.linalg.vecdot(a, r, dim=dim).unsqueeze(dim).div_(r.shape[dim])
        dp = a.addcmul_(r, m, value=-1).mul_(c)
        dg = r.mul_(grad).mul_(s).mul_(s.neg_().add_(1)).addcmul_(dp, u)  # G r s (1 - s) + dp u
        return dg.to(gate.dtype), dp.mul_(g).to(up.dtype), None


def silu_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up. Without autograd, in place in `gate` (a fresh matmul output): two activation-sized
    tensors fewer to allocate and first-touch (benchmarks/layer_ops.py, docs/performance.md)."""
    if not (torch.is_grad_enabled() and (gate.requires_grad or up.requires_grad)):
        return F.silu(gate, inplace=True).mul_(up)
    return F.silu(gate) * up


class SwiGLU(nn.Module):
    """down(silu(gate(h)) * up(h)) over the last axis; gate and up are the two halves of one weight.

    The halves are applied as two matmuls, not one matmul then a chunk: the chunk's backward concatenates the
    two (B, L, hidden) gradients into a fresh tensor, an extra pass over the widest activation of the step.
    """

    def __init__(self, dim: int, expansion: float, kind: str = "swiglu"):
        super().__init__()
        self.hidden, self.kind = swiglu_hidden(dim, expansion), kind
        self.gate_up = Linear(dim, 2 * self.hidden)
        self.down = Linear(self.hidden, dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        w = self.gate_up.weight
        return self.down(glu(F.linear(h, w[:self.hidden]), F.linear(h, w[self.hidden:]), self.kind))


class SequenceSwiGLU(nn.Module):
    """The paper's MLP-T token mixer (attention-free, for small fixed grids): a SwiGLU across the sequence axis.

    The reference transposes (B, L, d) to (B, d, L) and back. Here the weights multiply from the left as a
    batched matmul over the untransposed tensor (the weight expanded over the batch, not copied), so no
    transposed copy of an activation is ever made: torch.matmul(W, h) with a 2-D W would fold the batch into
    one matmul whose (B*d, hidden) result must then be copied back into (B, hidden, d) order, which made this
    mixer 2.3x slower on CPU (docs/performance.md).
    """

    norm_dim = -2  # the block's residual + RMSNorm run over the sequence axis (the reference's transposed norm)

    def __init__(self, seq_len: int, expansion: float, kind: str = "swiglu"):
        super().__init__()
        self.hidden, self.kind = swiglu_hidden(seq_len, expansion), kind
        self.gate_up = Linear(seq_len, 2 * self.hidden)
        self.down = Linear(self.hidden, seq_len)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # h: (B, L, d)
        B, w, down = h.shape[0], self.gate_up.weight, self.down.weight
        if torch.is_autocast_enabled(h.device.type):
            # cast, then expand: autocast casting the expanded view would materialise B copies of the weight
            dtype = torch.get_autocast_dtype(h.device.type)
            w, down = w.to(dtype), down.to(dtype)
        gate = torch.bmm(w[:self.hidden].expand(B, -1, -1), h)            # (B, hidden, d)
        up = torch.bmm(w[self.hidden:].expand(B, -1, -1), h)
        return torch.bmm(down.expand(B, -1, -1), glu(gate, up, self.kind, dim=-2))  # (B, L, d)


class Rotary(nn.Module):
    """RoPE tables (theta 10000, NeoX rotate-half) in fp32, covering the puzzle-embedding prefix too."""

    def __init__(self, head_dim: int, max_len: int, theta: float = 10000.0):
        super().__init__()
        inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        freqs = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)

    @staticmethod
    def rotate(t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        t32 = t.float()
        a, b = t32.chunk(2, dim=-1)
        return (t32 * cos + torch.cat((-b, a), dim=-1) * sin).to(t.dtype)


class Attention(nn.Module):
    """Non-causal multi-head self-attention with fused QKV (no bias) and RoPE."""

    norm_dim = -1

    def __init__(self, dim: int, heads: int, rotary: Rotary | None):
        super().__init__()
        assert dim % heads == 0, "d must be divisible by the number of heads"
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = Linear(dim, 3 * dim)
        self.out = Linear(dim, dim)
        self.rotary = rotary

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        B, L, _ = h.shape
        q, k, v = self.qkv(h).view(B, L, 3, self.heads, self.head_dim).unbind(2)
        if self.rotary is not None:
            cos, sin = self.rotary.cos[:L, None, :], self.rotary.sin[:L, None, :]
            q, k = Rotary.rotate(q, cos, sin), Rotary.rotate(k, cos, sin)
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.out(o.transpose(1, 2).reshape(B, L, -1))


class Block(nn.Module):
    """Post-norm block: h = norm(h + mixer(h)) over the mixer's axis; h = norm(h + swiglu(h))."""

    def __init__(self, *, mixer: nn.Module, dim: int, expansion: float, eps: float, glu: str = "swiglu"):
        super().__init__()
        self.mixer = mixer
        self.mlp = SwiGLU(dim, expansion, glu)
        self.eps = eps

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = rms_norm(h + self.mixer(h), self.eps, dim=self.mixer.norm_dim)
        return rms_norm(h + self.mlp(h), self.eps)


def legacy_keys(weights: dict) -> dict:
    """Checkpoints written before mixers were parts named them `attn` / `mlp_t` inside each block."""
    return {k.replace(".attn.", ".mixer.").replace(".mlp_t.", ".mixer."): v for k, v in weights.items()}
