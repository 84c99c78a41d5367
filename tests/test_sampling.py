"""Test-time scaling (trm.sampling, trm.sweep, the CLI's sampler flags): equivalences that pin the bookkeeping."""

import json

import numpy as np
import pytest
import torch

from trm.data.format import Split
from trm.evaluate import evaluate
from trm.model import TRM, Carry, ModelConfig
from trm.sampling import (SamplerConfig, _pick, _stream, bytes_per_row, default_max_rows, early_stopped, rescued,
                          sample, score)
from trm.sweep import SweepConfig, run_sweep

from conftest import tiny_sudoku_run

P, L = 12, 8


@pytest.fixture(scope="module")
def tiny():
    """A random tiny model whose q head varies across rows (so selection has something to choose)."""
    torch.manual_seed(0)
    model = TRM(ModelConfig(vocab_size=6, seq_len=L, d=32, heads=2, mixer="mlp", pos="none", n=2, T=2, N_sup=3,
                            puzzle_emb_len=1, puzzle_emb_dim=32))
    with torch.no_grad():
        model.q_head.weight.normal_(0, 1.0)
    rng = np.random.default_rng(0)
    inputs = rng.integers(1, 6, (P, L)).astype(np.uint8)
    labels = rng.integers(1, 6, (P, L)).astype(np.uint8)
    return model, inputs, labels, np.zeros(P, np.int32)


def run(tiny, cfg, **kw):
    model, inputs, labels, ids = tiny
    return sample(model, inputs, ids, cfg, labels=kw.pop("labels", labels), dtype="fp32", **kw)


def test_one_rollout_without_noise_is_the_deterministic_evaluation(tiny):
    model, inputs, labels, ids = tiny
    ev = evaluate(model, Split(inputs, labels, ids), D=5, dtype="fp32", keep_predictions=True)
    r = run(tiny, SamplerConfig(K=1, sigma=0.0, D=5), record_steps=range(1, 6), keep_selected=True)
    assert np.array_equal(r.selected, ev["predictions"])
    np.testing.assert_allclose(r.selected_q, ev["q_halt"], rtol=0, atol=1e-6)
    assert [s["best-q@K"] for s in score(r, [1])] == pytest.approx(ev["exact_accuracy_by_step"], abs=1e-5)
    assert [s["best-q cell accuracy"] for s in score(r, [1])] == pytest.approx(ev["cell_accuracy_by_step"], abs=1e-5)  # rounded there
    # sigma 0 draws no noise whatever the placement: every rollout is the deterministic one
    for noise in ("z", "y", "init"):
        rk = run(tiny, SamplerConfig(K=3, sigma=0.0, D=5, noise=noise))
        assert (rk.answer == r.answer[:, -1:, :1]).all() and np.allclose(rk.q, r.q[:, -1:, :1], atol=1e-6)


def test_a_seed_reproduces_and_another_seed_differs(tiny):
    cfg = SamplerConfig(K=6, sigma=0.5, D=3)
    a, b, c = run(tiny, cfg, seed=1), run(tiny, cfg, seed=1), run(tiny, cfg, seed=2)
    assert np.array_equal(a.answer, b.answer) and np.array_equal(a.q, b.q)
    assert not np.array_equal(a.q, c.q)
    assert (a.answer[:, 0, :, None] != a.answer[:, 0, None, :]).any()  # the noise does spread the rollouts


def test_first_K_rollouts_and_shorter_D_and_chunking_change_nothing(tiny):
    big = run(tiny, SamplerConfig(K=8, sigma=0.5, D=4), seed=3, record_steps=[2, 4])
    small = run(tiny, SamplerConfig(K=3, sigma=0.5, D=2), seed=3, max_rows=5)  # rows split across chunks
    assert np.array_equal(small.answer[:, 0], big.answer[:, 0, :3])
    np.testing.assert_allclose(small.q[:, 0], big.q[:, 0, :3], rtol=1e-4, atol=1e-5)  # batch size moves bits


