"""The claims table: every arm of every claim of the papers, run over seeds on one CPU testbed, each run cached,
and the verdicts written up as docs/claims.md (`trm claims`; what is claimed lives in trm.claims_spec).

A run is one arm at one seed: a `trm train` (the budget counts training time only, one thread), a
`trm eval`/`trm sweep`/`trm analyze` on the checkpoint of a train arm at the same seed, or a `trm params
--backward-memory` measurement of a preset (no training). Its folder is named by
a hash of what decides its result (the arm's preset, what it resolves to, and flags, the seed, the testbed, the
budget; not the commit, so a new commit reuses old runs: each run records its own commit). A finished run is
reused, a killed `trm train` resumed from its checkpoint with the training time it has left.
trm.claims_report writes the table.

Each finished run's result and record (command, machine, commit) are also kept in a store meant for git
(docs/claims/results, one small JSON a run): a checkout on a new machine, whose cache is empty, reuses them and
reruns only what is missing, so the table can be built over several sessions. A run is done when either holds
its result; a stored training run whose checkpoint is not here is trained again only if a run on its
checkpoint is still to do.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from .atomic import atomic_write_json

Kind = Literal["train", "eval", "sweep", "analyze", "memory"]
KINDS = ("train", "eval", "sweep", "analyze", "memory")
Z = 2.0          # a difference counts when it is beyond Z combined standard errors
MIN_SEEDS = 3    # fewer seeds: inconclusive, whatever the numbers
STEPS_UNBOUNDED = 100_000  # a testbed's steps at this or more: more than fit, so its minutes decide
TRAIN_OVERHEAD_MIN = 1.0  # CPU minutes a train run spends outside its budget (start, checkpoints, the final
                          # evaluation of the EMA and the raw weights): for --dry-run's estimate only


# --- the spec's types ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Testbed:
    """One task and budget on which the default TRM lands in the middle (neither 0% nor 100% exact), so an
    ablation's effect can show: the papers' regime of little data (few puzzles, heavy augmentation)."""
    preset: str = "sudoku6-cpu"     # what every train arm starts from (an arm may name another preset)
    size: int = 6                   # Sudoku grid side (trm data sudoku --size)
    train_puzzles: int = 300        # generated training puzzles, augmented on the fly
    test_puzzles: int = 1000        # held-out puzzles the final evaluation scores
    data_seed: int = 0
    minutes: float = 10.0           # training minutes per run (train clock, one thread); a claim may set its own
    steps: int = STEPS_UNBOUNDED    # optimizer steps at most; below STEPS_UNBOUNDED they decide, minutes cap
    step_seconds: float = 1.1       # a train step's seconds, for --dry-run's estimate of a step budget only
    flags: tuple[str, ...] = ("--eval_every", "0")  # on every train run, before the arm's own flags

    def data_argv(self, out: Path) -> list[str]:
        return ["data", "sudoku", "--size", str(self.size), "--generate", str(self.train_puzzles + self.test_puzzles),
                "--test", str(self.test_puzzles), "--seed", str(self.data_seed), "--out", str(out)]


@dataclass(frozen=True)
class Metric:
    label: str                       # what the number is, for the table
    read: Callable[[dict], float]    # the number, from a run's result (eval.json, eval's JSON, sweep.json, report.json)


@dataclass(frozen=True)
class Arm:
    name: str
    flags: tuple[str, ...] = ()      # flags of its trm command (train: on top of the preset and testbed flags)
    kind: Kind = "train"
    preset: str = ""                 # train, memory: the preset (default: the testbed's)
    on: str = ""                     # eval/sweep/analyze: the train arm of the claim whose checkpoints it uses
    checkpoint: str = ""             # eval/sweep: one fixed checkpoint (a run folder) instead of a train arm's;
                                     # the seed is then the noise seed (--seeds)
    data: str = ""                   # with checkpoint: the preset whose dataset it is scored on
    metric: Metric | None = None     # default: the claim's
    minutes: float = 0.0             # eval/sweep/analyze: CPU minutes a run takes, roughly (for --dry-run)


@dataclass(frozen=True)
class Stats:
    """One arm's numbers over seeds: mean, sample std (n - 1) and standard error."""
    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return sum(self.values) / self.n if self.n else math.nan

    @property
    def std(self) -> float:
        if self.n < 2:
            return 0.0 if self.n else math.nan
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (self.n - 1))

    @property
    def se(self) -> float:
        return self.std / math.sqrt(self.n) if self.n else math.nan


