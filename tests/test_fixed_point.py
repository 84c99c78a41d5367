"""The fixed-point variant (model/fixed_point.py): the solvers reach known solutions, each gradient is the one
it claims to be, the implicit gradient's memory does not grow with the iterations, and a TRM with a solver trains,
evaluates and reports its solves while solver unroll leaves the model as it was."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from trm.evaluate import evaluate, summary_line
from trm.model import TRM, ModelConfig
from trm.model.fixed_point import anderson, fixed_point, fpi, jacobian_penalty, phantom
from trm.presets import get_preset
from trm.train import Trainer, TrainConfig

D64 = torch.float64


def linear_problem(B=3, N=8, norm=0.9, seed=0):
    """z = z A^T + b with A = norm x a rotation (every eigenvalue of modulus norm: a slow contraction for plain
    iteration): z* = (I - A)^{-1} b per sample."""
    g = torch.Generator().manual_seed(seed)
    A = norm * torch.linalg.qr(torch.randn(N, N, generator=g, dtype=D64))[0]
    b = torch.randn(B, N, generator=g, dtype=D64)
    return A, b


def test_fpi_and_anderson_reach_the_solution_of_a_linear_contraction():
    A, b = linear_problem()
    want = torch.linalg.solve(torch.eye(8, dtype=D64) - A, b.T).T
    got = {}
    for name, solver in (("fpi", fpi), ("anderson", anderson), ("anderson-9", lambda *a, **k: anderson(*a, m=9,
                                                                                                   lam=0, **k))):
        z, stats = solver(lambda z: z @ A.T + b, torch.zeros_like(b), max_iter=500, tol=1e-11)
        assert z.dtype == D64 and stats.converged and stats.residual_max < 1e-11
        torch.testing.assert_close(z, want, atol=1e-9, rtol=0)
        got[name] = stats.iterations
    # 0.9^k < 1e-11 takes ~240 plain iterations; with a memory past N = 8, type-II Anderson on a linear map is
    # GMRES, exact after N + 1 residuals (measured: 239, 159 with m = 5, 10 with m = 9)
    assert got["fpi"] > 200 and got["anderson"] < got["fpi"] and got["anderson-9"] <= 11


def test_the_residual_is_judged_per_sample_and_the_iteration_limits_hold():
    A, b = linear_problem(B=2)
    b[0] = 0  # sample 0 starts at its fixed point (z = 0): residual 0; sample 1 needs many iterations
    g = lambda z: z @ A.T + b  # noqa: E731
    _, stats = fpi(g, torch.zeros_like(b), max_iter=500, tol=1e-6)
    assert stats.iterations > 10 and stats.residual_max < 1e-6 and stats.residual_mean < stats.residual_max
    _, easy = fpi(lambda z: z @ A.T + b[:1], torch.zeros(1, 8, dtype=D64), max_iter=500, tol=1e-6)  # sample 0
    assert easy.iterations == 1 and easy.residual_max == 0
    _, capped = anderson(g, torch.zeros_like(b), max_iter=3, tol=1e-12)
    assert capped.iterations == 3 and not capped.converged
    _, floor = fpi(lambda z: z @ A.T, torch.zeros_like(b), min_iter=4, tol=1e-3)  # converged at once, but 4
    assert floor.iterations == 4
    _, always = fpi(g, torch.zeros_like(b), max_iter=7, tol=0)  # tol 0: never stops early
    assert always.iterations == 7
    with pytest.raises(ValueError, match="max_iter"):
        fpi(g, b, max_iter=0)


def test_solves_iterate_in_float32_under_bf16_autocast():
    seen = []
    W = torch.randn(8, 8) * 0.1

    def g(z):
        seen.append((z.dtype, torch.is_autocast_enabled("cpu")))
        return torch.tanh(z @ W.T + 1)
    z0 = torch.zeros(2, 8, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z, stats = fixed_point(g, z0, solver="anderson", grad="implicit", max_iter=20, tol=1e-5)
    assert set(seen) == {(torch.float32, False)} and z.dtype == torch.bfloat16
    assert stats.converged  # bf16 iterates could not get below ~1e-2


def test_the_implicit_gradient_of_a_linear_fixed_point_is_the_analytic_one():
    A, b = linear_problem()
    A.requires_grad_(True); b.requires_grad_(True)
    c = torch.randn(3, 8, dtype=D64)
    for solver in ("fpi", "anderson"):
        z, _ = fixed_point(lambda z: z @ A.T + b, torch.zeros_like(b), solver=solver, grad="implicit", max_iter=300,
                           tol=1e-12)
        dA, db = torch.autograd.grad((c * z).sum(), (A, b))
        # z* = (I - A)^-1 b: dL/db = (I - A)^-T c, dL/dA = sum over samples of dL/db z*^T
        I = torch.eye(8, dtype=D64)
        want_db = torch.linalg.solve(I - A.T, c.T).T.detach()
        z_star = torch.linalg.solve(I - A, b.T).T.detach()
        torch.testing.assert_close(db, want_db, atol=1e-9, rtol=1e-9)
        torch.testing.assert_close(dA, want_db.T @ z_star, atol=1e-9, rtol=1e-9)  # entries ~100


def tanh_map(W, U, x):
    return lambda z: torch.tanh(z @ W.T + x @ U.T)


def test_the_implicit_gradient_matches_finite_differences_on_a_nonlinear_contraction():
    g = torch.Generator().manual_seed(0)
    W = (0.3 * torch.randn(6, 6, generator=g, dtype=D64) / 6 ** 0.5).requires_grad_(True)  # ||W|| < 1
    U = torch.randn(6, 4, generator=g, dtype=D64).requires_grad_(True)
    x = torch.randn(2, 4, generator=g, dtype=D64).requires_grad_(True)

    def solve(W, U, x, grad="implicit"):  # tol 0: a fixed number of iterations, a smooth function of the inputs
        z, _ = fixed_point(tanh_map(W, U, x), torch.zeros(2, 6, dtype=D64), solver="anderson", grad=grad,
                           max_iter=60, tol=0)
        return z
    assert torch.autograd.gradcheck(solve, (W, U, x), eps=1e-6, atol=1e-7)
    # the one-step gradient is an approximation: it must differ, or the check above proves nothing about u = v + J^T u
    v = torch.randn(2, 6, dtype=D64)
    exact = torch.autograd.grad((solve(W, U, x) * v).sum(), x)[0]
    one_step = torch.autograd.grad((solve(W, U, x, "neumann") * v).sum(), x)[0]
    assert (exact - one_step).abs().max() > 1e-3


def test_neumann_is_the_gradient_through_one_step_at_the_fixed_point():
    W, U = 0.2 * torch.randn(6, 6, dtype=D64), torch.randn(6, 4, dtype=D64)
    x = torch.randn(2, 4, dtype=D64, requires_grad=True)
    f = tanh_map(W, U, x)
    z, _ = fixed_point(f, torch.zeros(2, 6, dtype=D64), solver="fpi", grad="neumann", max_iter=80, tol=1e-12)
    with torch.no_grad():
        z_star, _ = fpi(f, torch.zeros(2, 6, dtype=D64), max_iter=80, tol=1e-12)
    manual = f(z_star)
    assert torch.equal(z, manual)
    assert torch.equal(torch.autograd.grad(z.sum(), x)[0], torch.autograd.grad(manual.sum(), x)[0])


def test_phantom_with_k_max_iter_from_the_initial_state_is_backprop_through_the_iterations():
    W = (0.3 * torch.randn(6, 6, dtype=D64)).requires_grad_(True)
    U, x = torch.randn(6, 4, dtype=D64), torch.randn(2, 4, dtype=D64)
    z0 = torch.randn(2, 6, dtype=D64)
    f = tanh_map(W, U, x)
    unrolled, _ = fpi(f, z0, max_iter=9, tol=0)
    ph = phantom(f, z0, 9)
    assert torch.equal(ph, unrolled)
    assert torch.equal(torch.autograd.grad(ph.sum(), W)[0], torch.autograd.grad(unrolled.sum(), W)[0])
    # the solver's phantom gradient is those k steps from the detached fixed point
    z, _ = fixed_point(f, z0, solver="fpi", grad="phantom", phantom_k=3, max_iter=5, tol=0)
    start, _ = fpi(f, z0, max_iter=5, tol=0)
    assert torch.equal(z, phantom(f, start.detach(), 3))


def test_unroll_through_the_solve_is_plain_backprop():
    W = (0.3 * torch.randn(6, 6, dtype=D64)).requires_grad_(True)
    f = tanh_map(W, torch.randn(6, 4, dtype=D64), torch.randn(2, 4, dtype=D64))
    z, _ = fixed_point(f, torch.zeros(2, 6, dtype=D64), solver="fpi", grad="unroll", max_iter=6, tol=0)
    h = torch.zeros(2, 6, dtype=D64)
    for _ in range(6):
        h = f(h)
    assert torch.equal(z, h) and torch.equal(torch.autograd.grad(z.sum(), W)[0], torch.autograd.grad(h.sum(), W)[0])


def test_the_jacobian_penalty_estimates_the_squared_frobenius_norm():
    A, b = linear_problem(B=16)
    A = (A @ torch.diag(torch.arange(1.0, 9.0, dtype=D64))).requires_grad_(True)  # J^T J not a multiple of I
    torch.manual_seed(0)
    draws = torch.stack([jacobian_penalty(lambda z: z @ A.T + b, b) for _ in range(400)])
    want = torch.linalg.matrix_norm(A.detach()).square() / 8  # ||J||_F^2 / N, J = A
    assert abs(draws.mean().item() / want.item() - 1) < 0.05
    assert torch.autograd.grad(draws[0], A)[0].abs().sum() > 0  # a penalty the loss can train against


# --- the model ------------------------------------------------------------------------------------------
BASE = dict(vocab_size=7, seq_len=9, num_puzzle_ids=3, d=16, heads=2, L=2, n=3, T=2, N_sup=3, puzzle_emb_len=1,
            puzzle_emb_dim=16, mixer="mlp", pos="none")
DEQ = dict(solver="anderson", fp_grad="implicit", max_iter=6, tol=1e-3)


def tiny(**kw):
    torch.manual_seed(0)
    return TRM(ModelConfig(**{**BASE, **kw}))


def step(model, train=True):
    """One supervision step on a fixed batch: (logits, the gradient of one weight after a backward)."""
    g = torch.Generator().manual_seed(1)
    inputs, ids = torch.randint(1, 7, (3, 9), generator=g), torch.randint(0, 3, (3,), generator=g)
    model.train(train)
    _, out = model(model.initial_carry(3), inputs, ids)
    if not train:
        return out.logits, None
    out.logits.square().mean().backward()
    return out.logits.detach(), model.net[0].mlp.down.weight.grad


def test_solver_unroll_ignores_the_solver_fields():
    ref = step(tiny())
    other = step(tiny(max_iter=3, tol=0.5, anderson_m=2, fp_grad="phantom", phantom_k=1))
    assert torch.equal(ref[0], other[0]) and torch.equal(ref[1], other[1])


def test_fpi_unrolled_through_n_iterations_is_the_trm_recursion():
    # the fixed-point variant is the same recursion with the n z-updates handed to a solver: value and gradient
    ref = step(tiny(n=3))
    fp = step(tiny(n=3, solver="fpi", fp_grad="unroll", max_iter=3, tol=0))
    assert torch.equal(ref[0], fp[0]) and torch.equal(ref[1], fp[1])


def saved_tensor_count(model) -> int:
    n = [0]

    def pack(t):
        n[0] += 1
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step(model)
    return n[0]


def test_implicit_gradient_memory_does_not_grow_with_the_iterations():
    counts = {(grad, it): saved_tensor_count(tiny(**{**DEQ, "fp_grad": grad, "max_iter": it, "tol": 0}))
              for grad in ("implicit", "unroll") for it in (4, 32)}
    assert counts["implicit", 4] == counts["implicit", 32]
    assert counts["unroll", 32] > 2 * counts["unroll", 4] > 2 * counts["implicit", 4]  # the count can tell


def test_solver_forward_is_the_same_with_and_without_gradients():
    for grad in ("implicit", "phantom", "neumann"):  # (one more step of f would move the values by ~1e-1)
        train, _ = step(tiny(**{**DEQ, "fp_grad": grad}))
        evaluated, _ = step(tiny(**{**DEQ, "fp_grad": grad}), train=False)
        torch.testing.assert_close(train, evaluated, atol=1e-5, rtol=0)


def test_the_jacobian_penalty_is_popped_once_per_forward():
    m = tiny(**DEQ, jac_penalty=0.5).train()
    _, out = m(m.initial_carry(3), torch.ones(3, 9, dtype=torch.long), torch.zeros(3, dtype=torch.long))
    jac = m.pop_jacobian_loss()
    assert jac.dim() == 0 and jac.requires_grad and torch.isfinite(jac) and jac > 0
    (out.logits.square().mean() + jac).backward()  # as the training loop adds it
    assert m.net[0].mlp.down.weight.grad is not None
    assert m.pop_jacobian_loss() is None  # popped
    with torch.no_grad():
        step(m, train=False)
    assert m.pop_jacobian_loss() is None  # no graph, no penalty
    assert tiny(**DEQ).pop_jacobian_loss() is None  # off


def test_a_deq_trm_trains_evaluates_and_reports_its_solves(sort_data, tmp_path):
    cfg = TrainConfig(data=str(sort_data), out=str(tmp_path / "run"), batch_size=8, steps=2, lr=1e-3,
                      warmup_steps=1, optimizer="adamw", loss="softmax", ema=0, eval_every=0, checkpoint_every=2,
                      log_every=1, dtype="fp32")
    t = Trainer(ModelConfig(**{**BASE, **DEQ, "vocab_size": 6, "seq_len": 8}), cfg, progress=False)
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    t.train_step()
    t.train_step()
    assert any(not torch.equal(before[k], v) for k, v in t.model.state_dict().items() if k.startswith("net."))
    s = t.model.solver_stats()
    # 2 steps x T = 2 recursions; one backward solve per step (the last recursion's)
    assert s["solves"] == 4 and s["bwd_solves"] == 2
    assert 1 <= s["iter_p50"] <= s["iter_max"] <= 6 and 0 <= s["res_mean"] <= s["res_max"] and 0 <= s["converged"] <= 1
    assert t.model.solver_stats() == {"solves": 0}  # taken
    t.train_step()  # a training solve before the evaluation stays training's
    m = evaluate(t.model, t.test_split, D=2, batch_size=32, dtype="fp32")
    assert m["solver"]["solves"] == 2 * 2 * 2  # 64 rows in 2 batches x D = 2 steps x T = 2
    assert "solver: 8 solves, iterations mean" in summary_line(m)
    assert t.model.solver_stats()["solves"] == 2
    assert "solver" not in evaluate(tiny(**{**BASE, "vocab_size": 6, "seq_len": 8}), t.test_split, D=1,
                                    dtype="fp32")


@pytest.mark.parametrize("kw,msg", [
    (dict(solver="newton"), "solver must be one of unroll, fpi, anderson"),
    (dict(fp_grad="exact"), "fp_grad must be one of"),
    (dict(solver="anderson", recursion="singlez"), "recursion trm"),
    (dict(max_iter=0), "max_iter must be >= 1"),
    (dict(min_iter=20), r"min_iter must be in \[0, max_iter=16\]"),
    (dict(tol=-1.0), "tol and jac_penalty"),
    (dict(anderson_beta=0.0), "anderson_beta"),
    (dict(jac_penalty=0.1), "jac_penalty penalises a fixed-point solve: it needs solver"),
])
def test_bad_solver_flags_are_one_line_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        ModelConfig(**{**BASE, **kw}).validate()


def test_a_solver_model_refuses_per_call_recording():
    from trm.analysis.record import record
    from trm.sampling import SamplerConfig
    m = tiny(**DEQ).eval()
    inputs, ids = np.ones((2, 9), np.int64), np.zeros(2, np.int64)
    with pytest.raises(ValueError, match="varying number of calls"):
        record(m, inputs, ids, SamplerConfig(K=1, D=2), latent=True, dtype="fp32")
    rec = record(m, inputs, ids, SamplerConfig(K=1, D=2), dtype="fp32")  # per-step recording works
    assert rec["y_mean"].shape == (2, 2, 16)


def test_deq_presets_are_their_bases_with_the_solver(cli):
    small, base = get_preset("sudoku6-deq-cpu"), get_preset("sudoku6-cpu")
    assert (small.model.solver, small.model.fp_grad, small.model.max_iter) == ("anderson", "implicit", 8)
    assert replace(small.model, solver="unroll", max_iter=16) == base.model
    assert small.train == base.train and small.data == base.data
    big, mlp = get_preset("sudoku-extreme-deq"), get_preset("sudoku-extreme-mlp")
    assert big.model.solver == "anderson" and (big.model.d, big.model.mixer, big.model.n) == (mlp.model.d, "mlp", 6)
    code, out, _ = cli("params", "--preset", "sudoku6-deq-cpu")
    assert code == 0 and out.split()[-1] == cli("params", "--preset", "sudoku6-cpu")[1].split()[-1]  # no new weights
    code, _, err = cli("params", "--preset", "sudoku6-deq-cpu", "--fp_grad", "exact")
    assert code == 2 and err.count("\n") == 1 and "fp_grad must be one of implicit" in err


def test_the_jacobian_penalty_reaches_the_training_loss(sort_data, tmp_path):
    def one_step(weight):
        model = ModelConfig(d=16, heads=2, mixer="mlp", pos="none", n=2, T=1, N_sup=2, puzzle_emb_len=1,
                            puzzle_emb_dim=16, solver="anderson", max_iter=4, jac_penalty=weight)
        cfg = TrainConfig(data=str(sort_data), out=str(tmp_path / f"run{weight}"), batch_size=8, steps=1, lr=1e-2,
                          warmup_steps=0, optimizer="adamw", loss="softmax", ema=0, eval_every=0, dtype="fp32")
        t = Trainer(model, cfg, progress=False)
        t.train_step()
        assert t.model.pop_jacobian_loss() is None  # taken by the step
        return {k: v.clone() for k, v in t.model.state_dict().items()}

    off, on = one_step(0.0), one_step(10.0)
    assert any(not torch.equal(off[k], on[k]) for k in off)


def test_training_records_carry_the_solves(sort_data, tmp_path):
    import json

    cfg = TrainConfig(data=str(sort_data), out=str(tmp_path / "run"), batch_size=8, steps=2, lr=1e-3,
                      warmup_steps=1, optimizer="adamw", loss="softmax", ema=0, eval_every=0, checkpoint_every=2,
                      log_every=1, dtype="fp32")
    Trainer(ModelConfig(**{**BASE, **DEQ, "vocab_size": 6, "seq_len": 8}), cfg, progress=False).fit()
    logs = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logs = [r for r in logs if "loss" in r]
    assert logs and all(r["solver_solves"] == 2 for r in logs)  # one step x T = 2 recursions per record


def test_the_iteration_cap_at_test_time(sort_data, tmp_path, cli):
    # the cap is the trained max_iter unless set; k caps as a model built with max_iter k does; 0 drops the solve
    capped = tiny(**{**DEQ, "tol": 0})
    built = tiny(**{**DEQ, "tol": 0, "max_iter": 2})
    capped.test_max_iter = 2
    assert torch.equal(step(capped, train=False)[0], step(built, train=False)[0])
    assert capped.solver_stats()["iter_max"] == 2
    capped.test_max_iter = 0
    dropped = step(capped, train=False)[0]
    assert capped.solver_stats() == {"solves": 0} and not torch.equal(dropped, step(built, train=False)[0])
    # trm eval --max-iter: on a solver checkpoint, recorded; refused for one that iterates n times
    for kw, name in ((DEQ, "deq"), ({}, "trm")):
        cfg = TrainConfig(data=str(sort_data), out=str(tmp_path / name), batch_size=8, steps=1, warmup_steps=1,
                          optimizer="adamw", loss="softmax", ema=0, eval_every=0, log_every=1, dtype="fp32")
        Trainer(ModelConfig(**{**BASE, **kw, "vocab_size": 6, "seq_len": 8}), cfg, progress=False).fit()
    code, out, _ = cli("eval", "--checkpoint", tmp_path / "deq", "--data", sort_data, "--max-iter", "0", "--json")
    assert code == 0 and json.loads(out)["max_iter"] == 0 and json.loads(out)["solver"] == {"solves": 0}
    code, _, err = cli("eval", "--checkpoint", tmp_path / "trm", "--data", sort_data, "--max-iter", "2")
    assert code == 2 and "solver unroll" in err
    code, _, err = cli("eval", "--checkpoint", tmp_path / "deq", "--data", sort_data, "--max-iter", "-1")
    assert code == 2 and "--max-iter must be >= 0" in err


def test_residual_curves_are_the_solves_history(sort_data, tmp_path, cli):
    from trm.analysis.solver import residual_curves
    model = tiny(**{**DEQ, "T": 1, "tol": 0, "max_iter": 5}).eval()
    g = torch.Generator().manual_seed(1)
    inputs, ids = torch.randint(1, 7, (4, 9), generator=g), torch.randint(0, 3, (4,), generator=g)
    with torch.no_grad():
        model(model.initial_carry(4), inputs, ids)
    trained = model._solves.forward[-1]
    r = residual_curves(model, inputs.numpy(), ids.numpy(), D=3, iters=12)
    mean, worst = np.array(r["mean_by_step"]), np.array(r["max_by_step"])
    assert mean.shape == worst.shape == (3, 12) and (mean <= worst + 1e-12).all()
    # the first 5 of 12 iterations are the trained solve's, which has the same start (T = 1, step 1)
    assert mean[0, 4] == pytest.approx(trained.residual_mean, rel=1e-5)
    assert r["mean_at_trained_cap_by_step"][0] == pytest.approx(trained.residual_mean, rel=1e-5)
    assert model.test_max_iter is None and model.test_tol is None  # restored
    # trm analyze on a fixed-point checkpoint: the curves in report.json and a figure
    cfg = TrainConfig(data=str(sort_data), out=str(tmp_path / "deq"), batch_size=8, steps=3, warmup_steps=1,
                      optimizer="adamw", loss="softmax", ema=0, eval_every=2, log_every=1, dtype="fp32")
    Trainer(ModelConfig(**{**BASE, **DEQ, "vocab_size": 6, "seq_len": 8}), cfg, progress=False).fit()
    code, out, err = cli("analyze", "--checkpoint", tmp_path / "deq", "--data", sort_data, "--out", tmp_path / "rep",
                         "--limit", "6", "--full-rows", "3", "--sae-steps", "3", "--K", "1", "--max-failures", "2",
                         "--solver-iters", "10", "--solver-rows", "4", "--quiet")
    assert code == 0, err
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert rep["solver"]["rows"] == 4 and len(rep["solver"]["mean_by_step"][0]) == 10
    assert (tmp_path / "rep" / "solver_residual.png").is_file() and "z solve" in rep["findings"]["solver"]
    # ... and residual and iterations over training, read back from the run's metrics.jsonl
    records = [json.loads(line) for line in (tmp_path / "deq" / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in records if "solver_solves" in r]
    evals = [r for r in records if "eval" in r]
    final = json.loads((tmp_path / "deq" / "eval.json").read_text())["solver"]
    tr, ev = rep["solver_training"]["train"], rep["solver_training"]["eval"]
    assert tr["step"] == [r["step"] for r in logged] == [1, 2, 3]
    assert tr["res_mean"] == [r["solver_res_mean"] for r in logged]
    assert tr["iter_mean"] == [r["solver_iter_mean"] for r in logged]
    assert ev["step"] == [r["step"] for r in evals] + [3] and len(evals) >= 1  # the periodic ones, the final
    assert ev["converged"] == [r["eval"]["solver"]["converged"] for r in evals] + [final["converged"]]
    assert ev["res_mean"][-1] == final["res_mean"]
    assert (tmp_path / "rep" / "solver_training.png").is_file()
    assert "Over training" in rep["findings"]["solver_training"]


def test_solver_training_curves_skip_what_is_not_a_solve(tmp_path):
    from trm.analysis.solver import training_curves
    assert training_curves(tmp_path / "missing.jsonl") is None
    m = tmp_path / "metrics.jsonl"
    m.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "eval": {"exact_accuracy": 0.5}}\n')
    assert training_curves(m) is None  # a run that iterates n times logs no solve
    m.write_text('{"step": 1, "solver_solves": 4, "solver_res_mean": 0.5, "solver_iter_mean": 8.0}\n'
                 '{"step": 2, "solver_solves": 4, "solver_res_')  # the last line cut by a killed run
    c = training_curves(m)
    assert c["train"]["step"] == [1] and c["train"]["res_mean"] == [0.5] and c["train"]["bwd_res_mean"] == [None]
    assert c["eval"]["step"] == []


SMALL = ["--d", "16", "--heads", "2", "--T", "1", "--N_sup", "2", "--puzzle_emb_dim", "16", "--batch", "2"]


def test_trm_params_measures_training_memory_against_depth(cli):
    """`trm params --backward-memory`: the constant-memory claim's measurement. Implicit: the same bytes at
    every depth; unrolled through the solve, and TRM's recursion over n, they grow with it."""
    def measure(*flags):
        code, out, err = cli("params", "--preset", "sudoku6-deq-cpu", *SMALL, "--backward-memory", "2,8", "--json",
                             *flags)
        assert code == 0, err
        r = json.loads(out)
        return r, [x["saved_bytes"] for x in r["rows"]]
    r, implicit = measure()
    assert r["depth"] == "max_iter" and r["grad"] == "implicit" and implicit[0] == implicit[1] > 0
    assert r["ratio_last_to_first"] == 1.0
    _, unrolled = measure("--fp_grad", "unroll")
    assert unrolled[1] > 3 * unrolled[0] > 3 * implicit[0] / 2
    code, out, _ = cli("params", "--preset", "sudoku6-cpu", *SMALL, "--backward-memory", "1,4", "--json")
    trm_n = json.loads(out)
    assert code == 0 and trm_n["depth"] == "n" and trm_n["rows"][1]["saved_bytes"] > trm_n["rows"][0]["saved_bytes"]
    code, out, _ = cli("params", "--preset", "sudoku6-deq-cpu", *SMALL, "--backward-memory", "2")
    assert code == 0 and "max_iter    2:" in out and "MB" in out


@pytest.mark.parametrize("argv, words", [
    (["--backward-memory", "0,4"], "depths >= 1"),
    (["--backward-memory", "2,x"], "comma-separated integers"),
    (["--backward-memory", "2", "--batch", "0"], "--batch must be >= 1"),
    (["--json"], "give --backward-memory"),
])
def test_trm_params_refuses_bad_memory_requests_in_one_line(cli, argv, words):
    code, _, err = cli("params", "--preset", "sudoku6-deq-cpu", *argv)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1