def test_memory_bound_chunks_the_rows(tiny):
    model = tiny[0]
    seen = []
    r = run(tiny, SamplerConfig(K=100, sigma=0.3, D=2), max_rows=64, on_step=lambda t, rows, c, o: seen.append(len(rows)))
    assert max(seen) <= 64 and sum(seen) == 2 * P * 100  # every row ran both steps, never more than 64 at once
    assert r.q.shape == (P, 1, 100)
    # the default bound follows the memory budget, and a row's estimate covers its state
    assert default_max_rows(model, 2.0, "cuda") == 2 * default_max_rows(model, 1.0, "cuda")
    assert default_max_rows(model, 1e-4) < default_max_rows(model, 1.0) <= default_max_rows(model, 1.0, "cuda")
    assert bytes_per_row(model) >= 3 * model.cfg.total_len * model.cfg.d * 4


def test_selection_rules_and_pass_at_K_bookkeeping(tiny):
    model, inputs, _, ids = tiny
    cfg = SamplerConfig(K=6, sigma=0.8, D=2)
    finals = {}

    def keep(t, rows, carry, out):
        if t == 2:
            for r, p in zip(rows.tolist(), out.logits.argmax(-1).tolist()):
                finals[r] = p
    run(tiny, cfg, seed=5, on_step=keep)
    # make rollout 3's answer the label of every puzzle: then exactly the rollouts agreeing with it are right
    labels = np.array([finals[p * 6 + 3] for p in range(P)], dtype=np.uint8)
    r = run(tiny, cfg, seed=5, labels=labels)
    assert r.correct[:, 0, 3].all()
    agree = r.answer[:, 0] == r.answer[:, 0, 3:4]
    assert np.array_equal(r.correct[:, 0], agree)
    s = {row["K"]: row for row in score(r, [1, 3, 4, 6])}
    assert s[4]["pass@K"] == 1.0 and s[6]["pass@K"] == 1.0
    for K, row in s.items():
        assert row["pass@K"] >= max(row["best-q@K"], row["mode@K"], row["q-vote@K"])
        best = np.argmax(r.q[:, 0, :K], axis=1)
        assert row["best-q@K"] == pytest.approx(agree[np.arange(P), best].mean())


def test_verify_selection_follows_the_rule_checker(tiny):
    """verify@K: the best-q rollout among those the checker accepts. A checker that accepts exactly the right
    answers makes it pass@K; one that accepts nothing leaves best-q@K."""
    model, inputs, _, ids = tiny
    cfg = SamplerConfig(K=6, sigma=0.8, D=2)
    finals = {}

    def keep(t, rows, carry, out):
        for r, p in zip(rows.tolist(), out.logits.argmax(-1).tolist()):
            finals[r] = p
    run(tiny, cfg, seed=5, on_step=keep)
    labels = np.array([finals[p * 6 + 3] for p in range(P)], dtype=np.uint8)  # rollout 3 is right everywhere
    truth = {q.tobytes(): lab for q, lab in zip(inputs.astype(np.int64), labels)}
    right = lambda qs, preds: np.array([(p == truth[q.tobytes()]).all() for q, p in zip(qs, preds)])  # noqa: E731
    r = run(tiny, cfg, seed=5, labels=labels, validity=right)
    s = score(r, [6])[0]
    assert r.valid.shape == (P, 1, 6) and np.array_equal(r.valid, r.correct)
    assert s["verify@K"] == s["valid@K"] == s["pass@K"] == 1.0
    none = run(tiny, cfg, seed=5, labels=labels, validity=lambda qs, preds: np.zeros(len(preds), bool))
    s = score(none, [6])[0]
    assert s["valid@K"] == 0.0 and s["verify@K"] == s["best-q@K"]
    assert "verify@K" not in score(run(tiny, cfg, seed=5, labels=labels), [6])[0]  # only with a checker


