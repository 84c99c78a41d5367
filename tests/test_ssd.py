"""The Mamba-2 (SSD) mixer: the model's chunked scan against the recurrence and the dual (attention) form, the
mixer against an independent write-up of its formula, its symmetry, and TRMs built with it."""

import math
import re

import pytest
import torch
import torch.nn.functional as F

from trm.model import TRM, ModelConfig, count_parameters
from trm.model.flops import net_call_flops
from trm.model.layers import Attention, rms_norm
from trm.checkpoint import CheckpointError
from trm.optim import build_optimizer
from trm.model.ssd import SSD, segsum, ssd_chunked, ssd_naive, ssd_parameters, ssd_quadratic
from trm.presets import get_preset
from trm.train import Trainer, TrainConfig

f64 = torch.float64


def scan_inputs(b=2, l=11, H=3, P=4, N=5, seed=0, grad=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, l, H, P, generator=g, dtype=f64)
    dt = F.softplus(torch.randn(b, l, H, generator=g, dtype=f64))
    A = -torch.rand(H, generator=g, dtype=f64) * 3 - 0.1
    B, C = (torch.randn(b, l, N, generator=g, dtype=f64) for _ in range(2))
    return [t.requires_grad_(grad) for t in (x, dt, A, B, C)]


def test_segsum_is_the_sum_over_each_segment():
    a = torch.randn(6, dtype=f64)
    s = segsum(a)
    for t in range(6):
        for u in range(6):
            want = a[u + 1:t + 1].sum() if u <= t else -math.inf
            assert float(s[t, u]) == pytest.approx(float(want), abs=1e-12)


@pytest.mark.parametrize("chunk", [1, 3, 7, 11, 64])
def test_the_chunked_scan_is_the_recurrence_and_the_dual_form_for_any_chunk(chunk):
    inputs = scan_inputs()
    want = ssd_naive(*inputs)
    assert torch.allclose(ssd_quadratic(*inputs), want, atol=1e-12)
    assert torch.allclose(ssd_chunked(*inputs, chunk), want, atol=1e-12)


def test_the_scan_gradients_are_exact():
    inputs = scan_inputs(b=1, l=5, H=2, P=2, N=3, grad=True)
    assert torch.autograd.gradcheck(lambda *t: ssd_chunked(*t, 2), inputs)
    # and equal the recurrence's, through every chunk boundary
    g1 = torch.autograd.grad(ssd_chunked(*inputs, 2).square().sum(), inputs)
    g2 = torch.autograd.grad(ssd_naive(*inputs).square().sum(), inputs)
    assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(g1, g2))


def mixer(bidirectional=True, chunk=4, seed=0, **kw):
    torch.manual_seed(seed)
    return SSD(8, state=3, head_dim=4, expand=2, conv=3, chunk=chunk, bidirectional=bidirectional, **kw).double()


def reference_mixer(m: SSD, h: torch.Tensor) -> torch.Tensor:
    """The module docstring's formula written out: an explicit causal conv, the recurrence, both directions."""
    inner, N, H, P = m.inner, m.state, m.heads, m.head_dim
    proj = h @ m.in_proj.weight.T
    z, xbc, dt = proj[..., :inner], proj[..., inner:2 * inner + 2 * N], proj[..., 2 * inner + 2 * N:]
    w, K = m.conv.weight[:, 0], m.conv.weight.shape[-1]

    def causal(xbc, dt):
        L = xbc.shape[1]
        conv = torch.stack([m.conv.bias + sum(w[:, k] * xbc[:, t - (K - 1) + k] for k in range(K)
                                              if t - (K - 1) + k >= 0) for t in range(L)], 1)
        conv = conv * torch.sigmoid(conv)
        x, B, C = conv[..., :inner].reshape(*conv.shape[:2], H, P), conv[..., inner:inner + N], conv[..., inner + N:]
        y = ssd_naive(x, torch.log1p(torch.exp(dt + m.dt_bias)), -torch.exp(m.A_log), B, C) + m.D[:, None] * x
        return y.flatten(2)

    y = causal(xbc, dt)
    if m.bidirectional:
        y = (y + causal(xbc.flip(1), dt.flip(1)).flip(1)) / 2
    return rms_norm(y * z * torch.sigmoid(z), m.eps) @ m.out_proj.weight.T