def _gap(a: Stats, b: Stats) -> tuple[float, float]:
    """mean(a) - mean(b) and its combined standard error."""
    return a.mean - b.mean, math.hypot(a.se, b.se)


Gap = Callable[[str, str], tuple[float, float]]  # (arm a, arm b) -> mean(a) - mean(b) and its standard error


def _unpaired(s: dict[str, Stats]) -> Gap:
    return lambda a, b: _gap(s[a], s[b])


@dataclass(frozen=True)
class Lower:
    """Arm `arm` scores lower than arm `than`."""
    arm: str
    than: str

    def arms(self) -> tuple[str, ...]:
        return self.arm, self.than

    def judge(self, s: dict[str, Stats], gap: Gap | None = None) -> str:
        d, se = (gap or _unpaired(s))(self.than, self.arm)
        return "holds" if d > Z * se else "does not hold" if d < -Z * se else "inconclusive"

    def describe(self) -> str:
        return f"{self.arm} lower than {self.than}"


@dataclass(frozen=True)
class Higher(Lower):
    """Arm `arm` scores higher than arm `than`."""

    def judge(self, s: dict[str, Stats], gap: Gap | None = None) -> str:
        return Lower(self.than, self.arm).judge(s, gap)

    def describe(self) -> str:
        return f"{self.arm} higher than {self.than}"


@dataclass(frozen=True)
class Close:
    """Arms `arm` and `to` differ by less than `within` (a fraction: 0.02 = 2 points)."""
    arm: str
    to: str
    within: float

    def arms(self) -> tuple[str, ...]:
        return self.arm, self.to

    def judge(self, s: dict[str, Stats], gap: Gap | None = None) -> str:
        d, se = (gap or _unpaired(s))(self.arm, self.to)
        return ("holds" if abs(d) + Z * se < self.within else "does not hold" if abs(d) - Z * se > self.within
                else "inconclusive")

    def describe(self) -> str:
        return f"{self.arm} within {100 * self.within:g} points of {self.to}"


@dataclass(frozen=True)
class Range:
    """Arm `arm` scores between lo and hi (hi = inf: above lo)."""
    arm: str
    lo: float
    hi: float = math.inf

    def arms(self) -> tuple[str, ...]:
        return (self.arm,)

    def judge(self, s: dict[str, Stats], gap: Gap | None = None) -> str:
        a = s[self.arm]
        lo, hi = a.mean - Z * a.se, a.mean + Z * a.se
        if self.lo < lo and hi < self.hi:
            return "holds"
        return "does not hold" if hi < self.lo or lo > self.hi else "inconclusive"

    def describe(self) -> str:
        if math.isinf(self.hi):
            return f"{self.arm} above {100 * self.lo:g}%"
        return f"{self.arm} between {100 * self.lo:g}% and {100 * self.hi:g}%"


Rule = Lower | Higher | Close | Range


@dataclass(frozen=True)
class Curve:
    """A plot of one arm's runs (and of the `also` arms', the series then named by arm), mean +- std over
    seeds: `series` turns a run's result into named (xs, ys); ys are drawn times `yscale` (100: percent)."""
    arm: str
    title: str
    xlabel: str
    ylabel: str
    series: Callable[[dict], dict[str, tuple[list[float], list[float]]]]
    xlog: bool = False
    also: tuple[str, ...] = ()
    yscale: float = 100.0
    ylog: bool = False


@dataclass(frozen=True)
class Claim:
    name: str                        # what --claims selects
    source: str                      # the paper and its table or section
    paper_figure: str                # the paper's number(s), as the paper gives them
    statement: str                   # the claim in words, and how our arms test it
    arms: tuple[Arm, ...]
    metric: Metric
    rule: Rule
    budget: float | None = None      # training minutes per run (None: the testbed's)
    curve: Curve | None = None
    waits_for: str = ""              # the issue whose flags the arms need: not run until they exist
    reading: str = ""                # what the verdict means where it departs from the paper or holds at
                                     # another size (the likeliest reason: scale, task, budget), written after
                                     # the runs; it never changes the rule


