"""A sparse autoencoder on recorded latent vectors (one token's z at one step), and what its features do across
recursion steps: when the set of active features stops changing (the hypothesis is formed, in the attractor
study's words: Efstathiou & Balwani, ICLR 2026 LIT workshop) and whether activations then become periodic.

Two sparsity rules: top-k (default; exactly k features active per vector, no penalty to tune) or an L1 penalty
on the activations (weighted by the decoder norms so shrinking the decoder cannot cheat it). Inputs are centred
and scaled to unit RMS first, so reconstruction R^2 and the L1 coefficient mean the same thing at every width.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..checks import check_range
from .dynamics import classify, lag_distances, step_cosine, true_from


@dataclass
class SAEConfig:
    features: int = 0          # dictionary size (0 = 4 * d)
    k: int = 8                 # active features per vector (top-k)
    l1: float = 0.0            # > 0: an L1 autoencoder with this coefficient instead of top-k
    steps: int = 1500          # Adam steps
    batch: int = 512
    lr: float = 1e-3
    max_samples: int = 65536   # training vectors, a seeded subsample of the recorded ones
    seed: int = 0

    def validate(self) -> None:
        for flag, value, low in (("--sae-features", self.features, 0), ("--sae-k", self.k, 1),
                                 ("--sae-l1", self.l1, 0), ("--sae-steps", self.steps, 1), ("batch", self.batch, 1),
                                 ("max_samples", self.max_samples, 1)):
            check_range(flag, value, ge=low)
        check_range("lr", self.lr, gt=0)


class SparseAutoencoder(nn.Module):
    def __init__(self, d: int, features: int, *, k: int = 8, l1: float = 0.0):
        super().__init__()
        self.k, self.l1 = min(k, features), l1
        self.enc = nn.Linear(d, features)
        self.dec = nn.Parameter(self.enc.weight.detach().clone())  # (features, d): one direction per feature
        self.b_dec = nn.Parameter(torch.zeros(d))
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("scale", torch.ones(()))
        with torch.no_grad():
            self.dec /= self.dec.norm(dim=1, keepdim=True)
            nn.init.zeros_(self.enc.bias)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Raw vectors (N, d) -> feature activations (N, features), >= 0."""
        pre = self.enc(self.normalize(x) - self.b_dec)
        if self.l1 > 0:
            return torch.relu(pre)
        top = pre.topk(self.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Activations -> reconstruction in the normalized space."""
        return codes @ self.dec + self.b_dec

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codes = self.encode(x)
        mse = (self.decode(codes) - self.normalize(x)).square().sum(-1).mean()
        if self.l1 > 0:
            mse = mse + self.l1 * (codes * self.dec.norm(dim=1)).sum(-1).mean()
        return mse, codes


def train_sae(vectors: np.ndarray, cfg: SAEConfig, progress=None) -> tuple[SparseAutoencoder, dict]:
    """Train on vectors (N, d); a held-out tenth gives R^2, the mean active count (L0) and the dead features."""
    cfg.validate()
    x = np.asarray(vectors, np.float32).reshape(-1, np.shape(vectors)[-1])
    if len(x) < 20:
        raise ValueError(f"too few vectors to train a sparse autoencoder ({len(x)})")
    rng = np.random.default_rng(cfg.seed)
    x = x[rng.permutation(len(x))[: cfg.max_samples]]
    n_val = max(len(x) // 10, 10)
    val, train = torch.from_numpy(x[:n_val]), torch.from_numpy(x[n_val:])
    d = x.shape[1]
    torch.manual_seed(cfg.seed)
    sae = SparseAutoencoder(d, cfg.features or 4 * d, k=cfg.k, l1=cfg.l1)
    with torch.no_grad():
        sae.mean.copy_(train.mean(0))
        sae.scale.copy_((train - sae.mean).square().mean().sqrt().clamp(min=1e-8))
    opt = torch.optim.Adam(sae.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(cfg.seed)
    for _ in range(cfg.steps):
        batch = train[torch.randint(len(train), (min(cfg.batch, len(train)),), generator=g)]
        loss, _ = sae.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():  # unit-norm decoder directions: the activations carry the scale
            sae.dec /= sae.dec.norm(dim=1, keepdim=True).clamp(min=1e-8)
        if progress is not None:
            progress.update(1)
    with torch.no_grad():
        codes = sae.encode(val)
        target = sae.normalize(val)
        sse = (sae.decode(codes) - target).square().sum()
        sst = (target - target.mean(0)).square().sum()
    stats = {"r2": float(1 - sse / sst), "l0": float((codes > 0).sum(-1).float().mean()),
             "dead_features": int(((codes > 0).sum(0) == 0).sum()), "features": int(sae.dec.shape[0]),
             "k": cfg.k if cfg.l1 == 0 else None, "l1": cfg.l1, "train_vectors": int(len(train)),
             "held_out_vectors": int(n_val), "steps": cfg.steps}
    return sae, stats


@torch.no_grad()
def feature_dynamics(sae: SparseAutoencoder, z: np.ndarray, *, jaccard: float = 0.9, tol: float = 0.05,
                     tail: int = 4, max_lag: int = 6) -> dict[str, np.ndarray]:
    """Feature activations of full latents z (R, D, tokens, d) across steps.

    mean (R, D, features): activation averaged over tokens; overlap (R, D): mean over tokens of the Jaccard
    similarity between the active sets at step t and at the last step; settle (R,): the first step from which
    overlap >= `jaccard` at every later step; kind/period (R,): fixed / cycle / neither of the mean activation
    trajectory (dynamics.classify with tolerance `tol` relative to its norm); cosine (R,): step_cosine of it."""
    R, D, Lt, _ = z.shape
    F = sae.dec.shape[0]
    mean = np.zeros((R, D, F), np.float32)
    overlap = np.zeros((R, D), np.float32)
    for r in range(R):
        codes = sae.encode(torch.from_numpy(np.asarray(z[r], np.float32)).reshape(D * Lt, -1)).reshape(D, Lt, F)
        mean[r] = codes.mean(1).numpy()
        active = codes > 0
        inter = (active & active[-1:]).sum(-1).float()
        union = (active | active[-1:]).sum(-1).float().clamp(min=1)
        overlap[r] = (inter / union).mean(-1).numpy()
    lag = lag_distances(mean, max_lag)
    norm = np.sqrt(np.square(mean, dtype=np.float64).mean(-1))
    c = classify(lag, norm, tol=tol, tail=tail)
    return {"mean": mean, "overlap": overlap, "settle": true_from(overlap >= jaccard),
            "kind": c["kind"], "period": c["period"], "cosine": step_cosine(lag, tail)}
