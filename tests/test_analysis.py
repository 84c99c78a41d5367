"""`trm analyze`: recording pinned on a tiny model, statistics pinned on trajectories with known answers
(a fixed point, cycles, a random walk), the sparse autoencoder, and the command end to end."""

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from trm.analysis import dynamics
from trm.analysis.landscape import fit_pca
from trm.analysis.record import load_recording, record
from trm.analysis.report import verdict
from trm.analysis.sae import SAEConfig, feature_dynamics, train_sae
from trm.analysis.study import balanced_rows
from trm.checkpoint import save_checkpoint
from trm.cli import main
from trm.evaluate import rollout
from trm.model import TRM, ModelConfig
from trm.sampling import SamplerConfig, sample

from conftest import make_sort_dataset

CFG = dict(vocab_size=6, seq_len=8, num_puzzle_ids=3, d=16, L=2, heads=2, mixer="attention", pos="rope", n=2, T=2,
           N_sup=4, puzzle_emb_len=1, puzzle_emb_dim=16)


def tiny(**kw):
    torch.manual_seed(0)
    return TRM(ModelConfig(**{**CFG, **kw})).eval()


def toy(P=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(2, 6, (P, 8))
    return x, rng.integers(0, 3, P), np.sort(x, 1)


# --- statistics on synthetic trajectories -----------------------------------------------------------------
def synthetic(D=24, F=50, seed=0):
    rng = np.random.default_rng(seed)
    a, b, c = rng.normal(size=(3, F))
    t = np.arange(1, D + 1)[:, None]
    fixed = a + 0.5 ** t * b                                       # converges to a
    cycle2 = a + (-1.0) ** t * b + 0.6 ** t * c                    # alternates between a - b and a + b
    cycle3 = np.stack([a, b, c])[np.arange(D) % 3] + 0.5 ** t * a  # a, b, c, a, b, c, ...
    walk = np.cumsum(rng.normal(size=(D, F)), 0)                   # a random walk: never settles
    return np.stack([fixed, cycle2, cycle3, walk])


def test_attractor_classification_on_known_trajectories():
    s = synthetic()
    lag = dynamics.lag_distances(s, max_lag=6)
    assert lag.shape == (4, 24, 6) and np.isnan(lag[:, 0]).all() and np.isnan(lag[:, :2, 1]).all()
    norm = np.sqrt(np.mean(s ** 2, -1))
    c = dynamics.classify(lag, norm, tol=0.01, tail=4)
    assert [dynamics.KINDS[k] for k in c["kind"]] == ["fixed", "cycle", "cycle", "neither"]
    assert c["period"].tolist() == [1, 2, 3, 0]
    assert c["step"][0] < 1e-5 and c["step"][3] > 0.05
    cos = dynamics.step_cosine(lag, tail=4)
    assert cos[1] < -0.99                 # a 2-cycle alternates
    assert abs(cos[3]) < 0.5              # a random walk's moves are uncorrelated
    drift = np.arange(1, 25)[:, None] * np.ones(50)
    assert dynamics.step_cosine(dynamics.lag_distances(drift[None], 2))[0] > 0.99


def test_lyapunov_recovers_known_exponents():
    t = np.arange(17)
    grow = np.minimum(1e-3 * np.exp(0.5 * t), 0.8)   # e-folds at 0.5 per step, saturates at 0.8
    shrink = 1e-3 * np.exp(-0.3 * t)
    r = dynamics.lyapunov(np.stack([grow, shrink]), 1.0, sat=0.1, floor=1e-9)
    assert r["lam"][0] == pytest.approx(0.5, abs=1e-6) and r["t_end"][0] == 10  # 1e-3 e^(5) >= 0.1 first at t=10
    assert r["lam"][1] == pytest.approx(-0.3, abs=1e-6) and r["t_end"][1] == 16
    assert r["growth"][1] == pytest.approx(np.exp(-4.8))


def test_modes_settle_and_plateau():
    exact = np.array([[0, 1, 1, 1, 1], [0, 0, 0, 1, 1], [1, 1, 1, 1, 0], [1, 0, 1, 1, 1]], bool)
    assert dynamics.trajectory_modes(exact, quick=2).tolist() == [0, 1, 2, 1]
    assert dynamics.true_from(exact).tolist() == [2, 4, 6, 3]
    pred = np.array([[[1, 2], [3, 4], [3, 4]], [[5, 5], [5, 5], [5, 5]], [[1, 1], [2, 2], [1, 1]]])
    assert dynamics.settle_step(pred).tolist() == [2, 1, 3]
    loss = np.array([[2.0, 1.0, 0.5, 0.5, 0.5], [2.0, 2.0, 2.0, 2.0, 2.0], [1.0, 0.1, 1.0, 0.1, 1.0]])
    assert dynamics.plateau(loss).tolist() == [3, 1, 5]
    assert balanced_rows(np.array([0, 0, 0, 0, 2, 1, 2, 0]), 5).tolist() == [0, 1, 4, 5, 6]
    s = dynamics.summarise(np.array([1.0, 2.0, 3.0, np.nan]), np.array([0, 0, 2, 2]))
    assert s["quick"]["median"] == 1.5 and s["delayed"] == {"n": 0} and s["failure"]["n"] == 1


def test_pca_finds_the_direction_of_largest_variance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 1)) * np.array([[0.0, 3.0, 0.0, 0.0]]) + 0.1 * rng.normal(size=(500, 4)) + 5
    p = fit_pca(x, k=2)
    assert abs(p.components[0, 1]) > 0.99 and p.explained[0] > 0.95
    assert p.transform(x).shape == (500, 2) and abs(p.transform(x).mean()) < 1e-9


