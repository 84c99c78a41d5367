"""The ACT carry of training (the paper's deep supervision with ACT halting): a fixed set of slots, one
example each.

Every slot holds an example, its recurrent state (the model's carry: y, z) and the supervision steps it has
run. After each step, `halt` decides which examples are done (N_sup steps, or Q says halt after the
exploration minimum); before the next, `refill` resets those slots to the initial state and fills them with
the next examples of the shuffled, augmented training stream. The batch keeps its shape throughout.

In a process group each process holds its share of the global slots. Refilling and the exploration draws
run in global slot order on every process, so the data a slot sees does not depend on the number of
processes (tests/test_ddp.py).
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import torch
import torch.distributed as dist

from .checkpoint import CheckpointError
from .model import Carry


class ExampleStream:
    """An endless order over the training examples: a fresh seeded shuffle every epoch. State = (epoch, pos)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch, self.pos = n, seed, 0, 0
        self._perm = self._permutation()

    def _permutation(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.n)

    def take(self, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
        """The next k examples; with `allowed` (bool per example) the others are passed over (a curriculum)."""
        if allowed is not None and not allowed.any():
            raise ValueError("the curriculum allows no training example")
        out = []
        while k > 0:
            m = min(k, self.n - self.pos) if allowed is None else self.n - self.pos
            chunk = self._perm[self.pos:self.pos + m]
            if allowed is not None:  # as many allowed examples as needed, and the position just past them
                ok = np.flatnonzero(allowed[chunk])[:k]
                m = int(ok[-1]) + 1 if len(ok) == k else m
                chunk = chunk[ok]
            out.append(chunk)
            self.pos, k = self.pos + m, k - len(chunk)
            if self.pos == self.n:
                self.epoch, self.pos = self.epoch + 1, 0
                self._perm = self._permutation()
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def state(self) -> list[int]:
        return [self.epoch, self.pos]

    def load_state(self, state) -> None:
        self.epoch, self.pos = int(state[0]), int(state[1])
        self._perm = self._permutation()


class ActCarry:
    """This process's slots: per slot the example, the model's carry, the steps run and whether it halted.

    `model` gives the carry (`initial_carry`, `reset_carry`); `split` is the training split (inputs, labels,
    puzzle_ids arrays); `augment(inputs, labels, rng)` transforms a refill's examples. Tensors are indexed
    along their first (slot) dimension only, whatever the shape of the model's carry.
    """

    SLOT_TENSORS = ("inputs", "labels", "puzzle_ids", "steps", "halted")

    def __init__(self, model, split, *, batch_size: int, N_sup: int, seed: int, device: torch.device,
                 augment=None, halt_explore_prob: float = 0.1, q_continue: bool = False, rank: int = 0,
                 world: int = 1, stagger: bool = False):
        if batch_size % world:
            raise ValueError(f"batch_size {batch_size} is not divisible by {world} processes")
        self.model, self.split, self.augment = model, split, augment
        self.global_size, self.B = batch_size, batch_size // world
        self.N_sup, self.seed, self.device = N_sup, seed, device
        self.halt_explore_prob = halt_explore_prob  # chance that a sample must run at least U{2..N_sup} steps
        self.q_continue = q_continue                # halt when q_halt > q_continue (HRM) rather than q_halt > 0
        self.rank, self.world = rank, world
        self.stream = ExampleStream(len(split), seed)
        self.gen = torch.Generator().manual_seed(seed + 1)  # halting exploration, same on all processes

        B, L = self.B, int(split.inputs.shape[1])
        zeros = lambda *s: torch.zeros(*s, dtype=torch.long, device=device)  # noqa: E731
        self.carry: Carry = model.initial_carry(B, device)
        self.inputs, self.labels, self.puzzle_ids, self.steps = zeros(B, L), zeros(B, L), zeros(B), zeros(B)
        self.halted = torch.ones(B, dtype=torch.bool, device=device)  # every slot empty: the first refill fills all
        # Stagger: global slot g starts its first example at step g * N_sup // batch_size, so its first episode
        # is shorter and, while Q never halts, a rotating 1/N_sup of the slots is refilled every step instead of
        # all of them every N_sup steps (each batch mixes depths and puzzles; the example order is unchanged).
        g = torch.arange(batch_size)
        self._start_steps = self._mine(g * N_sup // batch_size) if stagger else None

    def _mine(self, t: torch.Tensor) -> torch.Tensor:
        """This process's share of a tensor over the global slots."""
        return t[self.rank * self.B:(self.rank + 1) * self.B].to(self.device)

    def _gather(self, t: torch.Tensor) -> torch.Tensor:
        """A tensor over this process's slots -> the same over the global slots (concatenated along dim 0)."""
        if self.world == 1:
            return t
        parts = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(parts, t.contiguous())
        return torch.cat(parts)

    def refill(self, step: int, allowed: np.ndarray | None = None) -> None:
        """Reset halted slots and fill them with the next examples, in global slot order on every process.
        Collective: every process takes part. `step` seeds the augmentation of this refill; `allowed` (bool
        per training example) restricts the examples taken (a difficulty curriculum)."""
        halted = self._gather(self.halted).cpu().numpy()
        where = np.flatnonzero(halted)
        if len(where) == 0:
            return
        idx = self.stream.take(len(where), allowed)
        inputs = np.asarray(self.split.inputs[idx])
        labels = np.asarray(self.split.labels[idx])
        ids = np.asarray(self.split.puzzle_ids[idx])
        if self.augment is not None:
            inputs, labels = self.augment(inputs, labels, np.random.default_rng([self.seed, step, 7]))
        lo = self.rank * self.B
        mine = (where >= lo) & (where < lo + self.B)
        local = torch.from_numpy(where[mine] - lo).to(self.device)
        to_dev = lambda a: torch.from_numpy(np.ascontiguousarray(a[mine]).astype(np.int64)).to(self.device)  # noqa
        self.inputs[local], self.labels[local], self.puzzle_ids[local] = to_dev(inputs), to_dev(labels), to_dev(ids)
        self.steps[local] = 0
        if self._start_steps is not None:  # the first fill of a staggered carry
            self.steps, self._start_steps = self._start_steps.clone(), None
        self.carry = self.model.reset_carry(self.carry, self.halted)
        self.halted[:] = False

    def is_last(self) -> torch.Tensor:
        """(B,) bool: the step being run (before `halt` counts it) is the slot's N_sup-th, its last."""
        return self.steps + 1 >= self.N_sup

    @torch.no_grad()
    def halt(self, carry: Carry, q_halt: torch.Tensor, q_continue: torch.Tensor) -> None:
        """After a step: store its carry, count the step, and halt where N_sup is reached or Q says halt, once
        the exploration minimum is run (halting is decided in training only; evaluation runs every step)."""
        halted, steps = self.is_last(), self.steps + 1
        if self.N_sup > 1:
            q_says = q_halt > q_continue if self.q_continue else q_halt > 0
            # drawn for the global batch on every process: the same draws whatever the number of processes
            explore = torch.rand(self.global_size, generator=self.gen) < self.halt_explore_prob
            min_steps = explore * torch.randint(2, self.N_sup + 1, (self.global_size,), generator=self.gen)
            halted = (halted | q_says) & (steps >= self._mine(min_steps))
        self.carry, self.steps, self.halted = carry, steps, halted

    # --- checkpoints: the keys "slots", "stream", "gen" of train_state.pt ----------------------------------
    def state(self) -> dict:
        """The global slots (collective: every process takes part), the stream position and the RNG."""
        slots = {k: getattr(self, k) for k in self.SLOT_TENSORS}
        slots.update({f.name: getattr(self.carry, f.name) for f in fields(self.carry)})  # y, z
        return {"stream": self.stream.state(), "gen": self.gen.get_state(),
                "slots": {k: self._gather(v) for k, v in slots.items()}}

    def load_state(self, st: dict) -> None:
        sl = st["slots"]
        if len(sl["steps"]) != self.global_size:
            raise CheckpointError(f"checkpoint has {len(sl['steps'])} slots, batch_size is {self.global_size}")
        self.stream.load_state(st["stream"])
        self.gen.set_state(st["gen"])
        self._start_steps = None  # a resumed carry is already staggered (or not)
        for k in self.SLOT_TENSORS:
            setattr(self, k, self._mine(sl[k]))
        self.carry = type(self.carry)(**{f.name: self._mine(sl[f.name]) for f in fields(self.carry)})