def test_pick_rules_on_known_votes():
    ids, qs = np.array([7, 9, 9, 7, 5]), np.array([3.0, -1.0, 0.5, -2.0, 4.0])
    assert _pick(ids, qs, "best-q") == 4
    assert _pick(ids, qs, "mode") == 0       # 7 and 9 tie on two votes: 7 holds the higher best q (3.0)
    assert _pick(ids, qs, "q-vote") == 0     # sigmoid sums: 7 -> 1.07, 9 -> 0.89, 5 -> 0.98
    assert _pick(np.array([1, 2, 2]), np.array([5.0, 0.0, 0.1]), "mode") == 2


def test_initial_noise_perturbs_only_the_start(tiny):
    """noise=init: the initial y and z get the rollout's first two draws; every step after is deterministic."""
    model, inputs, labels, ids = tiny
    cfg = SamplerConfig(K=2, sigma=0.4, D=3, noise="init")
    r = run(tiny, cfg, seed=7, keep_selected=False, record_steps=[3])
    p, k = 4, 1
    g = _stream(7, p, k, torch.device("cpu"))
    carry = model.initial_carry(1)
    y = carry.y + 0.4 * torch.empty_like(carry.y[0]).normal_(generator=g)
    z = carry.z + 0.4 * torch.empty_like(carry.z[0]).normal_(generator=g)
    carry = Carry(y=y, z=z)
    with torch.no_grad():
        x = model.embed_input(torch.as_tensor(inputs[p:p + 1]).long(), torch.zeros(1, dtype=torch.long))
        for _ in range(3):
            carry, yy = model.deep_recursion(x, carry)
        q = model.heads(yy).q_halt
    assert r.q[p, 0, k] == pytest.approx(float(q), rel=1e-3)  # a batch of 1 vs 24 rows: float rounding only


def test_early_stop_saves_calls_and_matches_its_derivation(tiny):
    full = run(tiny, SamplerConfig(K=5, sigma=0.5, D=6), seed=2, record_steps=range(1, 7))
    for stop, margin in ((1, -1.0), (2, 0.0)):
        real = run(tiny, SamplerConfig(K=5, sigma=0.5, D=6, stop_after=stop, stop_margin=margin), seed=2,
                   record_steps=range(1, 7))
        derived = early_stopped(full, stop, margin)
        for k in ("answer", "correct", "cells_ok", "steps_run"):
            assert np.array_equal(getattr(real, k), getattr(derived, k)), k
        np.testing.assert_allclose(real.q, derived.q, atol=1e-5)
    cost = score(early_stopped(full, 1, -1.0))[-1]
    assert cost["calls_per_puzzle"] < cost["full_calls_per_puzzle"] == 5 * 6 * tiny[0].cfg.T * (tiny[0].cfg.n + 1)


def test_rescued_counts_the_deterministic_failures(tiny):
    det = run(tiny, SamplerConfig(K=1, D=2))
    noisy = run(tiny, SamplerConfig(K=4, sigma=0.5, D=2), seed=1)
    row = rescued(noisy, det, [4])[0]
    fails = ~det.correct[:, 0, 0]
    assert row["det_failures"] == int(fails.sum())
    assert row["rescued_by_any"] == pytest.approx(noisy.correct[fails, 0].any(1).mean())


def test_config_refuses_bad_values():
    for bad in (dict(K=0), dict(sigma=-1.0), dict(sigma=float("nan")), dict(noise="x"), dict(select="vote")):
        with pytest.raises(ValueError):
            SamplerConfig(**bad).validate()


