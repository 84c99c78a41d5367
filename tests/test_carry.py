"""The ACT carry on its own: refill in stream order, halting, exploration, state round trip."""

import pytest
import torch

from trm.carry import ActCarry, ExampleStream
from trm.checkpoint import CheckpointError
from trm.data.format import load_dataset
from trm.model import Carry


class Model:
    """The carry interface of a model whose z is (B, n, L, d), as a variant with n latents has it."""
    n, L, d = 3, 8, 4

    def initial_carry(self, B, device):
        y, z = torch.ones(B, self.L, self.d, device=device), torch.full((B, self.n, self.L, self.d), 2.0, device=device)
        return Carry(y=y, z=z)

    def reset_carry(self, carry, reset):
        init = self.initial_carry(len(reset), reset.device)
        pick = lambda new, old: torch.where(reset.view(-1, *[1] * (old.dim() - 1)), new, old)  # noqa: E731
        return Carry(y=pick(init.y, carry.y), z=pick(init.z, carry.z))


def act(split, **kw):
    kw = {"batch_size": 6, "N_sup": 3, "seed": 5, "device": torch.device("cpu"), **kw}
    return ActCarry(Model(), split, **kw)


def test_refill_takes_the_stream_in_slot_order(sort_data):
    split = load_dataset(sort_data)["train"]
    a = act(split)
    a.refill(step=0)
    idx = ExampleStream(len(split), seed=5).take(6)
    assert torch.equal(a.inputs, torch.from_numpy(split.inputs[idx]).long())
    assert torch.equal(a.labels, torch.from_numpy(split.labels[idx]).long())
    assert not a.halted.any() and (a.steps == 0).all()
    a.carry.z[:] = 9.0
    a.halted[[0, 5]] = True
    a.refill(step=1)
    nxt = ExampleStream(len(split), seed=5).take(8)[6:]
    assert torch.equal(a.inputs[[0, 5]], torch.from_numpy(split.inputs[nxt]).long())
    assert (a.carry.z[[0, 5]] == 2.0).all() and (a.carry.z[1:5] == 9.0).all()


def test_halt_on_q_then_at_N_sup_and_exploration_delays_it(sort_data):
    split = load_dataset(sort_data)["train"]
    a = act(split, halt_explore_prob=0.0)
    a.refill(0)
    q_halt = torch.tensor([1.0, -1.0, 1.0, -1.0, -1.0, -1.0])
    a.halt(a.carry, q_halt, torch.zeros(6))
    assert a.halted.tolist() == [True, False, True, False, False, False] and (a.steps == 1).all()
    a.refill(1)  # slots 0 and 2 start again
    a.halt(a.carry, torch.full((6,), -1.0), torch.zeros(6))
    assert a.steps.tolist() == [1, 2, 1, 2, 2, 2] and not a.halted.any()
    assert a.is_last().tolist() == [False, True, False, True, True, True]
    a.halt(a.carry, torch.full((6,), -1.0), torch.zeros(6))
    assert a.halted.tolist() == [False, True, False, True, True, True]  # N_sup = 3 reached, whatever Q says
    # q_halt > q_continue rather than q_halt > 0 (HRM)
    b = act(split, halt_explore_prob=0.0, q_continue=True)
    b.refill(0)
    b.halt(b.carry, torch.full((6,), 1.0), torch.tensor([2.0, 0.0, 2.0, 0.0, 2.0, 0.0]))
    assert b.halted.tolist() == [False, True, False, True, False, True]
    # every sample explores: at least 2 steps, whatever Q says
    c = act(split, halt_explore_prob=1.0)
    c.refill(0)
    c.halt(c.carry, torch.full((6,), 5.0), torch.zeros(6))
    assert not c.halted.any()


def test_state_round_trip_along_the_slot_dimension_only(sort_data):
    split = load_dataset(sort_data)["train"]
    a = act(split)
    a.refill(0)
    a.carry.z[2] = torch.arange(3 * 8 * 4, dtype=torch.float32).view(3, 8, 4)
    a.halt(a.carry, torch.randn(6), torch.zeros(6))
    st = a.state()
    assert set(st) == {"stream", "gen", "slots"}
    assert set(st["slots"]) == {"inputs", "labels", "puzzle_ids", "steps", "halted", "y", "z"}
    assert st["slots"]["z"].shape == (6, 3, 8, 4)
    b = act(split)
    b.load_state(st)
    for k in ActCarry.SLOT_TENSORS:
        assert torch.equal(getattr(a, k), getattr(b, k)), k
    assert torch.equal(a.carry.y, b.carry.y) and torch.equal(a.carry.z, b.carry.z)
    assert b.stream.state() == a.stream.state() and torch.equal(b.gen.get_state(), a.gen.get_state())
    a.refill(1), b.refill(1)
    assert torch.equal(a.inputs, b.inputs)
    with pytest.raises(CheckpointError, match="checkpoint has 6 slots, batch_size is 4"):
        act(split, batch_size=4).load_state(st)