# --- recording ------------------------------------------------------------------------------------------
def test_recording_shapes_steps_and_outputs_unchanged():
    model = tiny()
    x, ids, lab = toy()
    D, c = 6, model.cfg
    plain = sample(model, x, ids, SamplerConfig(K=1, D=D), labels=lab, record_steps=range(1, D + 1), dtype="fp32")
    rec = record(model, x, ids, SamplerConfig(K=1, D=D), labels=lab, full_rows=2, latent=True, max_lag=3,
                 max_rows=3, dtype="fp32")  # chunks of 3 rows: the history restarts per chunk
    calls = c.T * (c.n + 1)
    shapes = {"q_halt": (5, D), "pred": (5, D, 8), "lag_dist": (5, D, 3), "y_mean": (5, D, 16),
              "y_full": (2, D, c.total_len, 16), "latent_mean": (5, D, calls, 16), "latent_change": (5, D, calls)}
    for k, v in shapes.items():
        assert rec[k].shape == v, k
    assert rec.meta["latent_calls"] == model.call_labels() == ["r1.z1", "r1.z2", "r1.y", "r2.z1", "r2.z2",
                                                                          "r2.y"]
    assert rec["y_mean"].dtype == np.float16 and rec["q_halt"].dtype == np.float32
    # the recorded run is the model's own: same answers and q_halt at every step, with and without hooks
    np.testing.assert_array_equal(rec["q_halt"][:, :], plain.q[:, :, 0])
    np.testing.assert_array_equal(rec["exact"], plain.correct[:, :, 0])
    inputs, pid = torch.as_tensor(x), torch.as_tensor(ids)
    for t, carry, out in rollout(model, inputs, pid, D, dtype="fp32"):
        np.testing.assert_array_equal(rec["pred"][:, t - 1], out.logits.argmax(-1).numpy())
        np.testing.assert_allclose(rec["y_full"][:, t - 1], carry.y[:2].numpy(), atol=2e-3, rtol=2e-3)
        if t == 1:
            first = torch.cat((carry.y.flatten(1), carry.z.flatten(1)), 1)
        if t == 2:
            s = torch.cat((carry.y.flatten(1), carry.z.flatten(1)), 1)
            np.testing.assert_allclose(rec["lag_dist"][:, 1, 0], (s - first).square().mean(1).sqrt().numpy(),
                                       rtol=1e-5)
    assert np.isnan(rec["lag_dist"][:, 0]).all() and np.isnan(rec["lag_dist"][:, 1, 1:]).all()
    assert np.isfinite(rec["lag_dist"][:, 3:]).all()
    # the last call of every supervision step is the y-update: its output is the carry's y
    np.testing.assert_allclose(rec["latent_mean"][:, :, -1], rec["y_mean"], atol=1e-3)
    lab_t = torch.as_tensor(lab)
    assert np.allclose(rec["cell_acc"][:, -1], (rec["pred"][:, -1] == lab).mean(1))
    ce = torch.nn.functional.cross_entropy(out.logits.float().flatten(0, 1), lab_t.flatten(), reduction="none")
    np.testing.assert_allclose(rec["loss"][:, -1], ce.view(5, 8).mean(1).numpy(), rtol=1e-5)
    assert not any(net._forward_hooks for net in model.networks())  # the hooks are gone afterwards


