"""The Tiny Recursive Model (arXiv 2510.04871), one file, the paper's names.

    x = embed(question)                          (with a puzzle-embedding prefix)
    latent_recursion:  n times z = net(x + y + z);  then y = net(y + z)
    deep_recursion:    T-1 latent recursions without gradients, one with; y, z detached afterwards
    one supervision step = one deep recursion + heads; up to N_sup steps with a loss at each,
    and a Q head on y that learns when to halt.

The systems TRM is compared with (the paper's ablation table on Sudoku-Extreme) are flags of ModelConfig, not
copies of this file:
- `recursion`: how one latent recursion updates the state: "trm" as above; "singlez", one state,
  n times z = net(z + x) then z = net(z); "multiz", n latents, the i-th update writing
  z_i = net(z_1 + ... + z_n + y + x), then y = net(y + z_1 + ... + z_n); "none", no recursion, one pass
  h = net(h + x) per recursion (the transformer baseline with deep supervision).
- `networks`: 2 gives the z updates and the y update separate networks (net and net_y): HRM's L and H modules.
- `grad`: which calls carry gradients: the last recursion (TRM), the last z and the last y update (HRM's
  one-step gradient), or all of them.
HRM (Wang et al. 2025) is therefore recursion "trm", networks 2, grad "one_step": z_L = f_L(z_L + z_H + x)
n times, z_H = f_H(z_H + z_L), T times (its L_cycles and H_cycles), the answer z_H being our y.
- `solver` (the fixed-point variant, TRM-DEQ after Attractor Models, arXiv 2605.12466; model/fixed_point.py):
  "fpi" or "anderson" replace the n z-updates of recursion "trm" by a solve, z* = the fixed point of
  z -> f(z + y + x) (y, x fixed, warm-started at the carried z), then y = f(y + z*); T, `grad` (which recursions
  carry gradients) and deep supervision stay. `fp_grad` says how the gradient passes the solve (implicit, neumann,
  phantom, unroll). With solver "unroll" (the default) none of this runs: the model is the one above, bit for bit.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from torch import nn

from ..checks import check_choice, check_range
from .fixed_point import FP_GRADS, SOLVERS, SolveLog, fixed_point, jacobian_penalty
from .layers import GLUS, Attention, Block, Linear, Rotary, SequenceSwiGLU, swiglu_hidden, trunc_normal_
from .ssd import SSD

MIXERS = ("attention", "mlp", "ssd")
RECURSIONS = ("trm", "singlez", "multiz", "none")
GRADS = ("last", "one_step", "all")


@dataclass
class ModelConfig:
    vocab_size: int = 11
    seq_len: int = 81                # answer/question tokens, without the prefix
    num_puzzle_ids: int = 1          # rows of the puzzle-embedding table
    d: int = 512                     # hidden size
    L: int = 2                       # layers of each network (the paper: 2; HRM: 4 in each of its two)
    heads: int = 8                   # attention heads (attention mixer only)
    expansion: float = 4.0           # SwiGLU width as a multiple of d (rounded as the reference does)
    glu: str = "swiglu"              # the gated unit of every MLP: swiglu (reference: silu(g) * v) or sigmoid_norm
                                     # (sigmoid(g) * RMSNorm(g * v): "Speed is Confidence"'s, for Muon)
    mixer: str = "attention"         # token mixer: attention (with RoPE), mlp (the paper's MLP-T, small fixed grids)
                                     # or ssd (Mamba-2, arXiv 2602.12078)
    pos: str = "rope"                # positions: rope, learned or none (MLP-T and SSD need none)
    layer_pattern: str = ""          # per-layer mixers for hybrids, L of them: "ssd,attention" (empty: `mixer` in all)
    ssd_state: int = 64              # SSD mixer (Mamba-2): state size N
    ssd_head_dim: int = 32           # head width P (ssd_expand * d / P heads)
    ssd_expand: int = 2              # inner width as a multiple of d
    ssd_conv: int = 4                # kernel of the short causal conv before the scan
    ssd_chunk: int = 64              # chunk length of the SSD scan (speed and memory only: same result for any)
    ssd_bidirectional: bool = True   # also scan the reversed sequence and average (puzzles are not causal)
    recursion: str = "trm"           # trm (z from x+y+z, y from y+z), singlez, multiz (n latents) or none (transformer)
    networks: int = 1                # 1: one network for every update (TRM); 2: z and y updates apart (HRM)
    grad: str = "last"               # gradients through the last recursion (TRM), one_step (HRM) or all T
    n: int = 6                       # z updates per latent recursion (HRM's L_cycles; multiz: the number of latents)
    T: int = 3                       # latent recursions per supervision step, T-1 without gradients (HRM's H_cycles)
    N_sup: int = 16                  # supervision steps (the most a sample runs in training; all of them in eval)
    puzzle_emb_len: int = 16         # prefix tokens reserved for the puzzle embedding (0 = none)
    puzzle_emb_dim: int = 512        # width of a puzzle-embedding row (<= puzzle_emb_len * d; 0 = none)
    rope_theta: float = 10000.0      # RoPE base
    norm_eps: float = 1e-5           # RMSNorm epsilon
    # the fixed-point variant (model/fixed_point.py, docs/fixed-point.md); unused with solver unroll
    solver: str = "unroll"           # unroll: the n z-updates; fpi or anderson: z solved to a fixed point (trm only)
    max_iter: int = 16               # most solver iterations (evaluations of f) per solve
    min_iter: int = 0                # fewest iterations before the tolerance may stop a solve
    tol: float = 1e-3                # stop once every sample's ||f(z) - z|| / ||f(z)|| is below this
    anderson_m: int = 5              # Anderson: past iterates mixed into the next
    anderson_beta: float = 1.0       # Anderson: damping in (0, 1] (1: the mix of the f(z_i) themselves)
    fp_grad: str = "implicit"        # gradient through the solve: implicit (IFT), neumann (one step at z*),
                                     # phantom (phantom_k steps from z*) or unroll (through every iteration)
    phantom_k: int = 2               # phantom: steps of f with a graph from the detached fixed point
    jac_penalty: float = 0.0         # weight of the Jacobian penalty ||df/dz||_F^2 / N at z* (Hutchinson), for
                                     # the training loss to add (TRM.pop_jacobian_loss); 0 = off

    @property
    def prefix_len(self) -> int:
        return self.puzzle_emb_len if self.puzzle_emb_dim > 0 else 0

    @property
    def total_len(self) -> int:
        return self.prefix_len + self.seq_len

    @property
    def layer_mixers(self) -> list[str]:
        """The token mixer of each of the L layers."""
        return [m.strip() for m in self.layer_pattern.split(",")] if self.layer_pattern else [self.mixer] * self.L

    @property
    def single_state(self) -> bool:
        """One carried state, read by the heads and updated by every call (singlez, none)."""
        return self.recursion in ("singlez", "none")

    @property
    def uses_solver(self) -> bool:
        return self.solver != "unroll"

    @property
    def _fp_grad_calls(self) -> int:
        """Calls of f after a solve (the gradient's steps: a graph in training, run without one otherwise)."""
        return {"implicit": 1, "neumann": 1, "phantom": self.phantom_k}.get(self.fp_grad, 0)

    @property
    def calls_per_recursion(self) -> int:
        """Network calls of one latent recursion (a fixed-point solve: at most)."""
        if self.uses_solver:
            return self.max_iter + self._fp_grad_calls + 1
        return 1 if self.recursion == "none" else self.n + 1

    @property
    def calls_per_step(self) -> int:
        """Network calls in one supervision step (forward)."""
        return self.T * self.calls_per_recursion

    @property
    def grad_calls_per_step(self) -> int:
        """Of those, the calls that build a graph in training."""
        if self.uses_solver:  # the gradient's steps after the solve (unroll: every iteration) and the y update
            per = (self._fp_grad_calls or self.max_iter) + 1
            return per * (self.T if self.grad == "all" else 1)
        if self.grad == "all":
            return self.calls_per_step
        if self.grad == "one_step":
            return min(2, self.calls_per_recursion)
        return self.calls_per_recursion

    def validate(self) -> None:
        """ValueError naming the field, its value and what is allowed (TRM() calls it; so does `trm train`
        before it loads anything)."""
        choices = {"mixer": MIXERS, "pos": ("rope", "learned", "none"), "recursion": RECURSIONS,
                   "grad": GRADS, "glu": GLUS}
        for k, allowed in choices.items():
            check_choice(k, getattr(self, k), allowed)
        check_choice("networks", self.networks, (1, 2))
        if self.networks == 2 and self.single_state:
            raise ValueError(f"recursion {self.recursion} has one kind of update: networks must be 1 (got 2)")
        for k in ("n", "T", "N_sup", "d", "L", "seq_len", "vocab_size", "num_puzzle_ids"):
            check_range(k, getattr(self, k), ge=1)
        check_range("heads", self.heads, ge=1)  # RoPE's head width is d // heads even without attention
        if "attention" in self.layer_mixers and self.d % self.heads:
            raise ValueError(f"d must be divisible by heads for attention (got d={self.d}, heads={self.heads})")
        for k in ("expansion", "norm_eps", "rope_theta"):
            check_range(k, getattr(self, k), gt=0)
        for width in (self.d, self.total_len) if "mlp" in self.layer_mixers else (self.d,):
            if swiglu_hidden(width, self.expansion) < 1:
                raise ValueError(f"expansion must give a SwiGLU width >= 1 (got {self.expansion}: 0 of {width})")
        check_range("puzzle_emb_len", self.puzzle_emb_len, ge=0, note="0 = none")
        check_range("puzzle_emb_dim", self.puzzle_emb_dim, ge=0, le=self.puzzle_emb_len * self.d,
                    note="0 = none; at most puzzle_emb_len * d")
        self._validate_ssd()
        self._validate_fixed_point()

    def _validate_ssd(self) -> None:
        mixers = self.layer_mixers
        if self.layer_pattern and (any(m not in MIXERS for m in mixers) or len(mixers) != self.L):
            raise ValueError(f"layer_pattern must name L={self.L} mixers from {', '.join(MIXERS)}, comma-separated, "
                             f"not '{self.layer_pattern}'")
        for k in ("ssd_state", "ssd_head_dim", "ssd_expand", "ssd_conv", "ssd_chunk"):
            check_range(k, getattr(self, k), ge=1)
        if "ssd" in mixers and self.ssd_expand * self.d % self.ssd_head_dim:
            raise ValueError(f"ssd_expand * d = {self.ssd_expand * self.d} is not divisible by "
                             f"ssd_head_dim={self.ssd_head_dim}")

    def _validate_fixed_point(self) -> None:
        for k, allowed in (("solver", ("unroll", *SOLVERS)), ("fp_grad", FP_GRADS)):
            if getattr(self, k) not in allowed:
                raise ValueError(f"{k} must be one of {', '.join(allowed)}, not '{getattr(self, k)}'")
        if self.uses_solver and self.recursion != "trm":
            raise ValueError(f"solver {self.solver} solves the z updates of recursion trm, not recursion "
                             f"{self.recursion} (use solver unroll)")
        for k in ("max_iter", "anderson_m", "phantom_k"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1, not {getattr(self, k)}")
        if not 0 <= self.min_iter <= self.max_iter:
            raise ValueError(f"min_iter must be in [0, max_iter={self.max_iter}], not {self.min_iter}")
        if self.tol < 0 or self.jac_penalty < 0:
            raise ValueError("tol and jac_penalty must be >= 0")
        if not 0 < self.anderson_beta <= 1:
            raise ValueError(f"anderson_beta must be in (0, 1], not {self.anderson_beta}")
        if self.jac_penalty and not self.uses_solver:
            raise ValueError("jac_penalty penalises a fixed-point solve: it needs solver fpi or anderson")


class PuzzleEmbedding(nn.Module):
    """A d-dim vector per puzzle identifier, zero-initialised, trained by sign-SGD (not by Adam).

    The table is a buffer, so it stays out of the main optimizer and the parameter count. In training,
    the rows of the batch are copied into a leaf tensor `local` whose gradient the sign-SGD optimizer
    (trm.optim.SignSGDEmbedding) reads, so that only touched rows are updated.
    """

    def __init__(self, num_ids: int, dim: int):
        super().__init__()
        self.register_buffer("weight", torch.zeros(num_ids, dim))
        self.local: torch.Tensor | None = None
        self.local_ids: torch.Tensor | None = None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = self.weight[ids]
        if self.training and torch.is_grad_enabled():
            rows = rows.detach().requires_grad_(True)
            self.local, self.local_ids = rows, ids
        return rows

    def batch_grad(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(gradient of the batch's rows, their ids) after a backward pass, or None; clears them."""
        local, ids = self.local, self.local_ids
        self.local = self.local_ids = None
        return None if local is None or local.grad is None else (local.grad, ids)


@dataclass
class Carry:
    """The recurrent state of a batch between supervision steps (always detached), batch first.

    y: (B, prefix+seq_len, d), the answer the heads read. z: the latent, same shape; (B, n, prefix+seq_len, d)
    for multiz. Single-state models (singlez, none) carry their one state as both y and z."""
    y: torch.Tensor
    z: torch.Tensor


@dataclass
class StepOutput:
    logits: torch.Tensor       # (B, seq_len, vocab)
    q_halt: torch.Tensor       # (B,) halting logit
    q_continue: torch.Tensor   # (B,) continue logit (trained only with the optional Q-learning loss)


def _mixer(cfg: ModelConfig, kind: str, rotary: Rotary | None) -> nn.Module:
    if kind == "mlp":
        return SequenceSwiGLU(cfg.total_len, cfg.expansion, cfg.glu)
    if kind == "ssd":  # reads order from its scan: no positions needed
        return SSD(cfg.d, state=cfg.ssd_state, head_dim=cfg.ssd_head_dim, expand=cfg.ssd_expand, conv=cfg.ssd_conv,
                   chunk=cfg.ssd_chunk, bidirectional=cfg.ssd_bidirectional, eps=cfg.norm_eps)
    return Attention(cfg.d, cfg.heads, rotary)


def _network(cfg: ModelConfig, rotary: Rotary | None) -> nn.Sequential:
    """L post-norm blocks: the network f (the paper finds two layers generalise best)."""
    return nn.Sequential(*(Block(mixer=_mixer(cfg, kind, rotary), dim=cfg.d, expansion=cfg.expansion,
                                 eps=cfg.norm_eps, glu=cfg.glu) for kind in cfg.layer_mixers))


def _call(net: nn.Module, h: torch.Tensor, grad: bool) -> torch.Tensor:
    if grad:
        return net(h)
    with torch.no_grad():
        return net(h)


class TRM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        d = cfg.d
        self.embed_scale = math.sqrt(d)
        self.embed_tokens = nn.Embedding(cfg.vocab_size, d)
        trunc_normal_(self.embed_tokens.weight, 1 / math.sqrt(d))
        self.puzzle_emb = PuzzleEmbedding(cfg.num_puzzle_ids, cfg.puzzle_emb_dim) if cfg.prefix_len else None
        self.embed_pos = None
        if cfg.pos == "learned":
            self.embed_pos = nn.Parameter(trunc_normal_(torch.empty(cfg.total_len, d), 1 / math.sqrt(d)))
        rotary = Rotary(d // cfg.heads, cfg.total_len, cfg.rope_theta) if cfg.pos == "rope" else None
        self.net = _network(cfg, rotary)  # the one network, reused for every update (HRM: the z updates)
        self.net_y = _network(cfg, rotary) if cfg.networks == 2 else None  # the y update's own (HRM's H module)
        self.lm_head = Linear(d, cfg.vocab_size)
        self.q_head = Linear(d, 2, bias=True)
        with torch.no_grad():  # start by never halting: Q = sigmoid(-5)
            self.q_head.weight.zero_()
            self.q_head.bias.fill_(-5.0)
        # fixed initial answer and latent(s), never trained
        if not cfg.single_state:
            self.register_buffer("y_init", trunc_normal_(torch.empty(d), 1.0))
        z_shape = (cfg.n, d) if cfg.recursion == "multiz" else (d,)
        self.register_buffer("z_init", trunc_normal_(torch.empty(z_shape), 1.0))
        self._solves = SolveLog()  # fixed-point variant: the stats of every solve, until solver_stats() takes them
        self.test_max_iter: int | None = None  # evaluation only: another iteration cap (0: no solve, z carried)
        self.test_tol: float | None = None     # ... and another tolerance (trm analyze: 0, every iteration run,
        #                                        each solve's residual history kept)
        self._jac: torch.Tensor | None = None  # ... and the Jacobian penalty of the last forward with gradients

    # --- what the rest of trm uses -------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.z_init.device

    @property
    def calls_per_step(self) -> int:
        return self.cfg.calls_per_step

    def networks(self) -> list[nn.Module]:
        """The networks, whose forward hooks fire once per call (in call order): what a recorder may hook."""
        return [self.net] + ([self.net_y] if self.net_y is not None else [])

    def call_labels(self) -> list[str]:
        """Names of the calls of one supervision step, in order: 'r1.z1' .. 'r1.z{n}', 'r1.y', 'r2.z1', ...
        (singlez: its last call of a recursion 'r1.z'; none: 'r1.h'). The letter says which state it writes."""
        c = self.cfg
        if c.uses_solver:
            raise ValueError(f"solver {c.solver} makes a varying number of calls per recursion: naming and recording "
                             "each call needs solver unroll")
        last = {"trm": "y", "multiz": "y", "singlez": "z"}
        per = (["h"] if c.recursion == "none" else [f"z{i + 1}" for i in range(c.n)] + [last[c.recursion]])
        return [f"r{r}.{name}" for r in range(1, c.T + 1) for name in per]

    def compile_networks(self, **kw) -> None:
        for net in self.networks():
            net.forward = torch.compile(net.forward, **kw)

    # --- inputs and state -------------------------------------------------------------------------------
    def embed_input(self, inputs: torch.Tensor, puzzle_ids: torch.Tensor) -> torch.Tensor:
        """x: token embeddings with the puzzle-embedding prefix, scaled by sqrt(d)."""
        x = self.embed_tokens(inputs.long())
        if self.puzzle_emb is not None:
            B, d, P = inputs.shape[0], self.cfg.d, self.cfg.prefix_len
            rows = self.puzzle_emb(puzzle_ids.long()).to(x.dtype)
            rows = nn.functional.pad(rows, (0, P * d - rows.shape[-1]))
            x = torch.cat((rows.view(B, P, d), x), dim=1)
        if self.embed_pos is not None:
            x = (x + self.embed_pos.to(x.dtype)) / math.sqrt(2)
        return self.embed_scale * x

    def _init_state(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        L, d = self.cfg.total_len, self.cfg.d
        if self.cfg.recursion == "multiz":
            z = self.z_init[None, :, None, :].expand(batch_size, self.cfg.n, L, d)
        else:
            z = self.z_init.expand(batch_size, L, d)
        y = z if self.cfg.single_state else self.y_init.expand(batch_size, L, d)
        return y, z

    def initial_carry(self, batch_size: int, device=None) -> Carry:
        y, z = self._init_state(batch_size)
        device = device or self.device
        z = z.to(device).clone()
        return Carry(y=z if self.cfg.single_state else y.to(device).clone(), z=z)

    def reset_carry(self, carry: Carry, reset: torch.Tensor) -> Carry:
        """Put the initial state into the slots where `reset` (B,) is true (halted slots being refilled)."""
        y0, z0 = self._init_state(reset.shape[0])
        z = torch.where(reset.view(-1, *[1] * (carry.z.dim() - 1)), z0.to(carry.z.dtype), carry.z)
        if self.cfg.single_state:
            return Carry(y=z, z=z)
        return Carry(y=torch.where(reset.view(-1, 1, 1), y0.to(carry.y.dtype), carry.y), z=z)

    # --- the recursion ----------------------------------------------------------------------------------
    def latent_recursion(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, grad_from: int = 0):
        """One latent recursion; its calls from index `grad_from` on build a graph (earlier ones do not)."""
        c, f_z = self.cfg, self.net
        f_y = self.net_y if self.net_y is not None else self.net
        if c.recursion == "trm" and c.uses_solver:  # z solved, not iterated n times; f's calls all in the solve
            k = c.calls_per_recursion
            with torch.set_grad_enabled(torch.is_grad_enabled() and grad_from < k - 1):
                z = self._solve_z(x, y, z)
            return _call(f_y, y + z, grad_from < k), z
        if c.recursion == "trm":
            for i in range(c.n):
                z = _call(f_z, z + y + x, i >= grad_from)
            y = _call(f_y, y + z, c.n >= grad_from)
            return y, z
        if c.recursion == "singlez":  # one state: the latent is the answer
            for i in range(c.n):
                z = _call(f_z, z + x, i >= grad_from)
            z = _call(f_z, z, c.n >= grad_from)
            return z, z
        if c.recursion == "multiz":  # the i-th update rewrites z_i from the sum of all latents
            zs = list(z.unbind(1))
            for i in range(c.n):
                zs[i] = _call(f_z, sum(zs) + y + x, i >= grad_from)
            y = _call(f_y, y + sum(zs), c.n >= grad_from)
            return y, torch.stack(zs, 1)
        z = _call(f_z, z + x, grad_from <= 0)  # none: one pass of the stack on the carried state plus x
        return z, z

    def _solve_z(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """z* = f(z* + y + x) from the carried z, with the gradient cfg.fp_grad when autograd records."""
        c, f = self.cfg, self.net
        cap = c.max_iter if self.test_max_iter is None else self.test_max_iter
        if cap == 0:  # the solver dropped at inference (Attractor Models' equilibrium internalization test)
            return z

        def g(h):
            return f(h + y + x)
        z, stats = fixed_point(g, z, solver=c.solver, grad=c.fp_grad, max_iter=cap, min_iter=min(c.min_iter, cap),
                               tol=c.tol if self.test_tol is None else self.test_tol,
                               history=self.test_tol is not None, m=c.anderson_m, beta=c.anderson_beta,
                               phantom_k=c.phantom_k,
                               on_backward=lambda s: self._solves.add(s, backward=True))
        self._solves.add(stats)
        if c.jac_penalty and self.training and torch.is_grad_enabled():
            p = jacobian_penalty(g, z)
            self._jac = p if self._jac is None else self._jac + p
        return z

    def solver_stats(self) -> dict:
        """Figures of the fixed-point solves since the last call (fixed_point.SolveLog.summary); clears them."""
        return self._solves.summary()

    @contextlib.contextmanager
    def solves_apart(self):
        """The solves inside the block go to a fresh log, yielded; the ones before (training's) are kept."""
        saved, self._solves = self._solves, SolveLog()
        try:
            yield self._solves
        finally:
            self._solves = saved

    def pop_jacobian_loss(self) -> torch.Tensor | None:
        """jac_penalty x the Jacobian penalty at the solves with a graph of the last forward with gradients, a
        scalar for the training loss to add (the mean over the batch, as the loss); None when off. Clears it."""
        jac, self._jac = self._jac, None
        return None if jac is None else self.cfg.jac_penalty * jac

    def _grad_from(self, r: int) -> int:
        """The first call of recursion r (0-based) that builds a graph (calls_per_recursion: none)."""
        c, k = self.cfg, self.cfg.calls_per_recursion
        if c.grad == "all":
            return 0
        if r < c.T - 1:
            return k
        return max(0, k - 2) if c.grad == "one_step" else 0

    def deep_recursion(self, x: torch.Tensor, carry: Carry) -> tuple[Carry, torch.Tensor]:
        """One supervision step: T latent recursions, gradients only where `grad` says (TRM: the last one).

        Returns the detached carry for the next step and the y that carries this step's gradient.
        """
        y, z = carry.y, carry.z
        if self.cfg.jac_penalty and torch.is_grad_enabled():
            self._jac = None  # a penalty belongs to one forward's graph
        for r in range(self.cfg.T):
            y, z = self.latent_recursion(x, y, z, self._grad_from(r))
        z = z.detach()
        return Carry(y=z if self.cfg.single_state else y.detach(), z=z), y

    def heads(self, y: torch.Tensor) -> StepOutput:
        logits = self.lm_head(y[:, self.cfg.prefix_len:])
        q = self.q_head(y[:, 0]).float()
        return StepOutput(logits=logits, q_halt=q[:, 0], q_continue=q[:, 1])

    def forward(self, carry: Carry, inputs: torch.Tensor, puzzle_ids: torch.Tensor) -> tuple[Carry, StepOutput]:
        """One supervision step from `carry` on a batch of questions."""
        x = self.embed_input(inputs, puzzle_ids)
        carry, y = self.deep_recursion(x, carry)
        return carry, self.heads(y)


def count_parameters(model: TRM) -> dict[str, int]:
    """Trainable parameters (what the paper calls the model size) and the puzzle-embedding table, apart."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    table = model.puzzle_emb.weight.numel() if model.puzzle_emb is not None else 0
    return {"trainable": trainable, "puzzle_embedding": table}