@dataclass(frozen=True)
class Spec:
    testbed: Testbed
    claims: tuple[Claim, ...]
    seeds: tuple[int, ...] = (0, 1, 2)

    def validate(self) -> None:
        """Mistakes in the spec, as one line each (a typo in an arm's name surfaces here, not hours later)."""
        names = [c.name for c in self.claims]
        if len(set(names)) != len(names):
            raise ValueError(f"claims spec: a claim name appears twice in {', '.join(names)}")
        for c in self.claims:
            arms = {a.name: a for a in c.arms}
            if len(arms) != len(c.arms):
                raise ValueError(f"claims spec: claim {c.name} names an arm twice")
            for a in c.arms:
                if a.kind not in KINDS:
                    raise ValueError(f"claims spec: arm {c.name}/{a.name} has kind {a.kind!r} (one of {KINDS})")
                if a.checkpoint or a.data:
                    _check_checkpoint_arm(c, a)
                    continue
                if a.kind == "memory":
                    if a.on:
                        raise ValueError(f"claims spec: arm {c.name}/{a.name}: a memory arm measures a preset "
                                         "(preset=), on no train arm")
                    continue
                if (a.kind == "train") == bool(a.on) or (a.on and arms.get(a.on, a).kind != "train"):
                    raise ValueError(f"claims spec: arm {c.name}/{a.name}: a {a.kind} arm "
                                     + ("names no train arm" if a.kind != "train" else "cannot be 'on' another arm")
                                     + " (on= names a train arm of the same claim)")
            missing = [a for a in (*c.rule.arms(), *((c.curve.arm, *c.curve.also) if c.curve else ()))
                       if a not in arms]
            if missing:
                raise ValueError(f"claims spec: claim {c.name} refers to arm {missing[0]}, "
                                 f"not among {', '.join(arms)}")

    def select(self, names: list[str] | None) -> list[Claim]:
        if not names:
            return list(self.claims)
        known = {c.name: c for c in self.claims}
        bad = [n for n in names if n not in known]
        if bad:
            raise ValueError(f"--claims: unknown claim '{bad[0]}' (trm claims --list; one of {', '.join(known)})")
        return [known[n] for n in dict.fromkeys(names)]


def _check_checkpoint_arm(c: Claim, a: Arm) -> None:
    from .presets import PRESETS
    where = f"claims spec: arm {c.name}/{a.name}"
    if a.kind not in ("eval", "sweep") or a.on:
        raise ValueError(f"{where}: a checkpoint arm is an eval or sweep of that checkpoint, on no train arm")
    if not (a.checkpoint and a.data in PRESETS):
        raise ValueError(f"{where}: a checkpoint arm needs checkpoint= and data= (a preset's dataset), "
                         f"not {a.checkpoint!r} and {a.data!r}")
    if "--seeds" in a.flags:
        raise ValueError(f"{where}: its seeds are the claim's (--seeds is added per seed)")


# --- metrics -------------------------------------------------------------------------------------------
def path(*keys) -> Callable[[dict], float]:
    """The number at result[k0][k1]... (ints index lists)."""
    def read(r: dict) -> float:
        for k in keys:
            r = r[k]
        return float(r)
    return read


def sweep_point(metric: str, *, D: int, K: int = 1, deterministic: bool = False, sigma: float | None = None,
                noise: str | None = None) -> Callable[[dict], float]:
    """One number of a `trm sweep`'s sweep.json: the row at D (and K, sigma, noise; no early stop)."""
    def read(r: dict) -> float:
        for row in r["rows"]:
            if (row["D"] == D and bool(row["deterministic"]) == deterministic and not row.get("stop_after")
                    and (deterministic or (row["K"] == K and (sigma is None or row["sigma"] == sigma)
                                           and (noise is None or row["noise"] == noise)))):
                return float(row[metric])
        raise KeyError(f"no sweep row at D {D}, K {K}")
    return read


