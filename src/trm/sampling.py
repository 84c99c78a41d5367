"""Test-time scaling of one trained checkpoint: K noisy rollouts and a rule that picks one (PTRM).

PTRM (arXiv 2605.19943): K rollouts from the same initial y, z; before every supervision step t = 1..D add
N(0, sigma^2) to z, then run the step deterministically; keep the rollout whose q_halt is highest after step D.
Variants here: noise on y instead, or only on the initial state ("init", the attractor study's intervention:
G independent guesses that are deterministic after the start); selection by the most frequent answer (mode) or
by a vote weighted by sigmoid(q_halt); an early stop that freezes a rollout once its q_halt has been above a
margin for several steps in a row (the paper runs all D steps).

Every rollout (puzzle p, rollout k) draws its noise from its own random stream, seeded by (seed, p, k), so
results do not depend on how rows are chunked (the memory bound) and the first K rollouts of a K=100 run are
exactly the rollouts of a K run: one K=100 run gives the whole accuracy-versus-K curve. A rollout to D steps
passes through every smaller D on the way, so one run also gives every D up to its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from tqdm import tqdm

from .checks import check_choice, check_range
from .data.format import Split
from .losses import IGNORE
from .model import TRM, Carry
from .runtime import autocast

NOISE = ("z", "y", "init")
SELECT = ("best-q", "mode", "q-vote")


@dataclass
class SamplerConfig:
    K: int = 1                 # rollouts per puzzle (per augmentation on ARC)
    sigma: float = 0.0         # std of the Gaussian noise; the latent's RMS norm is about 1 per entry
    D: int = 0                 # supervision steps at test time (0 = the checkpoint's N_sup; may exceed it)
    noise: str = "z"           # z / y: added before every step; init: added to the initial y and z only
    select: str = "best-q"     # best-q (highest final q_halt), mode (most frequent answer), q-vote
    stop_after: int = 0        # early stop: freeze a rollout after this many steps in a row with q_halt > margin
    stop_margin: float = 0.0   # (0 = run all D steps, as the paper does)

    def validate(self) -> None:
        check_range("--K", self.K, ge=1)
        check_range("--sigma", self.sigma, ge=0)
        check_range("D", self.D, ge=0, note="0 = the checkpoint's N_sup")
        check_choice("--noise", self.noise, NOISE)
        check_choice("--select", self.select, SELECT)
        check_range("--stop-after", self.stop_after, ge=0, note="0 = off")
        check_range("--stop-margin", self.stop_margin)


# the PTRM paper's settings (arXiv 2605.19943); flags given with --sampler override them
SAMPLER_PRESETS = {
    "ptrm-sudoku": ("Sudoku-Extreme MLP, 87.3 -> 98.75% best-Q@K", SamplerConfig(K=100, sigma=0.3, D=64)),
    "ptrm-maze": ("Maze-Hard, 83.8 -> 85.2% best-Q@K, 95.6% pass@K", SamplerConfig(K=100, sigma=1.0, D=16)),
    "ptrm-arc": ("ARC-AGI-2, K per augmentation, best-Q in each, then the vote",
                 SamplerConfig(K=25, sigma=0.2, D=16)),
}


def get_sampler_preset(name: str) -> SamplerConfig:
    if name not in SAMPLER_PRESETS:
        raise ValueError(f"unknown sampler '{name}' (choose from {', '.join(SAMPLER_PRESETS)})")
    return replace(SAMPLER_PRESETS[name][1])


@dataclass
class Rollouts:
    """What K rollouts of P puzzles did, at each recorded step D (arrays indexed [puzzle, recorded step, rollout]).

    A rollout stopped early keeps its last answer and q_halt at every later recorded step."""
    steps: list[int]
    q: np.ndarray                    # (P, S, K) float32 q_halt logit
    answer: np.ndarray               # (P, S, K) int64 fingerprint of the predicted answer (equal answers, equal ids)
    steps_run: np.ndarray            # (P, S, K) int16 supervision steps actually run
    calls_per_step: int              # network applications per supervision step: T * (n + 1)
    correct: np.ndarray | None = None    # (P, S, K) bool: every scored cell right (when labels are known)
    cells_ok: np.ndarray | None = None   # (P, S, K) int32 scored cells right
    n_cells: np.ndarray | None = None    # (P,) scored cells
    selected: np.ndarray | None = None   # (P, seq_len) uint8: the answer the select rule picks after the last step
    selected_q: np.ndarray | None = None  # (P,) q_halt of the best-q rollout among those that give it
    valid: np.ndarray | None = None      # (P, S, K) bool: the rule checker accepts the answer (with validity)
    meta: dict = field(default_factory=dict)


_HASH_W: dict[tuple, torch.Tensor] = {}


def fingerprint(pred: torch.Tensor) -> torch.Tensor:
    """A 64-bit id of each row's answer (random linear hash modulo 2^64: equal answers, equal ids; a collision
    between different answers has probability about 2^-64)."""
    key = (pred.shape[-1], pred.device)
    if key not in _HASH_W:
        w = np.random.default_rng(0x7E1).integers(-2**62, 2**62, pred.shape[-1], dtype=np.int64) | 1
        _HASH_W[key] = torch.from_numpy(w).to(pred.device)
    return (pred.long() * _HASH_W[key]).sum(-1)


def _stream(seed: int, p: int, k: int, device) -> torch.Generator:
    s = np.random.SeedSequence([seed, p, k]).generate_state(2, dtype=np.uint32)
    g = torch.Generator(device=device)
    g.manual_seed(int(s[0]) << 32 | int(s[1]))
    return g


def _noise(like: torch.Tensor, gens: list, sigma: float) -> torch.Tensor:
    out = torch.empty(like.shape, dtype=torch.float32, device=like.device)
    for i, g in enumerate(gens):
        out[i].normal_(generator=g)
    return (out * sigma).to(like.dtype)


def bytes_per_row(model: TRM) -> int:
    """Rough peak memory of one rollout row in a no-grad supervision step (fp32): y, z, x, the noise, and the
    widest activations of one block (the SwiGLU hidden layer, twice for gate and up)."""
    c = model.cfg
    width = c.d * (6 + 3 * c.expansion + (3 * c.n if c.recursion == "multiz" else 0))  # multiz: n latents more
    return int(c.total_len * width * 4 + c.seq_len * c.vocab_size * 4)


def default_max_rows(model: TRM, memory_gb: float = 1.0, device=None) -> int:
    """Rows per forward pass: what fits in memory_gb; on a CPU also at most what keeps the widest activation
    under 16 MiB. Larger blocks there gain no matmul speed and exceed glibc's largest mmap threshold, so every
    step would page-fault them in anew (measured: 4000 rows of a 9x9 model in chunks of 1,883 ran 3x slower
    than in chunks of 128)."""
    rows = max(1, int(memory_gb * 2**30 // bytes_per_row(model)))
    if device is None or torch.device(device).type == "cpu":
        c = model.cfg
        widest = c.total_len * max(c.d * c.expansion, c.total_len * c.expansion) * 4
        rows = min(rows, max(1, int(16 * 2**20 // widest)))
    return rows


@torch.inference_mode()
def sample(model: TRM, inputs, puzzle_ids, cfg: SamplerConfig, *, labels=None, seed: int = 0,
           record_steps=None, max_rows: int = 0, memory_gb: float = 1.0, dtype: str = "auto",
           keep_selected: bool = False, index_offset: int = 0, on_step=None, progress: bool = False,
           desc: str = "rollouts", validity=None) -> Rollouts:
    """Run cfg.K rollouts of every puzzle (inputs (P, seq_len)) for max(record_steps) supervision steps.

    Rows (puzzle, rollout) are processed in chunks of at most max_rows (default: what fits in memory_gb).
    `index_offset` + p is the puzzle's index in its split, part of its noise seed. `on_step(t, rows, carry,
    out)` is called after every step with the rows run (indices into P*K, puzzle-major) and their new state:
    the hook the analysis tools record through. Returns Rollouts; `selected` only with keep_selected, `valid`
    only with validity(inputs, predictions) -> bool per row (trm.data.validator: a Sudoku or maze rule check)."""
    cfg.validate()
    if cfg.noise == "y" and cfg.sigma > 0 and model.cfg.single_state:
        raise ValueError(f"a {model.cfg.recursion} model carries one state (its z): use noise z or init, not y")
    device = model.device
    D = cfg.D or model.cfg.N_sup
    steps = sorted(set(record_steps or [D]))
    if steps[0] < 1:
        raise ValueError("recorded steps must be >= 1")
    D = steps[-1]
    K, S = cfg.K, len(steps)
    to_t = lambda a: torch.as_tensor(np.asarray(a).astype(np.int64), device=device)  # noqa: E731
    inputs, puzzle_ids = to_t(inputs), to_t(puzzle_ids)
    labels = to_t(labels) if labels is not None else None
    P, L = inputs.shape
    rows_max = max_rows or default_max_rows(model, memory_gb, device)
    q = np.zeros((P, S, K), np.float32)
    answer = np.zeros((P, S, K), np.int64)
    steps_run = np.zeros((P, S, K), np.int16)
    correct = np.zeros((P, S, K), bool) if labels is not None else None
    cells_ok = np.zeros((P, S, K), np.int32) if labels is not None else None
    n_cells = (labels != IGNORE).sum(-1).cpu().numpy() if labels is not None else None
    selected = np.zeros((P, L), np.uint8) if keep_selected else None
    selected_q = np.zeros(P, np.float32) if keep_selected else None
    valid = np.zeros((P, S, K), bool) if validity is not None else None
    pending: dict[int, list] = {}  # puzzle -> (pred, q) of its finished rollouts, until all K are in
    was_training = model.training
    model.eval()
    bar = tqdm(total=P * K, desc=desc, disable=not progress, leave=False, unit="rollout")
    for r0 in range(0, P * K, rows_max):
        rows = torch.arange(r0, min(P * K, r0 + rows_max), device=device)
        p_of, k_of = rows // K, rows % K
        R = len(rows)
        gens = ([_stream(seed, index_offset + int(p), int(k), device) for p, k in zip(p_of.tolist(), k_of.tolist())]
                if cfg.sigma > 0 else None)
        with autocast(device, dtype):
            x = model.embed_input(inputs[p_of], puzzle_ids[p_of])
        carry = model.initial_carry(R, device)
        if gens and cfg.noise == "init":
            carry = Carry(y=carry.y + _noise(carry.y, gens, cfg.sigma), z=carry.z + _noise(carry.z, gens, cfg.sigma))
        lab = labels[p_of] if labels is not None else None
        active = torch.ones(R, dtype=torch.bool, device=device)
        streak = torch.zeros(R, dtype=torch.long, device=device)
        last_pred = torch.zeros((R, L), dtype=torch.long, device=device)
        last_q = torch.zeros(R, device=device)
        ran = torch.zeros(R, dtype=torch.long, device=device)
        for t in range(1, D + 1):
            if active.any():
                idx = None if bool(active.all()) else active.nonzero().squeeze(1)
                sub = carry if idx is None else Carry(y=carry.y[idx], z=carry.z[idx])
                g_sub = gens if (gens is None or idx is None) else [gens[i] for i in idx.tolist()]
                if g_sub and cfg.noise == "z":
                    sub = Carry(y=sub.y, z=sub.z + _noise(sub.z, g_sub, cfg.sigma))
                elif g_sub and cfg.noise == "y":
                    sub = Carry(y=sub.y + _noise(sub.y, g_sub, cfg.sigma), z=sub.z)
                with autocast(device, dtype):
                    new, y = model.deep_recursion(x if idx is None else x[idx], sub)
                    out = model.heads(y)
                pred, qh = out.logits.argmax(-1), out.q_halt.float()
                if idx is None:
                    carry, last_pred, last_q, ran = new, pred, qh, torch.full_like(ran, t)
                    sel = slice(None)
                else:
                    carry.y[idx], carry.z[idx] = new.y.to(carry.y.dtype), new.z.to(carry.z.dtype)
                    last_pred[idx], last_q[idx], ran[idx] = pred, qh, t
                    sel = idx
                if cfg.stop_after:
                    s_new = torch.where(qh > cfg.stop_margin, streak[sel] + 1, 0)
                    streak[sel] = s_new
                    active[sel] = s_new < cfg.stop_after
                if on_step is not None:
                    on_step(t, rows if idx is None else rows[idx], new, out)
            if t in steps:
                j = steps.index(t)
                pc, kc = p_of.cpu().numpy(), k_of.cpu().numpy()
                q[pc, j, kc] = last_q.cpu().numpy()
                answer[pc, j, kc] = fingerprint(last_pred).cpu().numpy()
                steps_run[pc, j, kc] = ran.cpu().numpy()
                if lab is not None:
                    mask = lab != IGNORE
                    ok = ((last_pred == lab) & mask).sum(-1)
                    cells_ok[pc, j, kc] = ok.cpu().numpy()
                    correct[pc, j, kc] = ((ok == mask.sum(-1)) & (mask.sum(-1) > 0)).cpu().numpy()
                if validity is not None:
                    valid[pc, j, kc] = validity(inputs[p_of].cpu().numpy(), last_pred.cpu().numpy())
        if keep_selected:
            preds, qs = last_pred.to(torch.uint8).cpu().numpy(), last_q.cpu().numpy()
            for i, (p, k) in enumerate(zip(p_of.tolist(), k_of.tolist())):
                pending.setdefault(p, []).append((preds[i], qs[i]))
                if len(pending[p]) == K:
                    selected[p], selected_q[p] = _select_answer(pending.pop(p), cfg.select)
        bar.update(R)
    bar.close()
    model.train(was_training)
    c = model.cfg
    return Rollouts(steps=steps, q=q, answer=answer, steps_run=steps_run, calls_per_step=model.calls_per_step,
                    correct=correct, cells_ok=cells_ok, n_cells=n_cells, selected=selected, selected_q=selected_q,
                    valid=valid, meta={"K": K, "sigma": cfg.sigma, "noise": cfg.noise, "seed": seed, "D": D,
                          "stop_after": cfg.stop_after, "stop_margin": cfg.stop_margin, "max_rows": rows_max})


def _select_answer(items: list, rule: str):
    """The answer one puzzle's rollouts settle on: (prediction, q of its best rollout)."""
    preds = np.stack([p for p, _ in items])
    qs = np.array([q for _, q in items], np.float32)
    if rule == "best-q":
        i = int(np.argmax(qs))
        return preds[i], qs[i]
    _, inv = np.unique(preds, axis=0, return_inverse=True)
    i = _pick(inv.reshape(-1), qs, rule)
    return preds[i], qs[i]


def _pick(ids: np.ndarray, qs: np.ndarray, rule: str) -> int:
    """Index of the rollout whose answer wins under `rule`, among rollouts with answer ids `ids` and logits qs.
    mode: most frequent answer, ties to the higher best q; q-vote: largest sum of sigmoid(q). The rollout
    returned is the best-q one among those that give the winning answer."""
    if rule == "best-q":
        return int(np.argmax(qs))
    uniq, inv = np.unique(ids, return_inverse=True)
    best_q = np.full(len(uniq), -np.inf)
    np.maximum.at(best_q, inv, qs)
    if rule == "mode":
        counts = np.bincount(inv, minlength=len(uniq)).astype(np.float64)
        win = max(range(len(uniq)), key=lambda u: (counts[u], best_q[u]))
    else:
        weight = np.zeros(len(uniq))
        np.add.at(weight, inv, 1 / (1 + np.exp(-qs.astype(np.float64))))
        win = int(np.argmax(weight))
    members = np.flatnonzero(inv == win)
    return int(members[np.argmax(qs[members])])


def score(r: Rollouts, Ks=None) -> list[dict]:
    """Accuracy of every selection rule for the first K rollouts, at every recorded step.

    Rows without a scored cell (an ARC output nobody knows) are left out, as in `evaluate`. calls_per_puzzle
    counts network applications actually run (fewer than K * D * T * (n+1) with the early stop). With the rule
    checker's verdicts (sample's validity): verify@K, the best-q rollout among those the checker accepts (best-q
    where none does), and valid@K, the share of puzzles where the checker accepts some rollout."""
    if r.correct is None:
        raise ValueError("scoring needs labels")
    Kmax = r.q.shape[2]
    Ks = sorted({k for k in (Ks or [Kmax]) if 1 <= k <= Kmax})
    keep = r.n_cells > 0
    n = int(keep.sum())
    out = []
    for j, D in enumerate(r.steps):
        for K in Ks:
            c, qs, a = r.correct[keep, j, :K], r.q[keep, j, :K], r.answer[keep, j, :K]
            cells = r.cells_ok[keep, j, :K]
            best = np.argmax(qs, axis=1)
            rows = np.arange(n)
            pick = {rule: np.array([_pick(a[i], qs[i], rule) for i in range(n)], dtype=np.int64)
                    for rule in ("mode", "q-vote")} if K > 1 else {"mode": best, "q-vote": best}
            calls = r.steps_run[keep, j, :K].astype(np.int64).sum(1) * r.calls_per_step
            checked = {}
            if r.valid is not None:
                v = r.valid[keep, j, :K]
                pick_v = np.where(v.any(1), np.where(v, qs, -np.inf).argmax(1), best)
                checked = {"verify@K": float(c[rows, pick_v].mean()) if n else 0.0,
                           "valid@K": float(v.any(1).mean()) if n else 0.0}
            out.append({
                "D": D, "K": K, "n": n,
                "pass@K": float(c.any(1).mean()) if n else 0.0,
                "best-q@K": float(c[rows, best].mean()) if n else 0.0,
                "mode@K": float(c[rows, pick["mode"]].mean()) if n else 0.0,
                "q-vote@K": float(c[rows, pick["q-vote"]].mean()) if n else 0.0,
                **checked,
                "best-q cell accuracy": float(cells[rows, best].sum() / max(r.n_cells[keep].sum(), 1)),
                "mean rollout accuracy": float(c.mean()) if n else 0.0,
                "distinct answers": float(np.mean([len(np.unique(x)) for x in a])) if n else 0.0,
                "calls_per_puzzle": float(calls.mean()) if n else 0.0,
                "full_calls_per_puzzle": K * D * r.calls_per_step,
            })
    return out


def rescued(r: Rollouts, deterministic: Rollouts, Ks=None) -> list[dict]:
    """Of the puzzles the deterministic run fails at step D: the share that some of the first K rollouts solves
    (pass@K) and the share best-Q@K solves; of those it solves, the share best-Q@K gets wrong."""
    keep = r.n_cells > 0
    Kmax = r.q.shape[2]
    out = []
    for j, D in enumerate(r.steps):
        det = deterministic.correct[keep, deterministic.steps.index(D), 0]
        fail = ~det
        for K in sorted({k for k in (Ks or [Kmax]) if 1 <= k <= Kmax}):
            c, qs = r.correct[keep, j, :K], r.q[keep, j, :K]
            best = c[np.arange(len(c)), np.argmax(qs, 1)]
            out.append({"D": D, "K": K, "det_failures": int(fail.sum()),
                        "rescued_by_any": float(c[fail].any(1).mean()) if fail.any() else None,
                        "rescued_by_best_q": float(best[fail].mean()) if fail.any() else None,
                        "lost_by_best_q": float((~best[det]).mean()) if det.any() else None})
    return out


def early_stopped(r: Rollouts, stop_after: int, margin: float = 0.0) -> Rollouts:
    """What `sample` with an early stop would have returned, derived from a run that recorded every step
    1..D without one: a stopped rollout is the full rollout frozen at its stopping step (each rollout has its
    own noise stream, so stopping one changes no other). Lets one run price several stop rules."""
    if r.steps != list(range(1, r.steps[-1] + 1)):
        raise ValueError("early_stopped needs a run that recorded every step 1..D")
    above = r.q > margin                                          # (P, D, K)
    streak = np.zeros(above.shape, np.int32)
    run = np.zeros(above[:, 0].shape, np.int32)
    for j in range(above.shape[1]):
        run = np.where(above[:, j], run + 1, 0)
        streak[:, j] = run
    hit = streak >= stop_after
    first = np.where(hit.any(1), hit.argmax(1), above.shape[1] - 1)  # (P, K) index of the stopping step
    j_eff = np.minimum(np.arange(above.shape[1])[None, :, None], first[:, None, :])  # (P, D, K)
    take = lambda a: None if a is None else np.take_along_axis(a, j_eff, axis=1)  # noqa: E731
    return replace(r, q=take(r.q), answer=take(r.answer), correct=take(r.correct), cells_ok=take(r.cells_ok),
                   valid=take(r.valid), steps_run=(j_eff + 1).astype(np.int16), selected=None, selected_q=None,
                   meta={**r.meta, "stop_after": stop_after, "stop_margin": margin})


def evaluate_sampled(model: TRM, split: Split, cfg: SamplerConfig, *, seeds=(0,), limit: int = 0, max_rows: int = 0,
                     memory_gb: float = 1.0, dtype: str = "auto", keep_predictions: bool = False,
                     progress: bool = False, validity=None) -> dict:
    """Sampled evaluation of split[:limit]: every selection rule and pass@K for the first 1 and cfg.K rollouts
    (mean and std over `seeds`), the deterministic run (K = 1, sigma 0) beside them, how many of its failures
    the rollouts rescue, and puzzles per second of both. keep_predictions adds the answers the select rule picks
    in the first seed ("predictions", "q_halt"), for ARC's vote across versions. validity (trm.data.validator)
    adds the verify@K and valid@K rows of `score`."""
    n = min(len(split), limit) if limit else len(split)
    seeds = list(seeds)
    inputs, labels, ids = (np.asarray(a[:n]) for a in (split.inputs, split.labels, split.puzzle_ids))
    common = dict(labels=labels, max_rows=max_rows, memory_gb=memory_gb, dtype=dtype, progress=progress,
                  validity=validity)
    t0 = time.perf_counter()
    det = sample(model, inputs, ids, SamplerConfig(K=1, D=cfg.D), desc="deterministic", **common)
    t1 = time.perf_counter()
    runs = [sample(model, inputs, ids, cfg, seed=s, keep_selected=keep_predictions and i == 0, desc=f"seed {s}",
                   **common) for i, s in enumerate(seeds)]
    t2 = time.perf_counter()
    m = {"n": n, "sampler": {**vars(cfg), "seeds": seeds}, "deterministic": score(det, [1])[0],
         "scores": mean_over_seeds([score(r, sorted({1, cfg.K})) for r in runs]),
         "rescued": mean_over_seeds([rescued(r, det, [cfg.K]) for r in runs])[0],
         "deterministic_puzzles_per_second": round(n / (t1 - t0), 3),
         "sampled_puzzles_per_second": round(n * len(seeds) / (t2 - t1), 3)}
    if keep_predictions:
        m.update(predictions=runs[0].selected, q_halt=runs[0].selected_q)
    return m


def mean_over_seeds(rows_by_seed: list[list[dict]]) -> list[dict]:
    """Average the per-seed score rows (same order in every seed); adds `<metric> std` and `seeds`."""
    out = []
    for group in zip(*rows_by_seed):
        row = dict(group[0])
        for k, v in group[0].items():
            if k in ("D", "K", "n", "det_failures") or not isinstance(v, (int, float)) or v is None:
                continue
            vals = [g[k] for g in group if g[k] is not None]
            row[k] = float(np.mean(vals))
            if len(group) > 1 and k not in ("full_calls_per_puzzle",):
                row[f"{k} std"] = float(np.std(vals))
        row["seeds"] = len(group)
        out.append(row)
    return out
