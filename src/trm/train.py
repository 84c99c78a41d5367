"""The training loop: deep supervision over a fixed-shape ACT carry (the paper's training pseudocode).

One optimizer step per supervision step. The batch is a fixed set of slots (trm.carry.ActCarry); each slot
holds one example and its y, z. After every step, slots whose example halted (q_halt > 0, or N_sup steps
reached) are reset to the initial y, z and refilled with the next examples of the shuffled, augmented
training stream. The loss of a step is trm.losses.act_loss.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import signal
import sys
import threading
import time
import warnings
from dataclasses import asdict, astuple, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from . import checkpoint as ckpt_io
from .atomic import atomic_write_bytes, atomic_write_json, hold_lock
from .carry import ActCarry
from .checks import check_choice, check_range
from .data import augmenter, validator
from .data.format import Dataset, load_dataset
from .evaluate import evaluate, summary_line
from .losses import LOSSES, LossParts, act_loss, q_continue_target
from .model import TRM, Carry, ModelConfig
from .model.memory import check_train_memory
from .optim import OPTIMIZERS, SignSGDEmbedding, build_optimizer, lr_at
from .runtime import autocast, environment, git_commit, init_distributed, loss_dtype, resolve_dtype


@dataclass
class TrainConfig:
    data: str = ""                  # dataset directory (built by `trm data ...`)
    out: str = ""                   # run directory (default runs/<preset>-<time>)
    batch_size: int = 768           # global batch = slots of the ACT carry, split across processes
    steps: int = 65104              # optimizer steps; epochs*examples/batch in the paper (50000*1000/768)
    lr: float = 1e-4                # peak learning rate, reached after the warm-up
    lr_min_ratio: float = 1.0       # cosine floor as a fraction of lr (1.0 = constant after warmup, as published)
    lr_decay_fraction: float = 1.0  # the cosine runs over this last fraction of the schedule (1.0: all of it)
    warmup_steps: int = 2000        # linear warm-up from 0 to lr
    weight_decay: float = 1.0       # decoupled weight decay of the network weights
    beta1: float = 0.9              # Adam's first-moment rate
    beta2: float = 0.95             # Adam's second-moment rate
    optimizer: str = "adam_atan2"   # adam_atan2 (reference), adamw, or muon (the networks' matrices; AdamW the rest)
    muon_lr: float = 0.0            # muon: 0 = lr, the update rescaled to AdamW's RMS; > 0 = Muon's own lr in its
                                    # own scale ("Speed is Confidence": 0.02), following lr's schedule
    muon_weight_decay: float = -1.0  # muon: weight decay of its matrices (< 0 = weight_decay; the paper: 0.005)
    puzzle_emb_lr: float = 1e-4     # sign-SGD on the puzzle-embedding rows of the batch
    puzzle_emb_weight_decay: float = 1.0  # weight decay of the puzzle-embedding rows of the batch
    loss: str = "stablemax"         # stablemax (reference) or softmax cross-entropy
    halt_explore_prob: float = 0.1  # chance that a sample must run at least U{2..N_sup} steps
    N_sup_train: int = 0            # supervision steps an example gets at most in training (0 = the model's N_sup;
                                    # fewer: more new puzzles per step); evaluation runs N_sup (or --D)
    stagger: bool = False           # start the slots at spread-out step counts, so each batch mixes depths and
                                    # puzzles (the reference starts all together: lockstep while Q never halts)
    depth_curriculum: str = ""      # train shallower first (CGAR, arXiv 2511.08653): "n:T@fraction,...", e.g.
                                    # "2:1@0,4:1@0.3,4:2@0.6": from that fraction of the schedule on, that n and T
    N_sup_curriculum: str = ""      # more supervision steps per example later: "N@fraction,...", e.g. "4@0,16@0.6":
                                    # from that fraction of the schedule on, at most N steps (replaces N_sup_train)
    difficulty_curriculum: float = 0.0  # over this first fraction of the schedule, train on the easiest puzzles
                                    # by the dataset's ratings: the easiest quarter, widening to all (0 = off)
    step_weight: float = 1.0        # loss at supervision step s weighted step_weight**(s-1), mean 1 over N_sup
                                    # steps (CGAR's supervision weighting: 0.7; 1 = every step alike)
    q_continue_loss: bool = False   # HRM-style bootstrapped continue loss (off in TRM)
    ema: float = 0.999              # EMA rate of the weights that are evaluated and saved (0 = off)
    augment: bool = True            # on-the-fly augmentation of training examples
    init_from: str = ""             # start from this run's/checkpoint's weights (its architecture; not its
                                    # puzzle embeddings, which belong to its own dataset's identifiers)
    freeze_weights: bool = False    # train only the puzzle embeddings (with init_from): test-time adaptation
                                    # to new ARC tasks, the reference's answer for unseen tasks
    eval_every: int = 5000          # steps between evaluations on the test split
    eval_minutes: float = 0.0       # also evaluate every this many minutes of training time (0 = off)
    eval_limit: int = 0             # test examples per periodic evaluation (0 = all); the final one uses all
    eval_batch_size: int = 256      # puzzles per evaluation batch (memory, not results)
    checkpoint_every: int = 1000    # steps between checkpoints (also every checkpoint_minutes)
    checkpoint_minutes: float = 10.0  # also checkpoint after this many minutes
    log_every: int = 10             # steps between records in metrics.jsonl
    time_budget: float = 0.0        # minutes of training in this invocation, then a clean stop (0 = none);
                                    # the lr schedule is fitted to the steps that the budget allows
    budget_clock: str = "wall"      # what the budget counts: wall (everything) or train (training steps only,
                                    # not evaluations or checkpoints: for comparing recipes by training time)
    seed: int = 0                   # initialisation, data order, augmentation and exploration
    dtype: str = "auto"             # bf16 autocast (fp32 master weights), fp32, or auto: bf16 where fast
    compile: bool = False           # torch.compile the network
    device: str = "auto"            # auto = cuda, then mps, then cpu
    threads: int = 0                # CPU threads (0 = torch's default)
    tensorboard: bool = False       # also write TensorBoard logs to RUN/tensorboard

    def validate(self) -> None:
        """ValueError naming the field, its value and what is allowed, before anything is loaded (a bad value
        used to surface mid-run: log_every 0 as a ZeroDivisionError after the first step)."""
        for k in ("batch_size", "steps", "eval_batch_size", "checkpoint_every", "log_every"):
            check_range(k, getattr(self, k), ge=1)
        check_range("lr", self.lr, gt=0)
        check_range("lr_min_ratio", self.lr_min_ratio, ge=0, le=1, note="a fraction of lr")
        check_range("lr_decay_fraction", self.lr_decay_fraction, gt=0, le=1, note="a fraction of the schedule")
        check_range("ema", self.ema, ge=0, lt=1, note="0 = off")
        for k in ("beta1", "beta2"):
            check_range(k, getattr(self, k), ge=0, lt=1)
        for k in ("weight_decay", "puzzle_emb_lr", "puzzle_emb_weight_decay", "warmup_steps", "threads", "seed",
                  "muon_lr"):
            check_range(k, getattr(self, k), ge=0)
        check_range("halt_explore_prob", self.halt_explore_prob, ge=0, le=1)
        check_range("N_sup_train", self.N_sup_train, ge=0, note="0 = the model's N_sup")
        check_range("difficulty_curriculum", self.difficulty_curriculum, ge=0, le=1, note="0 = off")
        check_range("step_weight", self.step_weight, gt=0)
        for k in ("eval_every", "eval_limit"):
            check_range(k, getattr(self, k), ge=0, note="0 = off" if k == "eval_every" else "0 = all")
        for k in ("eval_minutes", "time_budget"):
            check_range(k, getattr(self, k), ge=0, note="0 = off")
        check_range("checkpoint_minutes", self.checkpoint_minutes, gt=0)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.optimizer != "muon" and (self.muon_lr > 0 or self.muon_weight_decay >= 0):
            raise ValueError(f"muon_lr and muon_weight_decay are for --optimizer muon (got {self.optimizer})")
        check_choice("loss", self.loss, tuple(LOSSES))
        check_choice("budget_clock", self.budget_clock, ("wall", "train"))
        check_choice("dtype", self.dtype, ("auto", "bf16", "fp32"))


def _parse_stages(name: str, text: str, form: str, example: str, parse) -> list[tuple]:
    """ "value@fraction,..." -> [(fraction, *parse(value))] sorted; the fractions in [0, 1) from 0 (one-line errors)."""
    stages = []
    for part in text.split(","):
        try:
            value, frac = part.split("@")
            stages.append((float(frac), *parse(value)))
        except ValueError:
            raise ValueError(f"{name}: '{part}' is not {form}@fraction (e.g. {example})") from None
    stages.sort()
    if stages[0][0] != 0 or any(not 0 <= st[0] < 1 for st in stages):
        raise ValueError(f"{name}: fractions in [0, 1), starting at 0")
    return stages


def _n_and_T(value: str) -> tuple[int, int]:
    n, T = value.split(":")  # ValueError unless exactly one ":"
    return int(n), int(T)


def parse_depth_curriculum(text: str, model_cfg: ModelConfig) -> list[tuple[float, int, int]]:
    """ "n:T@fraction,..." -> [(fraction, n, T)] sorted, starting at fraction 0 (one-line errors)."""
    if not text.strip():
        return []
    stages = _parse_stages("depth_curriculum", text, "n:T", "2:1@0,4:2@0.5",
                           _n_and_T)
    if any(n < 1 or T < 1 for _, n, T in stages):
        raise ValueError("depth_curriculum: n and T >= 1")
    if model_cfg.recursion == "multiz":
        raise ValueError("depth_curriculum: a multi-z model's n is its number of latents and cannot change")
    return stages


def parse_sup_curriculum(text: str, N_sup: int) -> list[tuple[float, int]]:
    """ "N@fraction,..." -> [(fraction, N)] sorted, starting at fraction 0, each N in 1..N_sup (one-line errors)."""
    if not text.strip():
        return []
    stages = _parse_stages("N_sup_curriculum", text, "N", "4@0,16@0.6", lambda v: (int(v),))
    if any(not 1 <= N <= N_sup for _, N in stages):
        raise ValueError(f"N_sup_curriculum: each N from 1 to the model's N_sup ({N_sup})")
    return stages


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a run's metrics.jsonl, in order. A line that is not JSON is skipped: a run appends one
    record a line, so only the last can be torn (the run is writing it, or was killed while it did)."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


class RunStopped(Exception):
    """fit ended before its schedule did (one-line message); `code` is the exit status the CLI gives."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