# --- runs ----------------------------------------------------------------------------------------------
@dataclass
class Run:
    key: str
    kind: Kind
    dir: Path
    argv: list[str]                   # the trm command of a fresh start (train) or of the run (the others)
    ident: dict                       # what the key hashes
    minutes: float                    # CPU minutes, roughly
    parent: Run | None = None
    labels: list[str] = field(default_factory=list)  # claim/arm seed S, for every claim that uses it
    store: Path | None = None         # where its result and record are kept for git (None: the cache only)
    waiting: str = ""                 # why it cannot run here (a fixed checkpoint that is missing)

    @property
    def result_path(self) -> Path:
        return self.dir / {"train": "eval.json", "eval": "result.json", "sweep": "sweep.json",
                           "analyze": "report/report.json", "memory": "result.json"}[self.kind]

    @property
    def record_path(self) -> Path:
        """What traces the run (command, machine, commit), beside its folder: `trm train` writes only into a
        folder that is new, empty or its own run."""
        return self.dir.parent / f"{self.dir.name}.claims_run.json"

    @property
    def log_path(self) -> Path:
        return self.dir.parent / f"{self.dir.name}.log"

    @property
    def stored_path(self) -> Path | None:
        return self.file_in(self.store)

    def file_in(self, store: Path | None) -> Path | None:
        """Its result and record's file in a store (None: no store)."""
        return None if store is None else store / f"{self.dir.name}.json"

    def done(self) -> bool:
        return self.result_path.is_file() or (self.stored_path is not None and self.stored_path.is_file())

    def has_checkpoint(self) -> bool:
        return (self.dir / "checkpoint").exists()

    def _stored(self) -> dict:
        return (_read_json(self.stored_path) or {}) if self.stored_path is not None else {}

    def result(self) -> dict | None:
        """This machine's result, else the stored one."""
        return _read_json(self.result_path) or self._stored().get("result")

    def record(self) -> dict:
        """What traces the result result() gives: the record beside the run folder, else the stored one."""
        if self.result_path.is_file():
            return _read_json(self.record_path) or {}
        return self._stored().get("record") or {}

    def save(self) -> None:
        """Keep the result and its record in the store (atomically), when there is one."""
        r = _read_json(self.result_path)
        if self.stored_path is not None and r is not None:
            self.store.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.stored_path, {"record": _read_json(self.record_path) or {}, "result": r})


def _read_json(p: Path) -> dict | None:
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def _key(ident: dict) -> str:
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def _folder(cache: Path, ident: dict) -> tuple[str, Path]:
    """A run's key and its folder in the cache, both from what it is (`ident`, which names its kind)."""
    key = _key(ident)
    return key, cache / "runs" / f"{ident['kind']}-{key}"


def weights_fingerprint(run_dir: Path) -> str | None:
    """A hash of a checkpoint's weights (a run folder or a shipped model's), None when there are none."""
    for cand in (run_dir / "checkpoint" / "model.safetensors", run_dir / "model.safetensors"):
        if cand.is_file():
            return hashlib.sha256(cand.read_bytes()).hexdigest()[:16]
    return None


def preset_fingerprint(name: str) -> str:
    """A hash of what a preset resolves to (model, training and data configs): a run keyed by the preset's name
    alone would be reused after the preset changed."""
    from dataclasses import asdict

    from .presets import get_preset
    p = get_preset(name)
    return _key({"model": asdict(p.model), "train": asdict(p.train), "data": p.data})


@dataclass
class Plan:
    data: Path
    runs: dict[str, Run]                       # by key, train runs first
    of: dict[tuple[str, str, int], Run]        # (claim, arm, seed) -> run
    budgets: dict[str, float]                  # claim -> training minutes per run
    steps: int = STEPS_UNBOUNDED               # optimizer steps per train run at most (the testbed's or --steps)
    datasets: dict[Path, str] = field(default_factory=dict)  # a checkpoint arm's dataset -> the preset it is of


