"""Fixed-point solvers and the gradients around them: the TRM-DEQ variant (`ModelConfig.solver`), after
Attractor Models (arXiv 2605.12466) and deep equilibrium models (Bai et al. 2019). docs/fixed-point.md has the
equations and what the tests prove.

A solve finds z* = g(z*) for a batch of states (B, ...). g is any function of z alone (TRM: z -> f(z + y + x),
with y, x and the weights closed over). Solvers:
- `fpi`: z <- g(z).
- `anderson`: type-II Anderson acceleration: the next iterate mixes the last m iterates so that the mixed
  residual is least (regularised least squares), damped by beta.
Both stop when every sample's relative residual ||g(z) - z|| / (||g(z)|| + eps) is below tol (after at least
min_iter iterations) or after max_iter, and return g(z) of the last iterate z, in the input's dtype, with
`SolveStats`. They iterate in float32 (float64 stays float64) with autocast off: a bf16 solve stalls at bf16's
resolution (~1e-2 relative), so a tolerance of 1e-3 could never be met.

`fixed_point` wraps a solve in one of four gradients (`grad`):
- `unroll`: backpropagation through every iteration (memory grows with the iterations; the reference).
- `implicit`: the implicit-function theorem. The output is g(z*) with a graph through that one evaluation; on
  the way back the incoming gradient v is replaced by the solution of u = v + J^T u (J = dg/dz at z*), found by
  the same solver with vector-Jacobian products through that one graph. Memory: one g, whatever the iterations.
- `neumann`: the same output, the gradient through the one step at z* as it is: u = v, the first term of the
  Neumann series u = sum_k (J^T)^k v (the 1-step / Jacobian-free gradient, Fung et al. 2022).
- `phantom`: k steps of g with a graph from the detached fixed point (Geng et al. 2021, damping 1).
Whichever gradient, the forward values are the same with and without autograd recording (evaluation = training).

The model calls this module only when ModelConfig.solver is fpi or anderson: with solver "unroll" (the default)
nothing here runs, and TRM's recursion, values and gradients are what they were, bit for bit
(tests/test_reference.py and tests/test_family.py pin them).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

SOLVERS = ("fpi", "anderson")
FP_GRADS = ("implicit", "neumann", "phantom", "unroll")
Map = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class SolveStats:
    iterations: int        # evaluations of g
    residual_max: float    # relative residual of the last iterate, the batch's worst sample
    residual_mean: float   # ... its mean over the batch
    converged: bool        # residual_max < tol
    history: tuple = ()    # (mean, max) relative residual over the batch after each iteration, when asked


def _wide(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _full_precision(z: torch.Tensor):
    return torch.autocast(z.device.type, enabled=False)


def relative_residual(gz: torch.Tensor, z: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """||g(z) - z|| / (||g(z)|| + eps) per sample: (B,)."""
    return (gz - z).flatten(1).norm(dim=1) / (gz.flatten(1).norm(dim=1) + eps)


def _iterate(g: Map, z0: torch.Tensor, step, *, max_iter: int, min_iter: int, tol: float,
             eps: float, history: bool = False) -> tuple[torch.Tensor, SolveStats]:
    """The loop both solvers share: evaluate g, test the residual, `step(z, g(z), g(z) - z)` to the next z."""
    if max_iter < 1 or not 0 <= min_iter <= max_iter:
        raise ValueError(f"a solve needs max_iter >= 1 and 0 <= min_iter <= max_iter, not {max_iter}, {min_iter}")
    hist = []  # only when asked (trm analyze): training solves skip the per-iteration reductions
    with _full_precision(z0):
        z = z0.to(_wide(z0.dtype))
        for k in range(max_iter):
            gz = g(z).to(z.dtype)
            f = gz - z
            res = f.flatten(1).norm(dim=1) / (gz.flatten(1).norm(dim=1) + eps)
            if history:
                hist.append(torch.stack([res.mean(), res.max()]).detach())
            if k + 1 == max_iter or (k + 1 >= min_iter and tol > 0 and bool(res.max() < tol)):
                break
            z = step(z, gz, f)
    res = res.detach()
    worst = float(res.max())
    kept = tuple(map(tuple, torch.stack(hist).tolist())) if hist else ()  # one device sync for the whole solve
    return gz.to(z0.dtype), SolveStats(k + 1, worst, float(res.mean()), worst < tol, kept)


def fpi(g: Map, z0: torch.Tensor, *, max_iter: int = 16, min_iter: int = 0, tol: float = 1e-3,
        eps: float = 1e-8, history: bool = False) -> tuple[torch.Tensor, SolveStats]:
    """Plain fixed-point iteration z <- g(z): with tol 0, g applied max_iter times."""
    return _iterate(g, z0, lambda z, gz, f: gz, max_iter=max_iter, min_iter=min_iter, tol=tol, eps=eps,
                    history=history)


def anderson(g: Map, z0: torch.Tensor, *, m: int = 5, beta: float = 1.0, lam: float = 1e-4, max_iter: int = 16,
             min_iter: int = 0, tol: float = 1e-3, eps: float = 1e-8,
             history: bool = False) -> tuple[torch.Tensor, SolveStats]:
    """Type-II Anderson acceleration, per sample. With the last n <= m iterates z_i and residuals
    f_i = g(z_i) - z_i, the weights alpha (summing to 1) minimise ||sum_i alpha_i f_i||^2 + lam' ||alpha||^2, and
    the next iterate is sum_i alpha_i (z_i + beta f_i) (beta 1: the mix of the g(z_i)). The minimiser is
    alpha = a / sum(a) with (H + lam' I) a = 1, H_ij = <f_i, f_j>. lam' = lam x the mean of H's diagonal: a
    regulariser relative to the residuals, which would otherwise dominate as they shrink and stall the solve."""
    zs: list[torch.Tensor] = []
    fs: list[torch.Tensor] = []

    def step(z, gz, f):
        zs.append(z.flatten(1)); fs.append(f.flatten(1))
        if len(zs) > m:
            del zs[0], fs[0]
        Z, F = torch.stack(zs, 1), torch.stack(fs, 1)                    # (B, n, N)
        H = F @ F.transpose(1, 2)                                        # (B, n, n)
        n = H.shape[-1]
        reg = lam * H.diagonal(dim1=1, dim2=2).mean(-1) + torch.finfo(H.dtype).tiny ** 0.5
        a = torch.linalg.solve(H + reg[:, None, None] * torch.eye(n, dtype=H.dtype, device=H.device),
                               torch.ones_like(H[..., :1]))               # (B, n, 1)
        alpha = (a / a.sum(1, keepdim=True)).transpose(1, 2)             # (B, 1, n)
        return (alpha @ (Z + beta * F)).view_as(z)

    return _iterate(g, z0, step, max_iter=max_iter, min_iter=min_iter, tol=tol, eps=eps, history=history)


def phantom(g: Map, z: torch.Tensor, k: int) -> torch.Tensor:
    """k steps of g from z, in the solvers' precision. From the detached fixed point: the phantom gradient. From
    the initial state with k = max_iter: exactly `fpi` with tol 0, graph and all."""
    with _full_precision(z):
        h = z.to(_wide(z.dtype))
        for _ in range(k):
            h = g(h).to(h.dtype)
    return h.to(z.dtype)


def fixed_point(g: Map, z0: torch.Tensor, *, solver: str = "anderson", grad: str = "implicit", max_iter: int = 16,
                min_iter: int = 0, tol: float = 1e-3, m: int = 5, beta: float = 1.0, lam: float = 1e-4,
                phantom_k: int = 2, eps: float = 1e-8, history: bool = False,
                on_backward: Callable[[SolveStats], None] | None = None) -> tuple[torch.Tensor, SolveStats]:
    """z* = g(z*) from z0 with the gradient `grad` (module docstring). Returns (z, the forward solve's stats), z in
    z0's dtype: z* itself for unroll, g(z*) for implicit and neumann, g^phantom_k(z*) for phantom.
    `on_backward` receives the stats of the implicit gradient's backward solve; `history` keeps the forward
    solve's residual after every iteration in its stats."""
    if solver not in SOLVERS or grad not in FP_GRADS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)} and grad one of {', '.join(FP_GRADS)}")
    kw = dict(max_iter=max_iter, min_iter=min_iter, tol=tol, eps=eps)
    solve = (lambda h, s0, **o: fpi(h, s0, **kw, **o)) if solver == "fpi" else \
        (lambda h, s0, **o: anderson(h, s0, m=m, beta=beta, lam=lam, **kw, **o))
    with _full_precision(z0):
        zw = z0.to(_wide(z0.dtype))
        if grad == "unroll":
            z, stats = solve(g, zw, history=history)
            return z.to(z0.dtype), stats
        with torch.no_grad():
            z_star, stats = solve(g, zw, history=history)
        if grad == "phantom":
            return phantom(g, z_star, phantom_k).to(z0.dtype), stats
        implicit = grad == "implicit" and torch.is_grad_enabled()
        zr = z_star.detach().requires_grad_(implicit)
        out = g(zr).to(zr.dtype)
        if implicit and out.requires_grad:
            out = _implicit_backward(out, zr, solve, on_backward)
    return out.to(z0.dtype), stats


