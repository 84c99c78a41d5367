import math

import pytest
import torch

from trm.losses import softmax_cross_entropy, stablemax_cross_entropy
from trm.model import TRM, ModelConfig, count_parameters
from trm.model.layers import SequenceSwiGLU, SwiGLU, glu, rms_norm, swiglu_hidden, trunc_normal_
from trm.presets import get_preset


def tiny(**kw):
    cfg = dict(vocab_size=7, seq_len=9, num_puzzle_ids=3, d=32, heads=4, n=2, T=3, N_sup=4, puzzle_emb_len=2,
               puzzle_emb_dim=48)
    cfg.update(kw)
    return TRM(ModelConfig(**cfg))


@pytest.mark.parametrize("preset,want", [("sudoku-extreme-mlp", 5_028_866), ("sudoku-extreme-att", 6_828_034),
                                         ("maze-hard", 6_822_914)])
def test_paper_parameter_counts(preset, want):
    model = TRM(get_preset(preset).model)
    counts = count_parameters(model)
    assert counts["trainable"] == want
    assert counts["puzzle_embedding"] == 512  # one shared id x 512, reported apart


@pytest.mark.parametrize("vocab,want", [(6, 6_822_914), (12, 6_829_058)])
def test_maze_and_arc_parameter_counts(vocab, want):
    assert count_parameters(TRM(ModelConfig(vocab_size=vocab, seq_len=900)))["trainable"] == want


def test_swiglu_hidden_matches_reference():
    assert swiglu_hidden(512, 4) == 1536 and swiglu_hidden(97, 4) == 512


def _same_values_and_gradients(pairs):
    """Each (module, reference) pair: equal outputs and equal gradients for the input and every weight (float64)."""
    for module, ref in pairs:
        h = torch.randn(3, 13, 24, dtype=torch.float64, requires_grad=True)
        got, want = module(h), ref(h)
        assert torch.allclose(got, want, atol=1e-12)
        wrt = [h, *module.parameters()]
        for a, b in zip(torch.autograd.grad(got.square().sum(), wrt), torch.autograd.grad(want.square().sum(), wrt)):
            assert torch.allclose(a, b, atol=1e-10)


def test_fast_swiglus_equal_the_reference_formulation():
    # the layers skip the reference's transposes and chunk; values and every gradient must not change
    torch.manual_seed(0)
    seq, chan = SequenceSwiGLU(13, 4.0).double(), SwiGLU(24, 4.0).double()
    F = torch.nn.functional

    def ref_seq(h):  # the reference: transpose to (B, d, L), one fused gate/up matmul, chunk, transpose back
        gate, up = F.linear(h.transpose(1, 2), seq.gate_up.weight).chunk(2, -1)
        return F.linear(F.silu(gate) * up, seq.down.weight).transpose(1, 2)

    def ref_chan(h):
        gate, up = F.linear(h, chan.gate_up.weight).chunk(2, -1)
        return F.linear(F.silu(gate) * up, chan.down.weight)

    _same_values_and_gradients(((seq, ref_seq), (chan, ref_chan)))
    # without autograd the SiLU product runs in place: same values
    seq, chan = seq.float(), chan.float()
    for module, ref in ((seq, ref_seq), (chan, ref_chan)):
        h = torch.randn(3, 13, 24)
        with torch.no_grad():
            fast = module(h)
        assert torch.allclose(fast, ref(h), atol=1e-5)


