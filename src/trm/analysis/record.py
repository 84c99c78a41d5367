"""Recording what happens inside the recursion: y, z, answer, accuracy, loss and q_halt at every supervision
step (and, optionally, every application of the network f), for deterministic or noisy rollouts.

Recording goes through the two hooks the model already has: `trm.sampling.sample(on_step=...)` after every
supervision step (so noisy PTRM rollouts are recorded exactly like the deterministic model, K=1 sigma=0), and a
forward hook on each of the model's networks (`model.networks()`), which fires on every call: for TRM n
z-updates then one y-update, T times per supervision step (`model.call_labels()` names them). Neither hook
changes a number the model computes (tests pin it down).

Memory is bounded: per row (puzzle p, rollout k; row = p * K + k) only summaries are kept at every step (the
state's mean over answer tokens, its norm, its distance to the last `max_lag` states, the answer, q_halt, loss);
full states only for the first `full_rows` rows. With `out` the arrays are memory-mapped .npy files in that
folder, so nothing grows with the number of puzzles but the disk. The format is in docs/analysis.md.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_dir
from ..losses import IGNORE, softmax_cross_entropy
from ..model import TRM
from ..sampling import SamplerConfig, sample

FORMAT_VERSION = 1


@dataclass
class Recording:
    """Arrays indexed [row, step - 1, ...]; row = puzzle * K + rollout (see docs/analysis.md for the list)."""
    arrays: dict[str, np.ndarray]
    meta: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def __contains__(self, name: str) -> bool:
        return name in self.arrays

    @property
    def rows(self) -> int:
        return int(self.meta["rows"])

    @property
    def D(self) -> int:
        return int(self.meta["D"])


def _call_kind(label: str) -> str:
    """'r1.z3' -> 'z', 'r2.y' -> 'y', 'r1.h' -> 'h': which state a call writes."""
    return label.split(".", 1)[1][0]


def _latent(z: torch.Tensor) -> torch.Tensor:
    """The latent as one (rows, tokens, d) state: multi-z models carry n of them, which enter every update
    summed."""
    return z.sum(1) if z.dim() == 4 else z


def _rms(a: torch.Tensor) -> torch.Tensor:
    return a.square().mean(-1).sqrt()


class Recorder:
    """Collects one `sample` run. Pass `recorder.on_step` as sample's on_step, and use `with recorder.attach():`
    around the run when latent steps are wanted. Rows must run all D steps (no early stop)."""

    def __init__(self, model: TRM, P: int, K: int, D: int, *, labels: np.ndarray | None = None,
                 full_rows: int = 0, latent: bool = False, max_lag: int = 6, out: Path | None = None):
        c = model.cfg
        self.model, self.K, self.D, self.max_lag = model, K, D, max_lag
        self.prefix, self.L, self.d = c.prefix_len, c.seq_len, c.d
        self.call_labels = model.call_labels() if latent else []
        self.calls = len(self.call_labels)
        R = P * K
        self.full_rows = min(full_rows, R)
        self.labels = None if labels is None else torch.as_tensor(np.asarray(labels).astype(np.int64))
        self.out = out
        specs = {
            "q_halt": ((R, D), np.float32),
            "loss": ((R, D), np.float32),
            "cell_acc": ((R, D), np.float32),
            "exact": ((R, D), np.bool_),
            "pred": ((R, D, c.seq_len), np.uint8),
            "norm": ((R, D), np.float32),
            "lag_dist": ((R, D, max_lag), np.float32),
            "y_mean": ((R, D, c.d), np.float16),
            "z_mean": ((R, D, c.d), np.float16),
        }
        if K > 1:
            specs["dist_to_first"] = ((R, D), np.float32)
        if self.full_rows:
            specs["y_full"] = ((self.full_rows, D, c.total_len, c.d), np.float16)
            specs["z_full"] = ((self.full_rows, D, c.total_len, c.d), np.float16)
        if latent:
            specs["latent_mean"] = ((R, D, self.calls, c.d), np.float16)
            specs["latent_change"] = ((R, D, self.calls), np.float32)
        self.arrays = {k: self._alloc(k, shape, dtype) for k, (shape, dtype) in specs.items()}
        for k in ("loss", "cell_acc", "lag_dist", "latent_change"):
            if k in self.arrays:
                self.arrays[k][...] = np.nan
        self._hist: dict[int, torch.Tensor] = {}   # step -> (rows, 2 * total_len * d) state of the current chunk
        self._calls: list[torch.Tensor] = []        # outputs of f during the current supervision step
        self._last: dict[str, torch.Tensor] = {}    # last output of each kind of call (z, y, h) of the chunk

    def _alloc(self, name: str, shape: tuple, dtype) -> np.ndarray:
        if self.out is None:
            return np.zeros(shape, dtype)
        return np.lib.format.open_memmap(self.out / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)

    # --- hooks ----------------------------------------------------------------------------------------------
    def _hook(self, module, inputs, output) -> None:
        self._calls.append(output.detach().float())

    def attach(self):
        """Context manager: the forward hook on the last block of f, for latent-step recording."""
        recorder = self

        class _Attached:
            def __enter__(self):
                self.handles = [net.register_forward_hook(recorder._hook) for net in recorder.model.networks()]
                return recorder

            def __exit__(self, *exc):
                for h in self.handles:
                    h.remove()
                return False

        return _Attached()

    def on_step(self, t: int, rows: torch.Tensor, carry, out) -> None:
        i, r = t - 1, rows.cpu().numpy()
        if t == 1:
            self._hist = {}
        y, z = carry.y.float(), carry.z.float()
        s = torch.cat((y.flatten(1), z.flatten(1)), 1)
        z = _latent(z)
        a = self.arrays
        a["norm"][r, i] = _rms(s).cpu().numpy()
        for p in range(1, self.max_lag + 1):
            prev = self._hist.get(t - p)
            if prev is not None:
                if prev.shape != s.shape:
                    raise ValueError("recording needs every row of a chunk to run every step (no early stop)")
                a["lag_dist"][r, i, p - 1] = _rms(s - prev).cpu().numpy()
        self._hist[t] = s
        if "dist_to_first" in a:  # a chunk holds whole puzzles: rollout 0 of row r's puzzle is in it
            k = r % self.K
            base = torch.as_tensor(r - r[0] - k, device=s.device)
            a["dist_to_first"][r, i] = _rms(s - s[base]).cpu().numpy()
        self._hist.pop(t - self.max_lag, None)
        a["y_mean"][r, i] = y[:, self.prefix:].mean(1).half().cpu().numpy()
        a["z_mean"][r, i] = z[:, self.prefix:].mean(1).half().cpu().numpy()
        full = r < self.full_rows
        if full.any():
            m = torch.from_numpy(full).to(y.device)
            a["y_full"][r[full], i] = y[m].half().cpu().numpy()
            a["z_full"][r[full], i] = z[m].half().cpu().numpy()
        logits = out.logits.float()
        pred = logits.argmax(-1)
        a["pred"][r, i] = pred.to(torch.uint8).cpu().numpy()
        a["q_halt"][r, i] = out.q_halt.float().cpu().numpy()
        if self.labels is not None:
            lab = self.labels[torch.as_tensor(r // self.K)].to(pred.device)
            mask = lab != IGNORE
            n_cells = mask.sum(-1)
            ok = ((pred == lab) & mask).sum(-1)
            ce = softmax_cross_entropy(logits, lab).sum(-1) / n_cells.clamp(min=1)
            a["loss"][r, i] = torch.where(n_cells > 0, ce, torch.nan).cpu().numpy()
            a["cell_acc"][r, i] = torch.where(n_cells > 0, ok / n_cells.clamp(min=1), torch.nan).cpu().numpy()
            a["exact"][r, i] = ((ok == n_cells) & (n_cells > 0)).cpu().numpy()
        if self.calls:
            self._flush_calls(r, i)
        if t == self.D:
            self._hist, self._last = {}, {}

    def _flush_calls(self, r: np.ndarray, i: int) -> None:
        if len(self._calls) != self.calls:
            raise ValueError(f"expected {self.calls} calls of f per supervision step, saw {len(self._calls)}")
        for c, h in enumerate(self._calls):
            kind = _call_kind(self.call_labels[c])
            self.arrays["latent_mean"][r, i, c] = h[:, self.prefix:].mean(1).half().cpu().numpy()
            prev = self._last.get(kind)
            if prev is not None and prev.shape == h.shape:
                self.arrays["latent_change"][r, i, c] = _rms((h - prev).flatten(1)).cpu().numpy()
            self._last[kind] = h
        self._calls = []


def record(model: TRM, inputs, puzzle_ids, cfg: SamplerConfig, *, labels=None, seed: int = 0,
           full_rows: int = 0, latent: bool = False, max_lag: int = 6, max_rows: int = 256,
           out: str | Path | None = None, dtype: str = "fp32", index=None, meta: dict | None = None,
           progress: bool = False, desc: str = "recording") -> Recording:
    """Run `sample` with cfg (K=1, sigma=0: the deterministic model) and record every supervision step.

    max_rows bounds the rows run at once (the distance history holds max_lag states of each). With `out` the
    recording is written there (a folder of .npy files and meta.json, renamed into place when complete) and
    the returned arrays are read-only memory maps of it."""
    if cfg.stop_after:
        raise ValueError("recording runs every rollout for all D steps: use stop_after=0")
    if max_lag < 1:
        raise ValueError("max_lag must be >= 1")
    inputs = np.asarray(inputs)
    P, D = len(inputs), cfg.D or model.cfg.N_sup
    with atomic_dir(out, kind="recording") if out is not None else contextlib.nullcontext() as tmp:
        rec = Recorder(model, P, cfg.K, D, labels=labels, full_rows=full_rows, latent=latent, max_lag=max_lag,
                       out=tmp)
        # a chunk must hold whole puzzles (pair distances compare rollouts of one puzzle)
        rows = max(cfg.K, max_rows // cfg.K * cfg.K)
        with rec.attach() if latent else contextlib.nullcontext():
            sample(model, inputs, puzzle_ids, cfg, labels=labels, seed=seed, max_rows=rows, dtype=dtype,
                   on_step=rec.on_step, progress=progress, desc=desc)
        c = model.cfg
        info = {"format": FORMAT_VERSION, "rows": P * cfg.K, "P": P, "K": cfg.K, "D": D, "sigma": cfg.sigma,
                "noise": cfg.noise, "seed": seed, "max_lag": max_lag, "full_rows": rec.full_rows,
                "latent_calls": model.call_labels() if latent else [], "N_sup": c.N_sup,
                "recursion": c.recursion, "networks": c.networks,
                "n": c.n, "T": c.T, "d": c.d, "prefix_len": c.prefix_len, "seq_len": c.seq_len,
                "labels": labels is not None, "dtype": dtype,
                "index": [int(v) for v in (index if index is not None else range(P))],
                "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in rec.arrays.items()},
                **(meta or {})}
        if tmp is None:
            return Recording(arrays=rec.arrays, meta=info)
        for v in rec.arrays.values():
            v.flush()
        del rec
        (tmp / "meta.json").write_text(json.dumps(info, indent=2) + "\n")
    return load_recording(out)


def load_recording(path: str | Path) -> Recording:
    """A recording folder written by `record` (arrays memory-mapped, read-only)."""
    path = Path(path)
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        raise ValueError(f"{path} is not a recording (meta.json missing or broken)") from None
    arrays = {k: np.load(path / f"{k}.npy", mmap_mode="r") for k in meta["arrays"]}
    return Recording(arrays=arrays, meta=meta)