def plan(spec: Spec, cache: Path, claims: list[Claim], seeds: list[int], minutes: float | None = None,
         steps: int | None = None, store: Path | None = None) -> Plan:
    """Every run the claims need at these seeds (shared runs once), with their folders under cache/runs and
    their results also kept in `store`; `minutes` and `steps` replace the spec's budget (the testbed's
    calibration)."""
    tb = spec.testbed if steps is None else replace(spec.testbed, steps=steps)
    data_ident = {"size": tb.size, "train": tb.train_puzzles, "test": tb.test_puzzles, "seed": tb.data_seed}
    data = cache / "data" / f"sudoku{tb.size}-{tb.train_puzzles}-{_key(data_ident)[:8]}"
    runs: dict[str, Run] = {}
    of, budgets, datasets, weights = {}, {}, {}, {}
    for c in claims:
        budget = minutes if minutes is not None else c.budget if c.budget is not None else tb.minutes
        budgets[c.name] = budget
        for a in sorted(c.arms, key=lambda a: a.kind != "train"):  # a checkpoint's run before the runs on it
            for s in seeds:
                if a.kind == "train":
                    preset = a.preset or tb.preset
                    ident = {"kind": "train", "preset": preset, "config": preset_fingerprint(preset),
                             "flags": [*tb.flags, *a.flags], "seed": s,
                             "data": data.name, "steps": tb.steps, "minutes": budget}
                    key, d = _folder(cache, ident)
                    argv = ["train", "--preset", preset, *tb.flags, *a.flags, "--data", str(data), "--seed", str(s),
                            "--steps", str(tb.steps), "--time-budget", f"{budget:g}", "--budget_clock", "train",
                            "--threads", "1", "--quiet", "--out", str(d)]
                    est = budget if tb.steps >= STEPS_UNBOUNDED else min(budget, tb.steps * tb.step_seconds / 60)
                    run = Run(key, "train", d, argv, ident, est + TRAIN_OVERHEAD_MIN)
                elif a.checkpoint:
                    run = _checkpoint_run(a, s, cache, datasets, weights)
                elif a.kind == "memory":
                    preset = a.preset or tb.preset
                    ident = {"kind": "memory", "preset": preset, "config": preset_fingerprint(preset),
                             "flags": list(a.flags), "seed": s}
                    key, d = _folder(cache, ident)
                    argv = ["params", "--preset", preset, *a.flags, "--seed", str(s), "--json"]
                    run = Run(key, "memory", d, argv, ident, a.minutes)
                else:
                    parent = of[(c.name, a.on, s)]
                    ident = {"kind": a.kind, "flags": list(a.flags), "on": parent.key}
                    key, d = _folder(cache, ident)
                    common = ["--checkpoint", str(parent.dir), "--data", str(data)]
                    argv = {"eval": ["eval", *common, "--json", "--quiet", *a.flags],
                            "sweep": ["sweep", *common, "--out", str(d), "--quiet", *a.flags],
                            "analyze": ["analyze", *common, "--out", str(d / "report"), "--overwrite", "--quiet",
                                        *a.flags]}[a.kind]
                    run = Run(key, a.kind, d, argv, ident, a.minutes, parent)
                run.store = store
                run = runs.setdefault(run.key, run)
                run.labels.append(f"{c.name}/{a.name} seed {s}")
                of[(c.name, a.name, s)] = run
    ordered = dict(sorted(runs.items(), key=lambda kv: kv[1].kind != "train"))
    return Plan(data, ordered, of, budgets, tb.steps, datasets)


def _checkpoint_run(a: Arm, seed: int, cache: Path, datasets: dict, weights: dict) -> Run:
    """An eval or sweep of a fixed checkpoint (not trained by the claims) on a preset's dataset, at one noise
    seed. Its key holds the weights' hash: other weights under the same folder name are another run."""
    from .presets import get_preset
    ckpt = Path(a.checkpoint)
    if ckpt not in weights:
        weights[ckpt] = weights_fingerprint(ckpt)
    data = cache / "data" / f"{a.data}-{_key(get_preset(a.data).data)[:8]}"
    datasets[data] = a.data
    ident = {"kind": a.kind, "flags": list(a.flags), "checkpoint": ckpt.name, "weights": weights[ckpt],
             "data": data.name, "seed": seed}
    key, d = _folder(cache, ident)
    common = ["--checkpoint", str(ckpt), "--data", str(data)]
    head = ["eval", *common, "--json"] if a.kind == "eval" else ["sweep", *common, "--out", str(d)]
    argv = [*head, "--quiet", *a.flags, "--seeds", str(seed)]
    run = Run(key, a.kind, d, argv, ident, a.minutes)
    run.waiting = "" if weights[ckpt] else f"checkpoint {ckpt} not found"
    return run