def _implicit_backward(out: torch.Tensor, zr: torch.Tensor, solve, on_backward) -> torch.Tensor:
    """`out` = g(zr), as a view whose incoming gradient v is replaced by u = v + J^T u. The hook sits on the view,
    not on `out`, so that the vector-Jacobian products through out's graph do not run it again."""
    view = out.view_as(out)

    def hook(v: torch.Tensor | None) -> torch.Tensor | None:
        if v is None:  # no gradient arrives (an undefined one): nothing to solve for
            return None

        def h(u):
            return v + torch.autograd.grad(out, zr, u, retain_graph=True)[0]
        with torch.no_grad():
            u, stats = solve(h, torch.zeros_like(v))
        if on_backward is not None:
            on_backward(stats)
        return u

    view.register_hook(hook)
    return view


def jacobian_penalty(g: Map, z: torch.Tensor) -> torch.Tensor:
    """Hutchinson's estimate of ||J||_F^2 / N at z (J = dg/dz, N = a sample's elements) with one Gaussian vector e:
    E ||e^T J||^2 = ||J||_F^2 (Bai et al. 2021, Jacobian regularisation), mean over the batch; a scalar with a
    graph (through one more evaluation of g, at the detached z) for the loss to add."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    # the fused attention kernels have no double backward; the math one is plain differentiable ops
    with _full_precision(z), sdpa_kernel([SDPBackend.MATH]):
        zr = z.detach().to(_wide(z.dtype)).requires_grad_(True)
        out = g(zr)
        (vjp,) = torch.autograd.grad(out, zr, torch.randn_like(out), create_graph=True)
    return vjp.flatten(1).square().sum(1).mean() / vjp[0].numel()


class SolveLog:
    """The stats of the solves since the last `summary()`: forward solves, and the implicit gradient's backward
    solves apart. Keeps the last `keep` of each, so a run that never asks holds a bounded list."""

    def __init__(self, keep: int = 100_000):
        self.forward: deque[SolveStats] = deque(maxlen=keep)
        self.backward: deque[SolveStats] = deque(maxlen=keep)

    def add(self, stats: SolveStats, backward: bool = False) -> None:
        (self.backward if backward else self.forward).append(stats)

    def summary(self) -> dict:
        """Flat figures (for a metrics line): solves; iterations mean, p50, p90, max; relative residual (each
        solve's worst sample) mean, p90, max; the fraction converged. Backward solves with the prefix bwd_.
        Clears the log."""
        out = _summary(self.forward, "")
        if self.backward:
            out.update(_summary(self.backward, "bwd_"))
        self.forward.clear()
        self.backward.clear()
        return out


def _summary(stats, prefix: str) -> dict:
    if not stats:
        return {f"{prefix}solves": 0}
    it = np.array([s.iterations for s in stats], dtype=np.float64)
    res = np.array([s.residual_max for s in stats], dtype=np.float64)
    figures = {"solves": len(stats), "iter_mean": it.mean(), "iter_p50": np.quantile(it, 0.5),
               "iter_p90": np.quantile(it, 0.9), "iter_max": it.max(), "res_mean": res.mean(),
               "res_p90": np.quantile(res, 0.9), "res_max": res.max(),
               "converged": float(np.mean([s.converged for s in stats]))}
    return {f"{prefix}{k}": v if isinstance(v, int) else float(v) for k, v in figures.items()}