def test_noisy_rollouts_are_recorded_the_same_way(tmp_path):
    model = tiny()
    x, ids, lab = toy(P=3)
    cfg = SamplerConfig(K=4, sigma=0.5, D=3, noise="z")
    plain = sample(model, x, ids, cfg, labels=lab, seed=7, dtype="fp32")
    rec = record(model, x, ids, cfg, labels=lab, seed=7, max_rows=5, out=tmp_path / "rec", dtype="fp32",
                 full_rows=1)
    assert rec.meta["rows"] == 12 and rec.meta["K"] == 4 and rec["q_halt"].shape == (12, 3)
    np.testing.assert_array_equal(rec["q_halt"][:, -1].reshape(3, 4), plain.q[:, 0])
    d = rec["dist_to_first"].reshape(3, 4, 3)
    assert (d[:, 0] == 0).all() and (d[:, 1:] > 0).all()
    again = load_recording(tmp_path / "rec")
    assert set(again.meta["arrays"]) == {p.stem for p in (tmp_path / "rec").glob("*.npy")}
    np.testing.assert_array_equal(again["pred"], rec["pred"])
    assert not list(tmp_path.glob(".rec.*"))  # written beside and renamed into place


# --- sparse autoencoder -----------------------------------------------------------------------------------
def test_sae_reconstructs_sparse_data_and_finds_when_features_settle():
    rng = np.random.default_rng(0)
    atoms = rng.normal(size=(24, 12))
    codes = np.zeros((4000, 24))
    for i in range(4000):
        codes[i, rng.choice(24, 2, replace=False)] = rng.uniform(1, 2, 2)
    sae, st = train_sae(codes @ atoms, SAEConfig(features=48, k=4, steps=600, batch=256, lr=3e-3))
    assert st["r2"] > 0.85 and st["l0"] <= 4 and st["features"] == 48
    _, st1 = train_sae(codes @ atoms, SAEConfig(features=48, l1=1e-3, steps=100, batch=256))
    assert st1["k"] is None and np.isfinite(st1["r2"])
    # latent trajectories: row 0 settles on one pattern at step 3; row 1 alternates between two
    z = np.zeros((2, 8, 5, 12), np.float32)
    seq0 = [1, 2, 3, 3, 3, 3, 3, 3]
    for t in range(8):
        z[0, t] = (codes[seq0[t] * 5:(seq0[t] + 1) * 5] @ atoms)
        z[1, t] = (codes[(10 + t % 2) * 5:(11 + t % 2) * 5] @ atoms)
    fd = feature_dynamics(sae, z, tail=4, max_lag=4)
    assert fd["mean"].shape == (2, 8, 48)
    assert fd["settle"][0] == 3 and fd["overlap"][0, 2:].min() == 1.0
    assert fd["kind"].tolist() == [0, 1] and fd["period"][1] == 2