def test_sigmoid_norm_glu_is_the_papers_formula():
    """glu sigmoid_norm ("Speed is Confidence"): down(sigmoid(g) * RMSNorm(g * v)), the norm over the hidden
    axis (the one the down-projection contracts), in both the channel MLP and the MLP-T mixer."""
    torch.manual_seed(0)
    F = torch.nn.functional
    seq, chan = SequenceSwiGLU(13, 4.0, "sigmoid_norm").double(), SwiGLU(24, 4.0, "sigmoid_norm").double()

    def unit(gate, up):  # hidden axis last
        gu = gate * up
        return torch.sigmoid(gate) * gu / torch.sqrt(gu.square().mean(-1, keepdim=True) + 1e-5)

    def ref_seq(h):
        gate, up = F.linear(h.transpose(1, 2), seq.gate_up.weight).chunk(2, -1)
        return F.linear(unit(gate, up), seq.down.weight).transpose(1, 2)

    def ref_chan(h):
        gate, up = F.linear(h, chan.gate_up.weight).chunk(2, -1)
        return F.linear(unit(gate, up), chan.down.weight)

    _same_values_and_gradients(((seq, ref_seq), (chan, ref_chan)))
    # bounded whatever the scale of its inputs: RMS over the hidden axis below 1 (the sigmoid is < 1), where
    # the standard unit grows with the square of the scale
    g, v = 100 * torch.randn(4, 64, dtype=torch.float64), 100 * torch.randn(4, 64, dtype=torch.float64)
    assert (glu(g.clone(), v.clone(), "sigmoid_norm").square().mean(-1).sqrt() < 1).all()
    assert (glu(g.clone(), v.clone(), "swiglu").square().mean(-1).sqrt() > 100).all()
    # without autograd it runs in place (on fresh matmul outputs in the layers): the same values, either axis
    g.requires_grad_(True)
    with_grad = glu(g, v, "sigmoid_norm").detach()
    g = g.detach()
    assert torch.allclose(glu(g.clone(), v.clone(), "sigmoid_norm"), with_grad, rtol=1e-6, atol=1e-9)
    assert torch.allclose(glu(g.T.clone(), v.T.clone(), "sigmoid_norm", dim=-2), with_grad.T, rtol=1e-6, atol=1e-9)
    for module in (seq, chan):
        h = torch.randn(3, 13, 24, dtype=torch.float64)
        with torch.no_grad():
            fast = module(h)
        assert torch.allclose(fast, module(h), atol=1e-10)
    with pytest.raises(ValueError, match="glu must be one of"):
        glu(g, v, "gelu")
    model = TRM(ModelConfig(d=16, heads=2, mixer="mlp", pos="none", vocab_size=6, seq_len=8, puzzle_emb_dim=16,
                            glu="sigmoid_norm"))
    assert all(b.mlp.kind == "sigmoid_norm" and b.mixer.kind == "sigmoid_norm" for b in model.net)
    with pytest.raises(ValueError, match="glu must be one of"):
        ModelConfig(glu="gelu").validate()


def test_truncated_normal_has_the_requested_std():
    t = trunc_normal_(torch.empty(200_000), 0.5)
    assert abs(t.std().item() - 0.5) < 0.01 and t.abs().max() <= 2 * 0.5 / 0.8796 + 1e-6


@pytest.mark.parametrize("mixer,pos", [("mlp", "none"), ("attention", "rope"), ("attention", "learned")])
def test_shapes(mixer, pos):
    m = tiny(mixer=mixer, pos=pos)
    B = 5
    carry = m.initial_carry(B)
    assert carry.y.shape == (B, 2 + 9, 32)
    inputs, ids = torch.randint(0, 7, (B, 9)), torch.randint(0, 3, (B,))
    carry2, out = m(carry, inputs, ids)
    assert out.logits.shape == (B, 9, 7) and out.q_halt.shape == (B,) and out.q_continue.shape == (B,)
    assert carry2.y.shape == carry.y.shape and not carry2.y.requires_grad and not carry2.z.requires_grad


def test_q_head_starts_at_minus_five():
    m = tiny()
    _, out = m(m.initial_carry(2), torch.randint(0, 7, (2, 9)), torch.zeros(2, dtype=torch.long))
    assert torch.allclose(out.q_halt, torch.full((2,), -5.0)) and torch.allclose(out.q_continue, torch.full((2,), -5.0))


