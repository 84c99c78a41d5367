"""Named configurations: the TRM paper's runs (arXiv 2510.04871) and presets that learn on a 2-core CPU.

Every field can be overridden on the command line (`trm train --preset sudoku6-cpu --d 256 --lr 3e-4`).
A preset also names the dataset it trains on and how `trm` builds it when it is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .model import ModelConfig
from .train import TrainConfig


@dataclass
class Preset:
    name: str
    about: str
    model: ModelConfig
    train: TrainConfig
    data: dict = field(default_factory=dict)  # "task" (default sudoku), "path" + the task's build_* arguments


# --- the paper: d 512, 2 layers, N_sup 16, batch 768, AdamATan2, EMA 0.999, stablemax ---------------------
_SUDOKU_EXTREME_DATA = {"path": "data/sudoku-extreme", "size": 9, "pools": ["hard", "17clue"], "train": 1000,
                        "test": 10000, "seed": 0}
_PAPER_TRAIN = TrainConfig(batch_size=768, steps=65104, lr=1e-4, warmup_steps=2000, weight_decay=1.0,
                           puzzle_emb_lr=1e-4, puzzle_emb_weight_decay=1.0, eval_every=6510, eval_limit=2000,
                           checkpoint_every=2000, ema=0.999, loss="stablemax", optimizer="adam_atan2")

# ARC: embeddings learn 100x faster (1e-2), weight decay 0.1. Steps as the reference counts them: 100k epochs x
# tasks x examples of one version (ARC-1: 960 tasks x ~4.2 / 768 = ~525k; ARC-2: 1280 x ~4.0 / 768 = ~667k)
_ARC_TRAIN = replace(_PAPER_TRAIN, steps=525000, eval_every=52500, eval_limit=20000, puzzle_emb_lr=1e-2,
                     weight_decay=0.1, puzzle_emb_weight_decay=0.1)

_ARC_MODEL = ModelConfig(vocab_size=12, seq_len=900, mixer="attention", pos="rope", n=4, T=3)
# TRM + Mamba-2 (arXiv 2602.12078) at parameter parity with the attention model: d_inner = d and a wide state
# (N 256, 8 heads of 64) give 1,057,816 weights a mixer against attention's 1,048,576 (docs/ssd.md)
_ARC_SSD = dict(mixer="ssd", pos="none", ssd_expand=1, ssd_state=256, ssd_head_dim=64)

_CPU_TRAIN = TrainConfig(batch_size=128, lr=1e-3, warmup_steps=200, weight_decay=0.1, beta2=0.95,
                         optimizer="adamw", loss="softmax", puzzle_emb_lr=1e-3, puzzle_emb_weight_decay=0.1,
                         checkpoint_every=250, checkpoint_minutes=5, log_every=10)
_CPU_MODEL = ModelConfig(d=128, L=2, mixer="mlp", pos="none", n=6, T=3, N_sup=16, puzzle_emb_len=1,
                         puzzle_emb_dim=128)

# The fast recipe of the CPU Sudoku presets (docs/training-recipe.md has the screens and side-by-side runs):
# half the batch at 3x the lr (twice the optimizer steps a minute, and the paper's lr was tuned for batch 768
# on d 512), a short warm-up, staggered ACT slots (each batch mixes depths and puzzles) and at most 4
# supervision steps per example in training (4x the new puzzles a step; evaluation still runs all N_sup).
# On 6x6, 10 minutes on one core: 0% exact with the earlier recipe (batch 128, lr 1e-3, 100-step warm-up).
_FAST = dict(batch_size=64, lr=3e-3, puzzle_emb_lr=3e-3, warmup_steps=50, stagger=True, N_sup_train=4)

_SUDOKU6_MODEL = replace(_CPU_MODEL, vocab_size=8, seq_len=36, d=96, puzzle_emb_dim=96, n=4, T=2)
# EMA 0.99, not the paper's 0.999: over 1400 steps a 0.999 average still holds a quarter of the
# random initial weights (measured: 0% exact with EMA 0.999 vs 99% raw after 1000 steps)
_SUDOKU6_TRAIN = replace(_CPU_TRAIN, steps=1400, ema=0.99, eval_every=250, eval_limit=500, **_FAST)
# 9x9 adds "Speed is Confidence"'s pair: Muon at its own lr on the networks' matrices, with the gated unit
# sigmoid(g) * RMSNorm(g * v) that makes Muon train (with the standard SwiGLU it does not). 60 training minutes
# on one AVX2 core: 58.6% exact on the 1,000 held-out 17-clue puzzles against 27.3% (docs/training-recipe.md)
_SUDOKU9_MODEL = replace(_CPU_MODEL, vocab_size=11, seq_len=81, d=96, puzzle_emb_dim=96, n=4, T=2, glu="sigmoid_norm")
# The end annealed (warmup-stable-decay): the lr holds its peak, then a cosine to 0.1x over the last 30% of the
# schedule that --time-budget fits. 2 hours on one AVX2 core, side by side: 82.6% exact against 70.5% at a
# constant lr, in the same number of steps (docs/training-recipe.md).
_SUDOKU9_TRAIN = replace(_CPU_TRAIN, steps=20000, ema=0.99, eval_every=500, eval_limit=500, **_FAST,
                         optimizer="muon", muon_lr=0.02, muon_weight_decay=0.005, lr_min_ratio=0.1,
                         lr_decay_fraction=0.3)
_SUDOKU6_DATA = {"path": "data/sudoku6", "size": 6, "generate": 2000, "test": 1000, "seed": 0}

PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("sudoku-extreme-mlp", "TRM-MLP on Sudoku-Extreme, the paper's 87.4% run (5.0M params, 1 L40S < 36 h)",
           ModelConfig(vocab_size=11, seq_len=81, mixer="mlp", pos="none", n=6, T=3),
           _PAPER_TRAIN, _SUDOKU_EXTREME_DATA),
    Preset("sudoku-extreme-att", "TRM-Att on Sudoku-Extreme, the paper's 74.7% run (6.8M params)",
           ModelConfig(vocab_size=11, seq_len=81, mixer="attention", pos="rope", n=6, T=3),
           _PAPER_TRAIN, _SUDOKU_EXTREME_DATA),
    Preset("sudoku-extreme-hrm", "HRM (Wang et al. 2025) on Sudoku-Extreme: two 4-layer networks, 2 x 2 cycles, "
           "one-step gradient, Q-learning halting; the TRM paper's 55.0% (27.3M params)",
           ModelConfig(vocab_size=11, seq_len=81, mixer="attention", pos="rope", L=4, networks=2, grad="one_step",
                       n=2, T=2, puzzle_emb_len=1),
           replace(_PAPER_TRAIN, q_continue_loss=True), _SUDOKU_EXTREME_DATA),
    Preset("sudoku-extreme-singlez", "TRM-MLP with a single state (z = f(z + x) n times, then z = f(z)): the paper's "
           "single-z ablation on Sudoku-Extreme",
           ModelConfig(vocab_size=11, seq_len=81, mixer="mlp", pos="none", recursion="singlez", n=6, T=3),
           _PAPER_TRAIN, _SUDOKU_EXTREME_DATA),
    Preset("sudoku-extreme-multiz", "TRM-MLP with n = 6 latents, each update rewriting one of them: the paper's "
           "multi-z ablation on Sudoku-Extreme",
           ModelConfig(vocab_size=11, seq_len=81, mixer="mlp", pos="none", recursion="multiz", n=6, T=3),
           _PAPER_TRAIN, _SUDOKU_EXTREME_DATA),
    Preset("sudoku-extreme-deq", "TRM-MLP with z solved to a fixed point (Anderson, at most 16 iterations, tol 1e-3) "
           "and the implicit gradient: TRM-DEQ after Attractor Models (arXiv 2605.12466) on Sudoku-Extreme",
           ModelConfig(vocab_size=11, seq_len=81, mixer="mlp", pos="none", n=6, T=3, solver="anderson",
                       fp_grad="implicit", max_iter=16, tol=1e-3),
           _PAPER_TRAIN, _SUDOKU_EXTREME_DATA),
    Preset("maze-hard", "TRM-Att on Maze-Hard (30x30, shortest path > 110), the paper's 85.3% run (6.8M params)",
           ModelConfig(vocab_size=6, seq_len=900, mixer="attention", pos="rope", n=4, T=3),
           _PAPER_TRAIN,
           # exact: Maze-Hard's own rejection distribution (docs/data.md); building it takes tens of minutes
           {"task": "maze", "path": "data/maze-hard", "size": 30, "min_path": 110, "wall_density": (0.3, 0.5),
            "exact": True, "train": 1000, "test": 1000, "seed": 0}),
    Preset("arc1", "TRM-Att on ARC-AGI-1 (training + concept + evaluation demos, 1000 versions a task), "
           "the paper's 44.6% pass@2 (4 H100, ~3 days)",
           _ARC_MODEL, _ARC_TRAIN,
           {"task": "arc", "path": "data/arc1", "version": "arc1", "augments": 1000, "seed": 0}),
    Preset("arc1-mamba2", "arc1 with bidirectional Mamba-2 (SSD) mixers in place of attention, at parameter parity "
           "(TRM + Mamba-2, arXiv 2602.12078)",
           replace(_ARC_MODEL, **_ARC_SSD), _ARC_TRAIN,
           {"task": "arc", "path": "data/arc1", "version": "arc1", "augments": 1000, "seed": 0}),
    Preset("arc2", "TRM-Att on ARC-AGI-2 (training2 + concept + evaluation2 demos), the paper's 7.8% pass@2",
           ModelConfig(vocab_size=12, seq_len=900, mixer="attention", pos="rope", n=4, T=3),
           replace(_ARC_TRAIN, steps=666667, eval_every=66667),
           {"task": "arc", "path": "data/arc2", "version": "arc2", "augments": 1000, "seed": 0}),
    Preset("maze15-cpu", "15x15 random-wall mazes (shortest path > 30, unique), TRM-Att d=64 n=2 T=2: 60 minutes "
           "on one core",
           replace(_CPU_MODEL, mixer="attention", pos="rope", d=64, heads=4, n=2, T=2, N_sup=8, vocab_size=6,
                   seq_len=225, puzzle_emb_dim=64),
           # attention, not MLP-T: relative positions (RoPE) let one rule spread the search over every cell;
           # the run stops after 60 minutes, with the lr schedule fitted to the steps that fit in them
           replace(_CPU_TRAIN, batch_size=32, steps=20000, warmup_steps=50, ema=0.99, time_budget=60.0,
                   eval_every=250, eval_limit=200),
           # one shortest path a maze: with several, the label is one of them by a tie-break rule, scored as if
           # it were the answer (60 minutes on one core: 12.6% exact; docs/training-recipe.md)
           {"task": "maze", "path": "data/maze15u", "size": 15, "min_path": 30, "wall_density": (0.3, 0.5),
            "unique_path": True, "train": 1000, "test": 500, "seed": 0}),
    Preset("arc1-cpu", "ARC-AGI-1 end to end on a CPU: 20 training + 5 evaluation tasks x 8 versions, d=64 "
           "(checks the pipeline; learns little)",
           replace(_CPU_MODEL, mixer="attention", pos="rope", d=64, heads=4, n=2, T=1, N_sup=4, vocab_size=12,
                   seq_len=900, puzzle_emb_dim=64),
           replace(_CPU_TRAIN, batch_size=16, steps=200, warmup_steps=20, lr=1e-3, puzzle_emb_lr=1e-2, ema=0.95,
                   eval_every=100),
           {"task": "arc", "path": "data/arc1-cpu", "version": "arc1", "augments": 8, "task_limit": 20, "seed": 0}),
    Preset("sudoku4-cpu", "4x4 minimal Sudoku, d=32 n=2 T=2 N_sup=4: ~99% exact in about a minute on 2 cores",
           replace(_CPU_MODEL, d=32, heads=4, n=2, T=2, N_sup=4, vocab_size=6, seq_len=16, puzzle_emb_dim=32),
           replace(_CPU_TRAIN, batch_size=64, steps=300, lr=3e-3, puzzle_emb_lr=3e-3, warmup_steps=20, ema=0.95,
                   eval_every=100),
           {"path": "data/sudoku4", "size": 4, "generate": 1500, "test": 500, "seed": 0}),
    Preset("sudoku6-cpu", "6x6 minimal Sudoku, d=96 n=4 T=2 TRM-MLP (0.2M params): 94% exact after 7.5 training minutes on one core",
           _SUDOKU6_MODEL, _SUDOKU6_TRAIN, _SUDOKU6_DATA),
    Preset("sudoku9-cpu", "9x9 trained on the 17-clue list, d=96 n=4 T=2 TRM-MLP; use --time-budget",
           _SUDOKU9_MODEL, _SUDOKU9_TRAIN,
           {"path": "data/sudoku9-17clue", "size": 9, "pools": ["17clue"], "test": 1000, "seed": 0}),
    # the paper's Sudoku-Extreme protocol on a CPU: 1,000 hard puzzles, augmented on the fly, held-out hard ones
    Preset("sudoku9-hard-cpu", "9x9 trained on 1,000 puzzles of the hard pool (heavy augmentation), tested on "
           "1,000 held-out hard ones; sudoku9-cpu's model and recipe; use --time-budget",
           _SUDOKU9_MODEL, _SUDOKU9_TRAIN,
           {"path": "data/sudoku9-hard", "size": 9, "pools": ["hard"], "train": 1000, "test": 1000, "seed": 0}),
    # the model family on the 6x6 testbed: sudoku6-cpu's backbone and training, one variant flag changed each
    *(Preset(f"sudoku6-{name}-cpu", about, replace(_SUDOKU6_MODEL, **model), replace(_SUDOKU6_TRAIN, **train),
             dict(_SUDOKU6_DATA))
      for name, about, model, train in [
          ("hrm", "HRM on the 6x6 testbed: two networks (z and y updates apart), one-step gradient, Q-learning "
           "halting", dict(networks=2, grad="one_step"), dict(q_continue_loss=True)),
          ("singlez", "single-state TRM on the 6x6 testbed (z = f(z + x) n times, then z = f(z))",
           dict(recursion="singlez"), {}),
          ("multiz", "TRM with n = 4 latents on the 6x6 testbed", dict(recursion="multiz"), {}),
          ("transformer", "no recursion on the 6x6 testbed: one pass of the same 2-layer network per "
           "supervision step, deep supervision as usual", dict(recursion="none", T=1), {}),
          # 8 iterations: twice the n = 4 z-updates it replaces, so a solve may converge where 4 steps could not
          ("deq", "TRM-DEQ on the 6x6 testbed: z solved to a fixed point (Anderson, at most 8 iterations, tol "
           "1e-3), implicit gradient", dict(solver="anderson", fp_grad="implicit", max_iter=8, tol=1e-3), {}),
          ("ssd", "bidirectional Mamba-2 (SSD) mixers in place of MLP-T on the 6x6 testbed (N 32, 6 heads of 16)",
           dict(mixer="ssd", ssd_expand=1, ssd_state=32, ssd_head_dim=16), {}),
      ]),
]}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset '{name}' (trm presets lists them: {', '.join(PRESETS)})")
    p = PRESETS[name]
    return replace(p, model=replace(p.model), train=replace(p.train), data=dict(p.data))