@pytest.mark.parametrize("bidirectional", [False, True])
def test_the_mixer_computes_its_formula_for_any_chunk(bidirectional):
    h = torch.randn(2, 9, 8, dtype=f64)
    want = reference_mixer(mixer(bidirectional), h)
    for chunk in (1, 3, 9, 64):
        assert torch.allclose(mixer(bidirectional, chunk)(h), want, atol=1e-12)


def test_the_forward_mixer_is_causal_and_the_bidirectional_one_commutes_with_reversal():
    h = torch.randn(2, 9, 8, dtype=f64)
    fwd, bi = mixer(False), mixer(True)
    moved = h.clone()
    moved[:, 5] += 1.0
    changed = (fwd(moved) - fwd(h)).abs().amax((0, 2)) > 1e-12
    assert changed.tolist() == [False] * 5 + [True] * 4  # no token reads a later one
    changed = (bi(moved) - bi(h)).abs().amax((0, 2)) > 1e-12
    assert changed.all()  # every token reads every other
    # shared weights: reversing the sequence reverses the output (the forward mixer alone does not)
    assert torch.allclose(bi(h.flip(1)), bi(h).flip(1), atol=1e-12)
    assert not torch.allclose(fwd(h.flip(1)), fwd(h).flip(1), atol=1e-3)


def test_the_mixer_gradients_are_exact():
    m = mixer(chunk=2)
    h = torch.randn(1, 5, 8, dtype=f64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (h,))
    # the parameters' gradients equal the reference write-up's
    got = torch.autograd.grad(m(h).square().sum(), list(m.parameters()))
    want = torch.autograd.grad(reference_mixer(m, h).square().sum(), list(m.parameters()))
    assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(got, want))


def test_the_init_is_mamba2s():
    m = SSD(64, state=16, head_dim=8, expand=2, conv=4, dt_min=1e-3, dt_max=0.1)
    dt = F.softplus(m.dt_bias)
    assert m.heads == 16 and dt.min() >= 1e-3 * 0.999 and dt.max() <= 0.1 * 1.001
    A = -m.A_log.exp()
    assert A.max() <= -1 and A.min() >= -16 and torch.equal(m.D, torch.ones(16))


TINY = dict(vocab_size=6, seq_len=8, num_puzzle_ids=3, d=16, heads=2, L=2, n=2, T=2, N_sup=2, puzzle_emb_len=1,
            puzzle_emb_dim=16, pos="none", ssd_state=8, ssd_head_dim=8, ssd_chunk=4)


@pytest.mark.parametrize("kw", [dict(mixer="ssd"), dict(layer_pattern="ssd,attention", pos="rope"),
                                dict(mixer="ssd", ssd_bidirectional=False)])
def test_ssd_trms_learn_and_train(kw, sort_data, tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(**{**TINY, **kw})
    model = TRM(cfg).double().train()
    kinds = [type(b.mixer) for b in model.net]
    assert kinds == ([SSD, Attention] if cfg.layer_pattern else [SSD, SSD])
    if cfg.layer_pattern:  # the hybrid's attention layer keeps RoPE
        assert model.net[1].mixer.rotary is not None
    g = torch.Generator().manual_seed(1)
    inputs, ids = torch.randint(2, 6, (16, 8), generator=g), torch.randint(0, 3, (16,), generator=g)
    labels = inputs.sort(1).values
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):  # one batch, overfit: the mixer passes a gradient every step of the way
        _, out = model(model.initial_carry(16), inputs, ids)
        loss = F.cross_entropy(out.logits.flatten(0, 1), labels.flatten())
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None for n, p in model.named_parameters() if n.startswith("net.0.mixer."))
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    # and through the training loop, with checkpoints
    t = Trainer(cfg, TrainConfig(data=str(sort_data), out=str(tmp_path / "run"), batch_size=8, steps=3, lr=1e-3,
                                 warmup_steps=1, optimizer="adamw", loss="softmax", ema=0.9, eval_every=0,
                                 checkpoint_every=2, log_every=1, dtype="fp32"), progress=False)
    assert t.fit()["step"] == 3
    if kw.get("mixer") == "ssd" and kw.get("ssd_bidirectional", True):
        # a run saved before the SSM parameters had their own group (one group) is a one-line error on resume
        f = tmp_path / "run" / "checkpoint" / "train_state.pt"
        st = torch.load(f, weights_only=False)
        opt = st["optimizer"]
        opt["param_groups"] = [{**opt["param_groups"][0],
                                "params": [i for g in opt["param_groups"] for i in g["params"]]}]
        torch.save(st, f)
        with pytest.raises(CheckpointError, match="optimizer state does not fit"):
            Trainer(ModelConfig(), TrainConfig(), resume=str(tmp_path / "run"), progress=False)


