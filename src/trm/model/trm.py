"""The Tiny Recursive Model (arXiv 2510.04871), one file, the paper's names.

    x = embed(question)                          (with a puzzle-embedding prefix)
    latent_recursion:  n times z = net(x + y + z);  then y = net(y + z)
    deep_recursion:    T-1 latent recursions without gradients, one with; y, z detached afterwards
    one supervision step = one deep recursion + heads; up to N_sup steps with a loss at each,
    and a Q head on y that learns when to halt.

Variants are flags of ModelConfig (token mixer, positions, prefix length), not copies of this file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .layers import Block, Linear, Rotary, trunc_normal_


@dataclass
class ModelConfig:
    vocab_size: int = 11
    seq_len: int = 81                # answer/question tokens, without the prefix
    num_puzzle_ids: int = 1          # rows of the puzzle-embedding table
    d: int = 512                     # hidden size
    L: int = 2                       # layers of the one network
    heads: int = 8
    expansion: float = 4.0
    mixer: str = "attention"         # "attention" or "mlp" (the paper's MLP-T)
    pos: str = "rope"                # "rope", "learned" or "none"
    n: int = 6                       # z updates per latent recursion
    T: int = 3                       # latent recursions per supervision step (T-1 without gradients)
    N_sup: int = 16                  # supervision steps
    puzzle_emb_len: int = 16         # prefix tokens reserved for the puzzle embedding (0 = none)
    puzzle_emb_dim: int = 512        # width of a puzzle-embedding row (<= puzzle_emb_len * d)
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5

    @property
    def prefix_len(self) -> int:
        return self.puzzle_emb_len if self.puzzle_emb_dim > 0 else 0

    @property
    def total_len(self) -> int:
        return self.prefix_len + self.seq_len

    def validate(self) -> None:
        if self.mixer not in ("attention", "mlp"):
            raise ValueError(f"mixer must be attention or mlp, not '{self.mixer}'")
        if self.pos not in ("rope", "learned", "none"):
            raise ValueError(f"pos must be rope, learned or none, not '{self.pos}'")
        if self.mixer == "attention" and self.d % self.heads:
            raise ValueError(f"d={self.d} is not divisible by heads={self.heads}")
        if self.puzzle_emb_dim > self.puzzle_emb_len * self.d:
            raise ValueError("puzzle_emb_dim must fit in puzzle_emb_len * d")
        for k in ("n", "T", "N_sup", "d", "L", "seq_len", "vocab_size", "num_puzzle_ids"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1")


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


@dataclass
class Carry:
    """The recurrent state of a batch between supervision steps (always detached)."""
    y: torch.Tensor  # (B, prefix+seq_len, d) the answer
    z: torch.Tensor  # (B, prefix+seq_len, d) the latent


@dataclass
class StepOutput:
    logits: torch.Tensor       # (B, seq_len, vocab)
    q_halt: torch.Tensor       # (B,) halting logit
    q_continue: torch.Tensor   # (B,) continue logit (trained only with the optional Q-learning loss)


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
        # the one network, reused for every z and y update
        self.net = nn.ModuleList(
            Block(dim=d, mixer=cfg.mixer, heads=cfg.heads, expansion=cfg.expansion, seq_len=cfg.total_len,
                  rotary=rotary, eps=cfg.norm_eps)
            for _ in range(cfg.L))
        self.lm_head = Linear(d, cfg.vocab_size)
        self.q_head = Linear(d, 2, bias=True)
        with torch.no_grad():  # start by never halting: Q = sigmoid(-5)
            self.q_head.weight.zero_()
            self.q_head.bias.fill_(-5.0)
        # fixed initial answer and latent, never trained
        self.register_buffer("y_init", trunc_normal_(torch.empty(d), 1.0))
        self.register_buffer("z_init", trunc_normal_(torch.empty(d), 1.0))

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

    def initial_carry(self, batch_size: int, device=None) -> Carry:
        shape = (batch_size, self.cfg.total_len, self.cfg.d)
        device = device or self.y_init.device
        return Carry(y=self.y_init.to(device).expand(shape).clone(), z=self.z_init.to(device).expand(shape).clone())

    def reset_carry(self, carry: Carry, reset: torch.Tensor) -> Carry:
        """Put the initial y, z into the slots where `reset` (B,) is true (halted slots being refilled)."""
        m = reset.view(-1, 1, 1)
        return Carry(y=torch.where(m, self.y_init.to(carry.y.dtype), carry.y),
                     z=torch.where(m, self.z_init.to(carry.z.dtype), carry.z))

    # --- the recursion ----------------------------------------------------------------------------------
    def f(self, h: torch.Tensor) -> torch.Tensor:
        for block in self.net:
            h = block(h)
        return h

    def latent_recursion(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor):
        for _ in range(self.cfg.n):
            z = self.f(z + y + x)
        y = self.f(y + z)
        return y, z

    def deep_recursion(self, x: torch.Tensor, carry: Carry) -> tuple[Carry, torch.Tensor]:
        """One supervision step: T-1 latent recursions without gradients, the last one with.

        Returns the detached carry for the next step and the y that carries this step's gradient.
        """
        y, z = carry.y, carry.z
        if self.cfg.T > 1:
            with torch.no_grad():
                for _ in range(self.cfg.T - 1):
                    y, z = self.latent_recursion(x, y, z)
        y, z = self.latent_recursion(x, y, z)
        return Carry(y=y.detach(), z=z.detach()), y

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