def resume_argv(run: Run) -> list[str]:
    """`trm train --resume` of a killed run, with the training time it has left; a run whose training had
    ended (killed in its final evaluation) only evaluates."""
    from .checkpoint import load_train_state, resolve_checkpoint
    st = load_train_state(resolve_checkpoint(run.dir))
    left = run.ident["minutes"] * 60 - float(st.get("train_seconds", 0.0))
    step, horizon = int(st["step"]), int(st.get("horizon", 0))
    argv = ["train", "--resume", str(run.dir), "--threads", "1", "--quiet"]
    if step >= horizon or left < 1.0:
        return argv + ["--time-budget", "0", "--steps", str(step)]  # no more steps: the final evaluation only
    return argv + ["--time-budget", f"{left / 60:.4f}"]


def next_argv(run: Run) -> list[str]:
    """What to run now: resume a killed train run, else the run's own command."""
    if run.kind == "train" and (run.dir / "checkpoint").exists():
        return resume_argv(run)
    return run.argv


@dataclass
class Outcome:
    ran: list[Run] = field(default_factory=list)
    reused: list[Run] = field(default_factory=list)
    failed: list[Run] = field(default_factory=list)
    skipped: list[Run] = field(default_factory=list)  # a test-time run whose checkpoint failed


Launch = Callable[[list[str], Path, Path], int]  # (trm argv, stdout file, stderr file) -> exit code


def subprocess_launch(prefix: list[str] | None = None) -> Launch:
    """Each run as its own process (`python -m trm.cli ...` by default), on one thread."""
    prefix = prefix or [sys.executable, "-m", "trm.cli"]

    def launch(argv: list[str], stdout: Path, stderr: Path) -> int:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        with open(stdout, "a") as fo, open(stderr, "a") as fe:
            return subprocess.run([*prefix, *argv], stdout=fo, stderr=fo if stdout == stderr else fe,
                                  env=env).returncode
    return launch


def pending(p: Plan) -> list[list[Run]]:
    """What is still to run, in units: a training run (when not done, or stored but with runs on its checkpoint
    still to do and no checkpoint here) and the unfinished runs on its checkpoint."""
    units = []
    for train in (r for r in p.runs.values() if r.kind == "train"):
        todo = [r for r in p.runs.values() if r.parent is train and not r.done()]
        retrain = not train.done() or (todo and not train.has_checkpoint())
        if retrain or todo:
            units.append(([train] if retrain else []) + todo)
    units += [[r] for r in p.runs.values()
              if r.kind != "train" and r.parent is None and not r.waiting and not r.done()]  # fixed checkpoints
    return units


def store_finished(p: Plan) -> None:
    """Runs finished in the cache but not in the store (made before it existed): into it."""
    for run in p.runs.values():
        if run.result_path.is_file() and run.stored_path is not None and not run.stored_path.is_file():
            run.save()


def execute(p: Plan, *, jobs: int = 1, launch: Launch | None = None, provenance: dict | None = None,
            log=print) -> Outcome:
    """Run what is not finished, `jobs` at a time (each on one thread). The unit of work is a training run
    and the runs on its checkpoint, one after the other, so that every finished unit is complete in the store
    (a session that ends mid-table loses only the units in flight); the longest units go first. A failed run
    is reported and the others go on. `provenance` (the machine, commit and environment of this invocation)
    goes into RUN.claims_run.json beside each run folder; `launch` starts a trm command (default: a subprocess)."""
    launch = launch or subprocess_launch()
    out = Outcome()
    store_finished(p)
    units = pending(p)
    todo = {r.key for u in units for r in u}
    out.reused += [r for r in p.runs.values() if r.key not in todo]
    units.sort(key=lambda u: -sum(r.minutes for r in u))

    def run_unit(unit: list[Run]) -> list[tuple[Run, bool | None]]:
        done = []
        for run in unit:
            if run.parent is not None and not (run.parent.result_path.is_file() and run.parent.has_checkpoint()):
                done.append((run, None))  # its checkpoint failed
            else:
                done.append((run, _run_one(run, launch, provenance, log)))
        return done

    if jobs > 1:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(run_unit, units))
    else:
        results = [run_unit(u) for u in units]
    for run, ok in (x for u in results for x in u):
        (out.skipped if ok is None else out.ran if ok else out.failed).append(run)
    return out