def test_sweep_writes_table_and_plots_and_resumes(tiny, tmp_path, monkeypatch):
    model, inputs, labels, ids = tiny
    split = Split(inputs, labels, ids)
    cfg = SweepConfig(Ks=[1, 2, 4], sigmas=[0.3, 0.6], Ds=[2, 3], noises=["z", "init"], seeds=[0, 1], stop_after=[1])
    r = run_sweep(model, split, cfg, tmp_path / "sw", dtype="fp32", progress=False, log=lambda *a: None)
    for f in ("sweep.csv", "sweep.json", "acc_vs_K.png", "acc_vs_sigma.png", "acc_vs_compute.png"):
        assert (tmp_path / "sw" / f).is_file(), f
    rows = json.loads((tmp_path / "sw" / "sweep.json").read_text())["rows"]
    assert len([x for x in rows if x["deterministic"]]) == 2  # one per D
    assert len(rows) == 2 + 2 * 2 * 2 * 3 * 2  # noises x sigmas x (no stop, stop 1) x K x D
    csv_lines = (tmp_path / "sw" / "sweep.csv").read_text().splitlines()
    assert len(csv_lines) == len(rows) + 1
    # the sweep's K=2 point is what a K=2 run gives, seeds averaged
    want = np.mean([score(run(tiny, SamplerConfig(K=2, sigma=0.3, D=3), seed=s), [2])[0]["best-q@K"] for s in (0, 1)])
    got = next(x for x in rows if x["noise"] == "z" and x["sigma"] == 0.3 and x["K"] == 2 and x["D"] == 3
               and not x["stop_after"])
    assert got["best-q@K"] == pytest.approx(want)
    # a second sweep with the same grid reads the cached runs: no sampling at all
    monkeypatch.setattr("trm.sweep.sample", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-ran")))
    again = run_sweep(model, split, cfg, tmp_path / "sw", dtype="fp32", progress=False, log=lambda *a: None)
    assert again["rows"] == r["rows"]


# --- the command line ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run6(tmp_path_factory):
    return tiny_sudoku_run(tmp_path_factory, 6, generate=16, test=6)



def test_eval_with_a_sampler_reports_every_rule(cli, run6):
    run_dir, data = run6
    code, out, _ = cli("eval", "--checkpoint", run_dir, "--data", data, "--K", 4, "--sigma", 0.3,
                       "--seeds", "0,1", "--D", 3, "--json")
    assert code == 0
    m = json.loads(out)
    s = m["scores"][-1]
    assert s["K"] == 4 and s["seeds"] == 2 and s["pass@K"] >= s["best-q@K"]
    assert {"best-q@K", "mode@K", "q-vote@K", "pass@K"} <= set(s) and "best-q@K std" in s
    # K=1 sigma 0 through the CLI is the plain evaluation
    _, out1, _ = cli("eval", "--checkpoint", run_dir, "--data", data, "--K", 1, "--D", 3, "--json")
    _, out0, _ = cli("eval", "--checkpoint", run_dir, "--data", data, "--D", 3, "--json")
    assert json.loads(out1)["scores"][-1]["best-q@K"] == json.loads(out0)["exact_accuracy"]


def test_solve_and_sweep_from_the_command_line(cli, run6, tmp_path):
    run_dir, data = run6
    code, out, _ = cli("solve", "--checkpoint", run_dir, "--data", data, "--index", 0, "--K", 5,
                       "--sigma", 0.3, "--select", "mode", "--json")
    r = json.loads(out)
    assert code == 0 and r["K"] == 5 and 1 <= r["rollouts_agreeing"] <= 5 and len(r["solution"]) == 36
    code, out, _ = cli("sweep", "--checkpoint", run_dir, "--data", data, "--K", "1,2", "--sigma", "0.3",
                       "--D", "2", "--seeds", "0", "--out", tmp_path / "sw", "--quiet")
    assert code == 0 and "best-q@K" in out and (tmp_path / "sw" / "acc_vs_compute.png").is_file()


@pytest.mark.parametrize("argv, words", [
    (["--K", "0"], "--K must be >= 1"),
    (["--sigma", "-1"], "--sigma"),
    (["--sampler", "nope"], "unknown sampler"),
    (["--seeds", "a,b"], "--seeds takes"),
    (["--K", "2", "--memory-gb", "0"], "--memory-gb"),
])
def test_sampler_flags_refuse_bad_values(cli, run6, argv, words):
    run_dir, data = run6
    code, out, err = cli("eval", "--checkpoint", run_dir, "--data", data, *argv)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1