class Diverged(RunStopped):
    """The loss or the weights became NaN/Inf: the run stopped without saving them."""


@dataclass
class StepStats:
    """What training steps measured, summed over slots (over steps and processes too, between two log lines):
    `halted` to `steps` count the episodes that ended at a step. `metrics` turns the sums into means."""
    loss: float = 0.0            # LossParts.total
    lm_loss: float = 0.0
    q_halt_loss: float = 0.0
    q_continue_loss: float = 0.0
    samples: float = 0.0         # slots stepped
    halted: float = 0.0          # episodes that ended
    exact: float = 0.0           # of those, answers entirely right
    cell: float = 0.0            # of those, the fractions of scored cells right, summed
    steps: float = 0.0           # of those, the supervision steps run, summed
    q_halt_correct: float = 0.0  # slots whose q_halt > 0 agrees with whether the answer is right

    @classmethod
    def measure(cls, parts: LossParts, q_halt: torch.Tensor, halted: torch.Tensor,
                steps: torch.Tensor) -> StepStats:
        h = halted.float()
        sums = {"loss": parts.total.detach(), "lm_loss": parts.lm.detach(), "q_halt_loss": parts.q_halt.detach(),
                "q_continue_loss": parts.q_continue.detach(), "halted": h.sum(), "exact": (h * parts.seq_ok).sum(),
                "cell": (h * parts.cell_ok.sum(-1) / parts.n_cells.clamp_min(1)).sum(), "steps": (h * steps).sum(),
                "q_halt_correct": ((q_halt > 0) == parts.seq_ok).float().sum()}
        values = torch.stack([v.double() for v in sums.values()]).cpu().tolist()  # one transfer, one sync
        return cls(samples=float(len(halted)), **dict(zip(sums, values)))

    def __add__(self, other: StepStats) -> StepStats:
        return StepStats(*(a + b for a, b in zip(astuple(self), astuple(other))))

    def as_tensor(self) -> torch.Tensor:  # for the all-reduce
        return torch.tensor(astuple(self), dtype=torch.float64)

    @classmethod
    def from_tensor(cls, t: torch.Tensor) -> StepStats:
        return cls(*t.tolist())

    def metrics(self) -> dict:
        """Losses and Q accuracy per slot; accuracies and steps per ended episode."""
        per_slot, per_episode = self.samples, max(self.halted, 1.0)
        return {"loss": self.loss / per_slot, "lm_loss": self.lm_loss / per_slot,
                "q_halt_loss": self.q_halt_loss / per_slot, "q_continue_loss": self.q_continue_loss / per_slot,
                "halted": self.halted, "exact_accuracy": self.exact / per_episode,
                "cell_accuracy": self.cell / per_episode, "mean_steps": self.steps / per_episode,
                "q_halt_accuracy": self.q_halt_correct / per_slot}