def _run_one(run: Run, launch: Launch, provenance: dict | None, log) -> bool:
    if run.kind != "train":  # a training run's folder is trm train's to make
        run.dir.mkdir(parents=True, exist_ok=True)
    run.dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        argv = next_argv(run)
    except Exception as e:  # a checkpoint that cannot be read: this run fails, the others go on
        log(f"  {run.labels[0]}: cannot resume {run.dir} ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
            f"remove it to start the run over")
        return False
    record = {"key": run.key, "ident": run.ident, "used_by": run.labels, "command": ["trm", *argv],
              **(provenance or {}), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    atomic_write_json(run.record_path, record)
    log(f"[{time.strftime('%H:%M:%S')}] {run.labels[0]}: trm {shlex.join(argv)}")
    logfile, stdout = run.log_path, run.dir.parent / f"{run.dir.name}.stdout.json"
    printed = run.kind in ("eval", "memory")  # `trm eval --json`, `trm params --json`: the result on stdout
    if printed:
        stdout.unlink(missing_ok=True)
    t0 = time.monotonic()
    code = launch(argv, stdout if printed else logfile, logfile)
    ok = code == 0
    if ok and printed:  # one JSON object: the result
        try:
            atomic_write_json(run.result_path, json.loads(stdout.read_text().strip().splitlines()[-1]))
        except (OSError, ValueError, IndexError):
            ok = False
    ok = ok and run.result_path.is_file()
    record.update(returncode=code, seconds=round(time.monotonic() - t0, 1), finished=time.strftime("%Y-%m-%d %H:%M:%S"))
    atomic_write_json(run.record_path, record)
    if ok:
        run.save()
    if not ok:
        log(f"  failed (exit {code}): see {logfile}")
    return ok


def build_data(spec: Spec, data: Path, *, workers: int | None = None, progress: bool = False) -> None:
    """The testbed's dataset, once (what `trm data sudoku` with Testbed.data_argv builds)."""
    if (data / "meta.json").is_file():
        return
    from .data.sudoku import build_sudoku
    tb = spec.testbed
    build_sudoku(data, size=tb.size, generate=tb.train_puzzles + tb.test_puzzles, test=tb.test_puzzles,
                 seed=tb.data_seed, workers=workers, progress=progress)


def build_datasets(p: Plan, *, progress: bool = False, log=print) -> None:
    """The datasets of the checkpoint arms still to run (a preset's recipe, as `trm train` builds it)."""
    from .data.recipes import build_preset_data
    from .presets import get_preset
    need = {r.ident.get("data") for u in pending(p) for r in u if r.parent is None and r.kind != "train"}
    for data, preset in p.datasets.items():
        if data.name in need and not (data / "meta.json").is_file():
            log(f"building {preset}'s dataset in {data} ...")
            build_preset_data(get_preset(preset).data, data, progress=progress)


def provenance(matmul_seconds: float = 1.0) -> dict:
    """What every run of this invocation records besides its own files: the machine, the commit, the versions."""
    import torch

    from .runtime import environment, git_commit, machine_record
    return {"machine": machine_record(matmul_seconds), "git_commit": git_commit(),
            "environment": environment(torch.device("cpu"))}


# --- aggregation ---------------------------------------------------------------------------------------
@dataclass
class ArmResult:
    arm: Arm
    stats: Stats
    seeds: list[int]
    runs: list[Run]                  # of the seeds with a number
    failed: list[int]                # seeds whose run exists but gave no number
    waiting: str = ""                # why its runs cannot run here (a missing checkpoint)


def _read_metric(metric: Metric, result: dict) -> float:
    """The metric's number in a run's result; NaN where the result lacks it (a run that gave no number)."""
    try:
        return metric.read(result)
    except (KeyError, IndexError, TypeError, ValueError, ArithmeticError):
        return math.nan


def aggregate(claim: Claim, p: Plan, seeds: list[int]) -> dict[str, ArmResult]:
    out = {}
    for a in claim.arms:
        metric = a.metric or claim.metric
        values, ok_seeds, runs, failed, waiting = [], [], [], [], ""
        for s in seeds:
            run = p.of.get((claim.name, a.name, s))
            waiting = waiting or (run.waiting if run is not None else "")
            r = run.result() if run is not None else None
            if r is None:
                continue
            v = _read_metric(metric, r)
            if math.isfinite(v):
                values.append(v)
                ok_seeds.append(s)
                runs.append(run)
            else:
                failed.append(s)
        out[a.name] = ArmResult(a, Stats(tuple(values)), ok_seeds, runs, failed, waiting)
    return out


@dataclass
class Check:
    """`trm claims --verify`: the numbers the table reads from runs made afresh in the cache, each against the
    number the store holds for the same run."""
    same: list[str] = field(default_factory=list)                            # claim/arm seed S
    differ: list[tuple[str, float, float]] = field(default_factory=list)    # label, fresh, stored
    unstored: list[str] = field(default_factory=list)                        # runs the store does not hold


def check_against_store(p: Plan, claims: list[Claim], seeds: list[int], store: Path) -> Check:
    """Every arm's number at every seed whose run finished in p's cache, beside the stored run's (exact
    equality: one machine and one code give the same bits; another CPU may round differently)."""
    out = Check()
    for c in claims:
        for a in c.arms:
            metric = a.metric or c.metric
            for s in seeds:
                run = p.of.get((c.name, a.name, s))
                fresh = _read_json(run.result_path) if run is not None else None
                if fresh is None:
                    continue
                label = f"{c.name}/{a.name} seed {s}"
                stored = (_read_json(run.file_in(store)) or {}).get("result")
                if stored is None:
                    out.unstored.append(label)
                    continue
                values = [_read_metric(metric, r) for r in (fresh, stored)]
                if values[0] == values[1] or all(math.isnan(v) for v in values):
                    out.same.append(label)
                else:
                    out.differ.append((label, *values))
    return out


def verdict(claim: Claim, arms: dict[str, ArmResult]) -> str:
    """The rule on the arms' numbers; 'inconclusive (n seeds)' below MIN_SEEDS; 'not run' without numbers."""
    if claim.waits_for and not all(arms[a].stats.n for a in claim.rule.arms()):
        return f"waiting ({claim.waits_for})"
    missing = [arms[a].waiting for a in claim.rule.arms() if arms[a].waiting and not arms[a].stats.n]
    if missing:
        return f"waiting ({missing[0]})"
    stats = {name: r.stats for name, r in arms.items()}
    n = min(stats[a].n for a in claim.rule.arms())
    if n == 0:
        return "not run"
    if n < MIN_SEEDS:
        return f"inconclusive ({n} seed{'s' if n > 1 else ''})"
    return claim.rule.judge(stats, _paired_gap(arms) if paired(claim, arms) else None)


def _subject(run: Run) -> str | None:
    """What a test-time run scores: its train arm's checkpoint, or a fixed checkpoint at a noise seed."""
    if run.parent is not None:
        return run.parent.key
    if run.kind != "train" and run.ident.get("weights"):
        return f"{run.ident['weights']}@{run.ident['seed']}"
    return None


def paired(claim: Claim, arms: dict[str, ArmResult]) -> bool:
    """Whether the rule's two arms score the same checkpoint at every seed (two metrics of one run, or two
    test-time settings of one checkpoint): then the seeds' differences are what varies, not the checkpoints."""
    names = claim.rule.arms()
    if len(names) != 2:
        return False
    a, b = (dict(zip(arms[x].seeds, arms[x].runs)) for x in names)
    return bool(a) and a.keys() == b.keys() and all(_subject(a[s]) is not None and _subject(a[s]) == _subject(b[s])
                                                    for s in a)


def _paired_gap(arms: dict[str, ArmResult]) -> Gap:
    def gap(x: str, y: str) -> tuple[float, float]:
        by = dict(zip(arms[y].seeds, arms[y].stats.values))
        d = Stats(tuple(v - by[s] for s, v in zip(arms[x].seeds, arms[x].stats.values)))
        return d.mean, d.se
    return gap