def test_gradients_flow_only_through_the_last_cycle():
    m = tiny(T=3, n=2)
    calls = []
    m.net[0].register_forward_hook(lambda mod, i, o: calls.append(o.requires_grad))
    carry = m.initial_carry(3)
    carry.y.requires_grad_(True); carry.z.requires_grad_(True)
    _, out = m(carry, torch.randint(0, 7, (3, 9)), torch.zeros(3, dtype=torch.long))
    out.logits.float().sum().backward()
    # T*(n+1) = 9 network calls, only the last n+1 = 3 build a graph
    assert calls == [False] * 6 + [True] * 3
    # the first T-1 cycles run without gradients, so nothing reaches the incoming state
    assert carry.y.grad is None and carry.z.grad is None
    assert m.net[0].mlp.down.weight.grad is not None
    # with T=1 the only cycle has gradients, and they do reach the incoming state
    m1 = tiny(T=1)
    c1 = m1.initial_carry(3)
    c1.z.requires_grad_(True)
    _, o1 = m1(c1, torch.randint(0, 7, (3, 9)), torch.zeros(3, dtype=torch.long))
    o1.logits.float().sum().backward()
    assert c1.z.grad is not None


@pytest.mark.parametrize("mixer,pos", [("mlp", "none"), ("attention", "rope")])
def test_bf16_autocast_tracks_fp32(mixer, pos):
    # the path `--dtype auto` takes on GPUs and bf16 CPUs: bf16 matmuls, fp32 weights, norms and gradients
    from trm.runtime import autocast
    torch.manual_seed(0)
    m = tiny(mixer=mixer, pos=pos, T=1, n=1)  # 2 calls: a random-weight recursion amplifies rounding with depth
    inputs, ids = torch.randint(0, 7, (4, 9)), torch.randint(0, 3, (4,))
    _, ref = m(m.initial_carry(4), inputs, ids)
    with autocast(torch.device("cpu"), "bf16"):
        _, out = m(m.initial_carry(4), inputs, ids)
    assert out.logits.dtype == torch.bfloat16 and out.q_halt.dtype == torch.float32
    err = (out.logits.float() - ref.logits).abs().max() / ref.logits.abs().max()
    assert 0 < err < 0.05  # bf16 rounding, not a different computation
    out.logits.float().square().mean().backward()
    grads = [p.grad for p in m.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_puzzle_embedding_prefix_and_reset():
    m = tiny()
    with torch.no_grad():
        m.puzzle_emb.weight[1] = 1.0
    x = m.embed_input(torch.randint(0, 7, (2, 9)), torch.tensor([0, 1]))
    assert x.shape == (2, 11, 32)
    assert x[0, :2].abs().sum() == 0  # zero-initialised row
    # 48-dim row padded to 2 tokens of 32: the second token holds 16 values then zeros
    assert torch.all(x[1, 1, :16] != 0) and torch.all(x[1, 1, 16:] == 0)
    carry = m.initial_carry(3)
    carry.y += 1
    reset = m.reset_carry(carry, torch.tensor([True, False, True]))
    assert torch.equal(reset.y[0, 0], m.y_init) and torch.equal(reset.y[1], carry.y[1])


def _stablemax_ce_reference(logits, labels):
    out = []
    for row, lab in zip(logits.double().tolist(), labels.tolist()):
        s = [1 / (1 - v) if v < 0 else v + 1 for v in row]
        out.append(0.0 if lab == 0 else -math.log(s[lab] / sum(s)))
    return torch.tensor(out, dtype=torch.float64)


def test_stablemax_against_float64_reference():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 7, generator=g) * 4
    labels = torch.randint(0, 7, (50,), generator=g)
    got = stablemax_cross_entropy(logits, labels)
    assert got.dtype == torch.float64
    assert torch.allclose(got, _stablemax_ce_reference(logits, labels), atol=1e-12)
    assert torch.all(got[labels == 0] == 0)


def test_softmax_cross_entropy_ignores_label_zero():
    logits, labels = torch.randn(4, 6, 5), torch.randint(0, 5, (4, 6))
    got = softmax_cross_entropy(logits, labels)
    want = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, reduction="none")
    assert torch.allclose(got, torch.where(labels == 0, 0, want))