class Trainer:
    # settings a resumed run may change without changing its maths
    RESUMABLE = ("time_budget", "budget_clock", "device", "threads", "steps", "eval_every", "eval_minutes",
                 "eval_limit", "eval_batch_size", "checkpoint_every", "checkpoint_minutes", "log_every",
                 "tensorboard")

    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig, *, preset: str = "", resume: str = "",
                 overrides: dict | None = None, progress: bool = True, command: list[str] | None = None):
        self.command = list(sys.argv if command is None else command)  # recorded in config.json
        self._lock = None  # the open train.lock of the main process, while it trains the run
        self._made_dir = False  # whether this process created the run folder (removed again if set-up fails)
        try:
            self._setup(model_cfg, cfg, preset=preset, resume=resume, overrides=overrides, progress=progress)
        except BaseException:
            self.close()
            if self._made_dir:  # a refused new run leaves no empty folder behind
                (self.run_dir / ckpt_io.LOCK).unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    self.run_dir.rmdir()
            raise

    def close(self) -> None:
        """Let another process train this run (fit does this when it ends, however it ends)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _hold_run(self) -> None:
        """One writer per run folder: two processes would interleave their metrics and checkpoints."""
        if self.main and self._lock is None:
            self._made_dir = not self.run_dir.exists()
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._lock = hold_lock(self.run_dir / ckpt_io.LOCK, f"run {self.run_dir}")

    def _setup(self, model_cfg: ModelConfig, cfg: TrainConfig, *, preset: str, resume: str,
               overrides: dict | None, progress: bool) -> None:
        self.cfg, self.preset, self.progress = cfg, preset, progress
        if resume:  # the run's own config, with the runtime flags given now (threads, device, ...) on top
            self.run_dir = ckpt_io.run_dir_of(resume)
            saved = ckpt_io.load_config(ckpt_io.resolve_checkpoint(self.run_dir))
            model_cfg = ModelConfig(**saved["model"])
            bad = sorted(set(overrides or {}) - set(self.RESUMABLE))
            if bad:
                raise ValueError(f"cannot change {', '.join(bad)} when resuming (only {', '.join(self.RESUMABLE)})")
            self.cfg = cfg = TrainConfig(**{**saved["train"], **(overrides or {})})
            self.preset = saved.get("preset", preset)
        else:
            self.run_dir = Path(cfg.out)
        cfg.validate()  # before the dataset is loaded or anything allocated: one line naming the bad value
        model_cfg.validate()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.rank, self.world, self.device = init_distributed(cfg.device)
        self.main = self.rank == 0
        if self.main and not resume:
            ckpt_io.check_new_run_dir(self.run_dir)
        self._hold_run()
        # read under the lock: the checkpoint a running writer may be replacing
        resume_state = ckpt_io.load_train_state(ckpt_io.resolve_checkpoint(self.run_dir)) if resume else None
        self.dtype = resolve_dtype(cfg.dtype, self.device)
        self.data: Dataset = load_dataset(cfg.data)
        self.data_fingerprint = self.data.fingerprint
        if resume and saved.get("data_fingerprint") not in (None, self.data_fingerprint):
            raise ValueError(f"dataset {cfg.data} is not the one run {self.run_dir} trained on (its content changed: "
                             f"fingerprint {self.data_fingerprint[:12]}, the run's {saved['data_fingerprint'][:12]}); "
                             f"restore that dataset or start a new run")
        self.train_split, self.test_split = self.data["train"], self.data["test"]
        if len(self.train_split) == 0:
            raise ValueError(f"dataset {cfg.data} has no training examples (built with --train 0: evaluation only)")
        meta = self.data.meta
        init_ckpt = ckpt_io.resolve_checkpoint(cfg.init_from) if cfg.init_from and not resume else None
        if init_ckpt is not None:
            model_cfg = ModelConfig(**ckpt_io.load_config(init_ckpt)["model"])
            if (model_cfg.vocab_size, model_cfg.seq_len) != (int(meta["vocab_size"]), int(meta["seq_len"])):
                raise ValueError(f"dataset {cfg.data} (vocab {meta['vocab_size']}, seq_len {meta['seq_len']}) does "
                                 f"not fit {cfg.init_from} (vocab {model_cfg.vocab_size}, seq_len {model_cfg.seq_len})")
        if cfg.freeze_weights and not (init_ckpt is not None or resume):
            raise ValueError("--freeze-weights trains only the puzzle embeddings: give --init-from RUN_DIR")
        model_cfg.vocab_size, model_cfg.seq_len = int(meta["vocab_size"]), int(meta["seq_len"])
        model_cfg.num_puzzle_ids = int(meta["num_puzzle_ids"])
        self.model_cfg = model_cfg
        check_train_memory(model_cfg, cfg.batch_size, self.device, dtype=self.dtype, ema=cfg.ema > 0,
                           world=self.world)  # refused before the model and the carry are allocated
        self.augment = augmenter(meta) if cfg.augment else None

        torch.manual_seed(cfg.seed)  # same init on every process
        self.model = TRM(model_cfg).to(self.device)
        if init_ckpt is not None:
            self._init_from(init_ckpt)
        if cfg.freeze_weights:
            if self.model.puzzle_emb is None:
                raise ValueError("--freeze-weights trains only the puzzle embeddings, and this model has none")
            self.model.requires_grad_(False)
        # The EMA copy shares the puzzle-embedding table: the table is trained by sign-SGD, not averaged, and at
        # ARC scale (876k ids x 512) a copy would cost another 1.8 GB. Frozen weights need no average.
        table = self.model.puzzle_emb.weight if self.model.puzzle_emb is not None else None
        shared = {id(table): table} if table is not None else {}
        self.ema_model = copy.deepcopy(self.model, shared).eval() if cfg.ema > 0 and not cfg.freeze_weights else None
        self.net = self.model  # what the forward is called on: DDP wrapper when distributed
        if cfg.compile:  # the networks, not the model: nn.Module.compile() (the whole unrolled step) compiled in
            # 174 s against 59 s, for no faster step (d=64, n=6, T=3, CPU)
            self.model.compile_networks()
        if self.world > 1 and not cfg.freeze_weights:  # frozen: no gradients to average (sign-SGD syncs rows)
            # buffers are not broadcast: the tables stay equal through sign-SGD's gathered updates, and
            # broadcasting a 1.8 GB table every step would dominate the step
            # (torch 2.13 deprecates broadcast_buffers; its successor still syncs the buffers at init)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*broadcast_buffers", category=FutureWarning)
                self.net = torch.nn.parallel.DistributedDataParallel(
                    self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                    broadcast_buffers=False)
        self.opt = build_optimizer(self.model.named_parameters(), name=cfg.optimizer, lr=cfg.lr,
                                   weight_decay=cfg.weight_decay, betas=(cfg.beta1, cfg.beta2),
                                   muon_lr=cfg.muon_lr, muon_weight_decay=cfg.muon_weight_decay)
        self.emb_opt = (SignSGDEmbedding(self.model.puzzle_emb, lr=cfg.puzzle_emb_lr,
                                         weight_decay=cfg.puzzle_emb_weight_decay)
                        if self.model.puzzle_emb is not None else None)
        if cfg.loss not in LOSSES:
            raise ValueError(f"unknown loss '{cfg.loss}' (choose {' or '.join(LOSSES)})")
        if cfg.N_sup_train < 0:
            raise ValueError(f"N_sup_train must be >= 0 (0 = the model's N_sup), not {cfg.N_sup_train}")
        self.N_sup_train = min(cfg.N_sup_train or model_cfg.N_sup, model_cfg.N_sup)  # at most the model's N_sup
        self.sup_curriculum = parse_sup_curriculum(cfg.N_sup_curriculum, model_cfg.N_sup)
        if self.sup_curriculum:
            first = self.sup_curriculum[0][1]
            if cfg.N_sup_train not in (0, first):
                raise ValueError(f"N_sup_curriculum starts at {first} supervision steps and N_sup_train is "
                                 f"{cfg.N_sup_train}: give --N_sup_train {first} (or 0), or change the curriculum")
            self.N_sup_train = first
        self.act = ActCarry(self.model, self.train_split, batch_size=cfg.batch_size, N_sup=self.N_sup_train,
                            seed=cfg.seed, device=self.device, augment=self.augment,
                            halt_explore_prob=cfg.halt_explore_prob, q_continue=cfg.q_continue_loss,
                            rank=self.rank, world=self.world, stagger=cfg.stagger)
        self.curriculum = parse_depth_curriculum(cfg.depth_curriculum, model_cfg)
        self.ratings = None
        if cfg.difficulty_curriculum:
            if not 0 < cfg.difficulty_curriculum <= 1:
                raise ValueError(f"difficulty_curriculum is a fraction of the schedule in (0, 1], not "
                                 f"{cfg.difficulty_curriculum}")
            if "ratings" not in self.train_split.extras:
                raise ValueError(f"difficulty_curriculum needs ratings, and {cfg.data} has none (Sudoku datasets "
                                 f"built by trm data sudoku have them)")
            self.ratings = np.asarray(self.train_split.extras["ratings"])
            self.sorted_ratings = np.sort(self.ratings)  # once: the quantile of every step is then a lookup
        if cfg.step_weight <= 0:
            raise ValueError(f"step_weight must be > 0, not {cfg.step_weight}")
        most = max([self.N_sup_train] + [N for _, N in self.sup_curriculum])
        w = cfg.step_weight ** torch.arange(most, dtype=torch.float64)
        self.step_weights = (w / w.mean()).to(self.device) if cfg.step_weight != 1 else None
        self.step = 0
        self.horizon = cfg.steps  # last step of the lr schedule: cfg.steps, or fewer under a time budget
        self.schedule_start, self.schedule_warmup = 0, cfg.warmup_steps  # where the current cosine begins
        self.elapsed_before = 0.0
        self.train_seconds = 0.0  # time spent in training steps (not evaluating or saving), over all sessions
        if resume_state is not None:
            self._load_state(resume_state)
            if "steps" in (overrides or {}):  # a new length re-plans the schedule
                self.horizon = cfg.steps
            elif cfg.time_budget and self.step >= self.horizon:
                self._extend()

    def _all_reduce(self, t: torch.Tensor, op=None) -> torch.Tensor:
        """All-reduce a small CPU tensor (on the device: NCCL cannot reduce CPU tensors); returns it on CPU."""
        if self.world == 1:
            return t
        d = t.to(self.device)
        dist.all_reduce(d, op=op if op is not None else dist.ReduceOp.SUM)
        return d.cpu()

    # --- one supervision step -----------------------------------------------------------------------------
    def train_step(self) -> dict:
        """Refill the halted slots, run one supervision step on all, update the weights and halt: returns the
        learning rate used and the step's StepStats."""
        cfg, act = self.cfg, self.act
        if self.sup_curriculum:  # the stage of this step; a slot past a smaller N halts after this step
            act.N_sup = [N for f, N in self.sup_curriculum if f <= self._progress()][-1]
        act.refill(self.step, self._allowed())
        lr = lr_at(self.step - self.schedule_start, base=cfg.lr, warmup=self.schedule_warmup,
                   total=self.horizon - self.schedule_start, min_ratio=cfg.lr_min_ratio,
                   decay_fraction=cfg.lr_decay_fraction)
        for g in self.opt.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)  # a group at its own peak lr (Muon's) keeps the schedule's shape
        if self.emb_opt is not None:
            self.emb_opt.lr = lr * cfg.puzzle_emb_lr / cfg.lr

        self.model.train()
        with self._depth(), autocast(self.device, self.dtype):
            new_carry, out = self.net(act.carry, act.inputs, act.puzzle_ids)
            target = self._q_continue_target(new_carry) if cfg.q_continue_loss else None
        weights = self.step_weights[act.steps.clamp_max(len(self.step_weights) - 1)] \
            if self.step_weights is not None else None
        parts = act_loss(out.logits, act.labels, out.q_halt, out.q_continue, loss=cfg.loss, q_continue_target=target,
                         loss_dtype=loss_dtype(self.device), weights=weights)
        loss = parts.total / act.B  # DDP averages over processes: the mean over the global batch
        jac = self.model.pop_jacobian_loss()  # the fixed-point variant's Jacobian penalty (None when off)
        (loss if jac is None else loss + jac).backward()

        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if self.emb_opt is not None:
            self.emb_opt.step()
        if self.ema_model is not None:
            with torch.no_grad():
                ema_p, p = list(self.ema_model.parameters()), list(self.model.parameters())
                torch._foreach_lerp_(ema_p, p, 1 - cfg.ema)

        act.halt(new_carry, out.q_halt, out.q_continue)
        self.step += 1
        return {"lr": lr, "stats": StepStats.measure(parts, out.q_halt, act.halted, act.steps)}

    def _progress(self) -> float:
        """How far along the current lr schedule this step is (0 to 1)."""
        return (self.step - self.schedule_start) / max(1, self.horizon - self.schedule_start)

    def _allowed(self) -> np.ndarray | None:
        """Under a difficulty curriculum, the training examples this step may take: those rated at most the
        q-quantile of the ratings, q growing from 1/4 to 1 over the curriculum's fraction of the schedule."""
        f = self.cfg.difficulty_curriculum
        if not f or self._progress() >= f:
            return None
        q = 0.25 + 0.75 * self._progress() / f
        return self.ratings <= self.sorted_ratings[int(q * (len(self.ratings) - 1))]  # numpy's "lower" quantile

    @contextlib.contextmanager
    def _depth(self):
        """Under a depth curriculum, the step runs with the stage's n and T (evaluation always uses the
        model's own)."""
        if not self.curriculum:
            yield
            return
        _, n, T = [s for s in self.curriculum if s[0] <= self._progress()][-1]
        c = self.model.cfg
        saved = c.n, c.T
        c.n, c.T = n, T
        try:
            yield
        finally:
            c.n, c.T = saved

    def _extend(self) -> None:
        """Resumed with a time budget after the schedule ended: a new warm-up + cosine segment from here, whose
        end the budget fits (the optimizer state, data order and carry go on as they were)."""
        self.schedule_start = self.step
        self.schedule_warmup = min(self.cfg.warmup_steps, 50)  # a short re-warm: Adam's moments are kept
        self.horizon = self.step + 10**9  # until _fit_horizon measures what fits

    def _q_continue_target(self, new_carry: Carry) -> torch.Tensor:
        """HRM's bootstrapped continue target (losses.q_continue_target) from the next step, run without
        gradients from the detached carry."""
        with torch.no_grad():
            _, nxt = self.model(new_carry, self.act.inputs, self.act.puzzle_ids)
        return q_continue_target(nxt.q_halt, nxt.q_continue, self.act.is_last())

    # --- evaluation, state, checkpoints -------------------------------------------------------------------
    def eval_model(self) -> TRM:
        return self.model if self.ema_model is None else self.ema_model  # same puzzle-embedding table

    def _init_from(self, ckpt: Path) -> None:
        """Start from a trained checkpoint's (EMA) weights. Its puzzle-embedding table stays behind: its rows are
        its own dataset's puzzles; the new dataset's rows start at zero, like any new identifier."""
        weights = ckpt_io.load_weights(ckpt)
        weights.pop("puzzle_emb.weight", None)
        missing, unexpected = self.model.load_state_dict(weights, strict=False)
        if unexpected or set(missing) - {"puzzle_emb.weight"}:
            raise ckpt_io.CheckpointError(f"{ckpt} does not match its config ({(unexpected or missing)[0]})")

    def config_dict(self) -> dict:
        return {"model": asdict(self.model_cfg), "train": asdict(self.cfg), "preset": self.preset,
                "data_meta": {k: v for k, v in self.data.meta.items() if k not in ("sources",)},
                "data_fingerprint": self.data_fingerprint, "step": self.step}

    def _state(self, elapsed: float) -> dict:
        """The content of train_state.pt (collective: the ACT carry is gathered from every process)."""
        return {"step": self.step, "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "ema": self.ema_model.state_dict() if self.ema_model is not None else {},
                **self.act.state(),  # "stream", "gen", "slots"
                "elapsed": elapsed, "world_size": self.world, "horizon": self.horizon,
                "schedule": [self.schedule_start, self.schedule_warmup], "train_seconds": self.train_seconds}

    def _load_state(self, st: dict) -> None:
        self.model.load_state_dict(st["model"])
        try:
            self.opt.load_state_dict(st["optimizer"])
        except ValueError as e:  # e.g. a group count that differs: another --optimizer, or a run of an older trm
            raise ckpt_io.CheckpointError(f"the run's optimizer state does not fit this optimizer ({e}); was "
                                          f"--optimizer changed?") from None
        if self.ema_model is not None and st["ema"]:
            self.ema_model.load_state_dict(st["ema"])
        self.act.load_state(st)
        self.step, self.elapsed_before = int(st["step"]), float(st["elapsed"])
        self.schedule_start, self.schedule_warmup = (int(v) for v in st.get("schedule", [0, self.cfg.warmup_steps]))
        self.horizon = int(st.get("horizon", self.cfg.steps))
        if self.schedule_start == 0:
            self.horizon = min(self.horizon, self.cfg.steps)
        self.train_seconds = float(st.get("train_seconds", 0.0))

    def save(self, elapsed: float) -> None:
        # a checkpoint is written only of finite weights: the loss is checked every step, but the update of a
        # checkpoint's own step has not met a loss yet (the weights are the same on every process)
        tensors = {(t.data_ptr(), t.numel()): t for m in (self.model, self.ema_model) if m is not None
                   for t in m.state_dict().values() if t.is_floating_point()}  # the shared table once
        if not bool(torch.stack([t.isfinite().all() for t in tensors.values()]).all()):
            raise Diverged(f"the weights are not finite after step {self.step}: {self._kept()}")
        state = self._state(elapsed)  # collective: every process takes part
        if self.main:
            weights = self.eval_model().state_dict()
            ckpt_io.save_checkpoint(self.run_dir, weights, self.config_dict(), state)

    # --- the loop -----------------------------------------------------------------------------------------
    def fit(self) -> dict | None:
        """Train to the end of the schedule (or the time budget), checkpoint and evaluate: the final figures
        (on the main process). Raises RunStopped after a signal (checkpoint saved) or Diverged at a
        non-finite loss (nothing saved)."""
        try:
            return self._fit()
        finally:
            self.close()  # the run folder is free again, however fit ended

    def _fit(self) -> dict | None:
        cfg = self.cfg
        if cfg.budget_clock not in ("wall", "train"):
            raise ValueError(f"budget_clock must be wall or train, not '{cfg.budget_clock}'")
        start = time.monotonic()
        self._train_seconds_at_start = self.train_seconds
        metrics_path = self.run_dir / "metrics.jsonl"
        self._hold_run()  # held since __init__, unless fit runs again
        if self.main:
            self._trim_metrics(metrics_path)
            record = {**self.config_dict(), "git_commit": git_commit(),
                      "environment": {**environment(self.device), "dtype": self.dtype},
                      "command": self.command}
            atomic_write_json(self.run_dir / "config.json", record)
        tb = self._tensorboard()
        # SIGTERM (a scheduler's kill) and Ctrl-C stop at the end of the step: checkpoint, then RunStopped
        stop = {"signal": 0}
        prev = self._catch_signals(stop)
        bar = tqdm(total=self.horizon, initial=self.step, disable=not (self.main and self.progress),
                   dynamic_ncols=True, unit="step")
        acc = StepStats()
        last_ckpt_time, last_log = time.monotonic(), time.monotonic()
        samples_since = 0
        fit_at = self.step + 20 if cfg.time_budget else -1  # measure 10 steps after 10 of warm-up
        fitted = None  # (budget used, step) at the first fit: later fits average the rate since then
        next_eval_min = (self.train_seconds / 60 // cfg.eval_minutes + 1) * cfg.eval_minutes if cfg.eval_minutes else 0
        sig = 0
        try:
            while self.step < self.horizon:
                if self.step == fit_at - 10:
                    t_fit = time.monotonic()
                if self.step == fit_at:
                    self._fit_horizon(bar, start, (time.monotonic() - t_fit) / 10)
                    fitted = (self._budget_used(start), self.step)
                    next_fit = fitted[0] + cfg.time_budget * 6  # then again after every tenth of the budget
                elif fitted is not None and self.step > fitted[1] and self._budget_used(start) >= next_fit:
                    # the rate of the first 20 steps can be far off (a loaded machine, a warming cache): refit
                    # from the mean since then, which already holds the evaluations the budget's clock counts
                    used = self._budget_used(start)
                    self._fit_horizon(bar, start, (used - fitted[0]) / (self.step - fitted[1]), measured=True)
                    next_fit += cfg.time_budget * 6
                t_step = time.monotonic()
                r = self.train_step()
                self.train_seconds += time.monotonic() - t_step
                acc += r["stats"]
                samples_since += cfg.batch_size
                bar.update(1)
                # one all-reduce, and no sync of its own: the step's stats are already on the CPU
                timed_out = cfg.time_budget and self._budget_used(start) > cfg.time_budget * 60
                sig, timed_out, nonfinite = self._all_reduce(torch.tensor(
                    [float(stop["signal"]), float(bool(timed_out)), float(not math.isfinite(r["stats"].loss))]),
                    op=dist.ReduceOp.MAX).tolist()
                if nonfinite:  # these weights are lost; the last checkpoint holds the last finite ones
                    raise Diverged(f"loss is {'NaN' if math.isnan(r['stats'].loss) else 'infinite'} at step "
                                   f"{self.step}: {self._kept()}")
                if self.step % cfg.log_every == 0 or self.step == self.horizon:
                    acc = StepStats.from_tensor(self._all_reduce(acc.as_tensor()))
                    now = time.monotonic()
                    m = {"step": self.step, "lr": r["lr"], **acc.metrics(),
                         "samples_x_steps_per_s": samples_since / max(1e-9, now - last_log),
                         "elapsed_s": round(self.elapsed_before + now - start, 1)}
                    if self.model_cfg.uses_solver:  # the fixed-point solves since the last record
                        m.update({f"solver_{k}": v for k, v in self.model.solver_stats().items()})
                    acc, samples_since, last_log = StepStats(), 0, now
                    if self.main:
                        bar.set_postfix(loss=f"{m['loss']:.3f}", acc=f"{m['exact_accuracy']:.3f}",
                                        steps=f"{m['mean_steps']:.1f}")
                        self._log(metrics_path, tb, m)
                due = cfg.eval_every and self.step % cfg.eval_every == 0
                if cfg.eval_minutes:  # on a clock of training time, the same on every process (all-reduced)
                    mins = float(self._all_reduce(torch.tensor([self.train_seconds / 60]), op=dist.ReduceOp.MAX)
                                 [0]) if self.world > 1 else self.train_seconds / 60
                    if mins >= next_eval_min:
                        due, next_eval_min = True, (mins // cfg.eval_minutes + 1) * cfg.eval_minutes
                if due and self.step < self.horizon:
                    self._periodic_eval(metrics_path, tb)
                if sig or timed_out:
                    if not sig:
                        bar.write(f"stopping at step {self.step}: time budget reached")
                    break
                if (self.step % cfg.checkpoint_every == 0
                        or time.monotonic() - last_ckpt_time > cfg.checkpoint_minutes * 60):
                    self.save(self.elapsed_before + time.monotonic() - start)
                    last_ckpt_time = time.monotonic()
        finally:
            bar.close()
            for s, handler in prev.items():
                signal.signal(s, handler)
        self.save(self.elapsed_before + time.monotonic() - start)
        if sig:  # no final evaluation: a scheduler's grace period is short
            self._leave_group()
            raise RunStopped(f"stopped by {signal.Signals(int(sig)).name} at step {self.step}; checkpoint saved, "
                             f"resume with trm train --resume {self.run_dir}", code=128 + int(sig))
        result = self.final_eval(metrics_path, tb)
        if tb is not None:
            tb.close()
        self._leave_group()
        return result

    def _leave_group(self) -> None:
        if self.world > 1:  # leave the group on every rank; the process then ends through runtime.exit_worker
            dist.barrier()
            dist.destroy_process_group()

    @staticmethod
    def _catch_signals(stop: dict) -> dict:
        """SIGTERM and SIGINT set stop["signal"]; a second Ctrl-C interrupts at once. Returns the handlers to
        put back. Every process catches them: torchrun hands a signal to all of its workers."""
        if threading.current_thread() is not threading.main_thread():
            return {}  # only the main thread may set handlers

        def handler(signum, _frame):
            stop["signal"] = signum
            if signum == signal.SIGINT:
                signal.signal(signal.SIGINT, signal.default_int_handler)
                os.write(2, b"\ntrm: stopping after this step (Ctrl-C again to quit at once, unsaved)\n")
        return {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}

    def _kept(self) -> str:
        """What a stop without saving leaves: the last checkpoint, if any."""
        try:
            ckpt = ckpt_io.resolve_checkpoint(self.run_dir)
            step = ckpt_io.load_config(ckpt).get("step", "?")
        except ckpt_io.CheckpointError:
            return "stopped before any checkpoint (try a lower --lr or a longer --warmup_steps)"
        return (f"stopped; the last checkpoint ({ckpt}, step {step}) is kept (try a lower --lr or a longer "
                f"--warmup_steps in a new run)")

    def _fit_horizon(self, bar, start: float, s_per_step: float, measured: bool = False) -> None:
        """Under a time budget, end the lr schedule (warm-up, cosine) at the step the budget reaches, so a
        short run anneals instead of stopping at a high learning rate. Periodic evals are charged as well
        (estimated at the first fit; `measured`: s_per_step is a mean over the run that already holds them).
        Called again every tenth of the budget, the horizon moves both ways, never past `steps` (an extension
        of a finished run has no such cap)."""
        left = self.cfg.time_budget * 60 - self._budget_used(start)
        cap = self.cfg.steps if self.schedule_start == 0 else 10**9
        n_evals = int(left / 60 / self.cfg.eval_minutes) if self.cfg.eval_minutes else 0
        n_evals += min(cap - self.step, int(left / max(s_per_step, 1e-9))) // self.cfg.eval_every \
            if self.cfg.eval_every else 0
        if self.cfg.budget_clock == "train" or measured:
            n_evals = 0  # evaluations are not on this clock, or already in the measured rate
        eval_s = s_per_step / 3 * self.model_cfg.N_sup * min(len(self.test_split), self.cfg.eval_limit or 10**9) \
            / self.cfg.batch_size  # forward only: about a third of a training step per sample and step
        steps_left = max(1, int(left / max(s_per_step, 1e-9)))
        fits = self.step + int(0.95 * left / (s_per_step + eval_s * n_evals / steps_left))
        if self.world > 1:  # every process must end at the same step: the slowest one's estimate
            fits = int(self._all_reduce(torch.tensor([float(fits)]), op=dist.ReduceOp.MIN)[0])
        new = min(cap, max(self.step + 1, fits))
        if new != self.horizon:
            self.horizon = new
            bar.total = self.horizon
            bar.refresh()
            if self.main:
                tqdm.write(f"time budget {self.cfg.time_budget:g} min at {s_per_step:.2f} s/step: the lr schedule "
                           f"now ends at step {self.horizon}")

    def _budget_used(self, start: float) -> float:
        """Seconds of this invocation's budget used: wall-clock, or training steps only."""
        if self.cfg.budget_clock == "train":
            return self.train_seconds - self._train_seconds_at_start
        return time.monotonic() - start

    def _evaluate(self, model: TRM, **kw) -> dict:
        """`evaluate` on the test split; in a process group every rank runs its share of the puzzles and all
        get the figures of the whole split."""
        return evaluate(model, self.test_split, batch_size=self.cfg.eval_batch_size, dtype=self.dtype,
                        progress=self.progress and self.main, shard=(self.rank, self.world), **kw)

    def final_eval(self, metrics_path: Path, tb=None) -> dict | None:
        """Every rank evaluates its share; the main process records the figures and returns them."""
        m = self._evaluate(self.eval_model(), desc="final eval", validity=validator(self.data.meta))
        result = {"step": self.step, "train_s": round(self.train_seconds, 3),
                  "weights": "ema" if self.ema_model is not None else "raw", **m}
        if self.ema_model is not None:  # short CPU runs: the raw weights can be ahead of a slow EMA
            raw = self._evaluate(self.model, desc="final eval (raw)")
            result["raw"] = {k: raw[k] for k in ("exact_accuracy", "cell_accuracy", "exact_accuracy_at_halt")}
        if not self.main:
            return None
        atomic_write_json(self.run_dir / "eval.json", result)
        self._log(metrics_path, tb, {"step": self.step, "final_eval": {k: result[k] for k in
                                                                     ("exact_accuracy", "cell_accuracy")}})
        return result

    def _periodic_eval(self, metrics_path: Path, tb) -> None:
        m = self._evaluate(self.eval_model(), limit=self.cfg.eval_limit)
        if self.main:
            tqdm.write(f"step {self.step}: test {summary_line(m)}")
            self._log(metrics_path, tb, {"step": self.step, "train_s": round(self.train_seconds, 3), "eval": m})

    def _log(self, path: Path, tb, record: dict) -> None:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step":
                    tb.add_scalar(f"train/{k}", v, record["step"])

    def _trim_metrics(self, path: Path) -> None:
        """On resume, drop records written after the checkpoint by the run that was killed."""
        if not path.exists():
            return
        keep, lines = [], [ln for ln in path.read_text().splitlines() if ln.strip()]
        for i, ln in enumerate(lines):
            try:
                step = json.loads(ln).get("step", 0)
            except json.JSONDecodeError:
                if i < len(lines) - 1:  # appends only: a broken line before the last is not a kill's
                    raise ValueError(f"{path}:{i + 1} is not a JSON record: repair or remove that line") from None
                print(f"warning: {path}: dropped a torn last line (the run was killed while writing it)",
                      file=sys.stderr)
                continue
            if step <= self.step:
                keep.append(ln)
        atomic_write_bytes(path, ("\n".join(keep) + "\n").encode() if keep else b"")

    def _tensorboard(self):
        if not (self.cfg.tensorboard and self.main):
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ValueError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
        return SummaryWriter(str(self.run_dir / "tensorboard"))