def test_verdict_follows_the_numbers():
    def r(fixed, cycle, neither, lam):
        return {"attractors": {"by_mode": {"failure": {"n": fixed + cycle + neither, "fixed": fixed, "cycle": cycle,
                                                       "neither": neither}}},
                "lyapunov": {"lambda": {"failure": {"n": 1, "median": lam}}}}
    assert verdict(r(8, 1, 1, -0.4)).startswith("Failures settle into attractors: 9 of 10")
    assert verdict(r(1, 0, 9, 0.3)).startswith("Failures wander: 1 of 10")
    assert verdict(r(8, 0, 2, 0.3)).startswith("Mixed")
    assert "no failures" in verdict(r(0, 0, 0, 0.0))


# --- the command ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("analyze")
    data = make_sort_dataset(d / "sort", n_train=8, n_test=24)
    model = tiny()
    save_checkpoint(d / "run", model.state_dict(), {"model": asdict(model.cfg)})
    return d / "run", data, d


def test_analyze_writes_a_report(run, capsys):
    ckpt, data, d = run
    out = d / "report"
    code = main(["analyze", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(out), "--limit", "12",
                 "--K", "2", "--sae-steps", "20", "--full-rows", "6", "--latent-steps", "--quiet",
                 "--record-dir", str(d / "rec")])
    assert code == 0, capsys.readouterr().err
    r = json.loads((out / "report.json").read_text())
    assert r["puzzles"] == 12 and r["D"] == 8 and len(r["accuracy"]["exact_by_step"]) == 8
    assert sum(r["modes"]["counts"].values()) == 12
    assert {"attractors", "plateaus", "lyapunov", "sae", "interventions", "findings", "command"} <= set(r)
    assert r["interventions"]["failures"] == r["modes"]["counts"]["failure"]
    for f in r["figures"]:
        assert (out / f).stat().st_size > 1000
    assert {"steps.png", "lyapunov.png", "attractors.png", "landscape_across.png"} <= set(r["figures"])
    md = (out / "report.md").read_text()
    assert "## Findings" in md and all(f"({f})" in md for f in r["figures"])
    rec, full = load_recording(d / "rec" / "deterministic"), load_recording(d / "rec" / "full")
    assert rec["q_halt"].shape == (12, 8) and full["z_full"].shape[:2] == (6, 8)
    sel = np.array(full.meta["index"])  # the same deterministic trajectories, run again with full states
    np.testing.assert_allclose(full["q_halt"], rec["q_halt"][sel], atol=1e-4)
    assert "report:" in capsys.readouterr().out
    # an existing report is kept unless --overwrite
    code = main(["analyze", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(out), "--quiet"])
    assert code == 2 and "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("extra, words", [
    (["--K", "0"], "--K must be >= 1"),
    (["--tol", "2"], "--tol"),
    (["--sigma", "nan"], "--sigma"),
    (["--split", "nope"], "no split 'nope'"),
])
def test_analyze_refuses_bad_numbers(run, capsys, tmp_path, extra, words):
    ckpt, data, _ = run
    code = main(["analyze", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(tmp_path / "r"),
                 "--quiet", *extra])
    err = capsys.readouterr().err
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1


def test_analyze_refuses_missing_checkpoint_and_mismatched_data(run, capsys, tmp_path):
    ckpt, _, _ = run
    other = make_sort_dataset(tmp_path / "wide", n_train=4, n_test=4, seq_len=5)
    for argv, words in ((["--checkpoint", str(tmp_path / "none"), "--data", str(other)], "no checkpoint"),
                        (["--checkpoint", str(ckpt), "--data", str(other)], "does not fit the model")):
        code = main(["analyze", *argv, "--out", str(tmp_path / "r"), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