@pytest.mark.parametrize("name", ["adam_atan2", "adamw", "muon"])
def test_weight_decay_leaves_the_ssm_parameters_alone(name):
    """Mamba-2 trains dt_bias, A_log and D without weight decay; every other weight decays as before."""
    model = TRM(ModelConfig(**{**TINY, "mixer": "ssd"}))
    opt = build_optimizer(model.named_parameters(), name=name, lr=0.1, weight_decay=0.5, betas=(0.9, 0.95))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # no gradient: the step is the decay alone
    opt.step()
    ssm = {n for n in before if n.rsplit(".", 1)[-1] in ("dt_bias", "A_log", "D")}
    assert len(ssm) == 3 * TINY["L"]
    for n, p in model.named_parameters():
        assert torch.isfinite(p).all(), n
        moved = not torch.equal(p.detach(), before[n])
        assert moved == (n not in ssm and before[n].abs().sum() > 0), n
    plain = TRM(ModelConfig(**{**TINY, "mixer": "attention"}))  # no SSM parameters: one group, as always
    groups = build_optimizer(plain.named_parameters(), name=name, lr=0.1, weight_decay=0.5,
                             betas=(0.9, 0.95)).param_groups
    assert len(groups) == (2 if name == "muon" else 1) and all(g["weight_decay"] == 0.5 for g in groups)


def test_parameter_counts_and_parity_with_attention():
    base = count_parameters(TRM(ModelConfig(**{**TINY, "mixer": "attention"})))["trainable"]
    ssd = count_parameters(TRM(ModelConfig(**{**TINY, "mixer": "ssd"})))["trainable"]
    per_mixer = ssd_parameters(16, state=8, head_dim=8, expand=2, conv=4)
    assert per_mixer == sum(p.numel() for p in TRM(ModelConfig(**{**TINY, "mixer": "ssd"})).net[0].mixer.parameters())
    assert ssd - base == 2 * (per_mixer - 4 * 16 * 16)
    arc, mamba = (count_parameters(TRM(get_preset(p).model))["trainable"] for p in ("arc1", "arc1-mamba2"))
    assert (arc, mamba) == (6_829_058, 6_847_538)  # within 0.3%, as the paper's 6.83M vs 6.86M
    s6 = get_preset("sudoku6-ssd-cpu")
    assert s6.model.mixer == "ssd" and s6.train == get_preset("sudoku6-cpu").train


def test_flops_count_what_the_mixer_runs():
    from torch.utils.flop_counter import FlopCounterMode
    for kw in (dict(mixer="ssd"), dict(mixer="ssd", ssd_bidirectional=False, ssd_chunk=3), dict(mixer="mlp")):
        cfg = ModelConfig(**{**TINY, **kw})
        model = TRM(cfg)
        with FlopCounterMode(display=False) as counter:
            model.net(torch.randn(3, cfg.total_len, cfg.d))
        assert counter.get_total_flops() == net_call_flops(cfg, 3)


@pytest.mark.parametrize("kw,words", [
    (dict(layer_pattern="ssd"), "layer_pattern must name L=2 mixers"),
    (dict(layer_pattern="ssd,mamba"), "layer_pattern must name L=2 mixers from attention, mlp, ssd"),
    (dict(mixer="ssd", ssd_head_dim=5), "ssd_expand * d = 32 is not divisible by ssd_head_dim=5"),
    (dict(mixer="ssd", ssd_chunk=0), "ssd_chunk must be >= 1"),
])
def test_bad_ssd_configs_are_one_line_errors(kw, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        ModelConfig(**{**TINY, **kw}).validate()


def test_the_cli_counts_an_ssd_preset_and_refuses_a_bad_pattern(cli):
    code, out, _ = cli("params", "--preset", "arc1-mamba2")
    assert code == 0 and "mixer=ssd" in out and out.strip().endswith("6847538")
    code, _, err = cli("params", "--preset", "sudoku6-cpu", "--layer-pattern", "ssd,ssd,ssd")
    assert code == 2 and "layer_pattern must name L=2" in err and len(err.strip().splitlines()) == 1
