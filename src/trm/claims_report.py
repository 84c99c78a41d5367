"""docs/claims.md from the runs in the claims cache: the testbed, the verdict rule, one row per claim, each
claim's arms with their commands, the machines and commits of the runs, and the plots (docs/claims/)."""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import replace
from pathlib import Path

from .atomic import atomic_file, atomic_write_bytes
from .claims import MIN_SEEDS, STEPS_UNBOUNDED, Z, ArmResult, Claim, Plan, Run, Spec, Stats, aggregate, paired, verdict
from .data.recipes import shared_data_root


def budget_text(tb) -> str:
    """The training budget of every run, in words: optimizer steps when they decide, else minutes."""
    if tb.steps < STEPS_UNBOUNDED:  # a step budget is one testbed on every machine; minutes only cap it
        return (f"{tb.steps} optimizer steps (the lr schedule fitted to them), at most {tb.minutes:g} minutes of "
                f"training time (`--budget_clock train`: evaluations and checkpoints not counted)")
    return (f"{tb.minutes:g} minutes of training time (`--budget_clock train`: evaluations and checkpoints not "
            f"counted; the lr schedule is fitted to the steps that fit, so their number depends on the machine)")


def _pm(s: Stats) -> str:
    if not s.n:
        return "-"
    return f"{100 * s.mean:.1f} ± {100 * s.std:.1f}%"


def _cmd(argv: list[str]) -> str:
    return "trm " + shlex.join(argv)


def _portable(arg: str) -> str:
    """A path into the shared folder as ../shared (from the repo root), wherever this machine keeps it, so the
    table reads the same on every machine."""
    shared = str(shared_data_root().parent) + "/"
    return "../shared/" + arg[len(shared):] if arg.startswith(shared) else arg


def write_report(spec: Spec, p: Plan, seeds: list[int], out: Path) -> Path:
    """docs/claims.md (atomically) and its plots in docs/claims/, from what the cache holds for every claim of
    `p` (plan them all, not only those run now)."""
    tb = replace(spec.testbed, steps=p.steps)  # --steps, where given, is the budget the runs had
    rows, sections, plots, departs = [], [], [], []
    machines, commits, seconds = {}, set(), {}
    for c in spec.claims:
        arms = aggregate(c, p, seeds)
        v = verdict(c, arms)
        n = min(arms[a].stats.n for a in c.rule.arms())
        ours = " vs ".join(f"{a} {_pm(arms[a].stats)}" for a in c.rule.arms()) \
            if any(arms[a].stats.n for a in c.rule.arms()) else "-"
        budget = p.budgets[c.name]
        keys = {p.of[(c.name, a.name, s)].key: a.kind for a in c.arms for s in seeds}
        n_train = sum(k == "train" for k in keys.values())
        n_memory = sum(k == "memory" for k in keys.values())
        n_other = len(keys) - n_train - n_memory
        per_run = f"{p.steps} steps (<= {budget:g} min)" if p.steps < STEPS_UNBOUNDED else f"{budget:g} min"
        cost = (f"{per_run} x {n_train} train runs" + (f" + {n_other} on their checkpoints" if n_other else "")
                if n_train else f"{n_other} runs on fixed checkpoints" if n_other else "")
        if n_memory:
            cost += (" + " if cost else "") + f"{n_memory} memory measurements (no training)"
        rows.append(f"| {c.name} | {c.source} | {c.paper_figure} | {ours} | {n} | **{v}** | {cost} | "
                    f"`trm claims --claims {c.name}` |")
        lines = [f"### {c.name}", "", c.statement, "",
                 f"Rule: {c.rule.describe()} ({_metrics(c)}"
                 + ("; paired: both arms score the same checkpoint at each seed" if paired(c, arms) else "")
                 + f"). Verdict: **{v}**." + (f" Reading: {c.reading}" if c.reading else ""), "",
                 "| arm | kind | per seed (%) | mean ± std (n) | SE | command (first seed) |",
                 "|---|---|---|---|---|---|"]
        for name, r in arms.items():
            source = r.arm.kind == "train" and name not in c.rule.arms() and not r.stats.n  # a checkpoint only
            lines.append(_arm_row(name, r, p, p.of.get((c.name, name, seeds[0])), source))
            for run in r.runs:
                rec = run.record()
                if rec.get("machine"):
                    machines[rec["machine"].get("cpu", "?")] = rec["machine"]
                commits.add(rec.get("git_commit") or "unknown")
                seconds[run.key] = float(rec.get("seconds") or 0.0)
        if c.curve is not None:
            img = _plot(c, arms, out.parent / "claims" / f"{c.name}.png")
            if img is not None:
                rel = img.relative_to(out.parent).as_posix()
                lines += ["", f"![{c.curve.title}]({rel})"]
                plots.append(f"- [{c.curve.title}]({rel}) ({c.name})")
        sections.append("\n".join(lines))
        if v == "does not hold" or v == "inconclusive":
            departs.append(f"- **{c.name}** ({v}): {c.reading or 'no reading written yet.'}")
    text = _TEMPLATE.format(
        date=time.strftime("%Y-%m-%d"),
        preset=tb.preset, size=tb.size, train=tb.train_puzzles, test=tb.test_puzzles, seed=tb.data_seed,
        budget=budget_text(tb), flags=" ".join(tb.flags) or "none",
        data_cmd=_cmd(tb.data_argv(Path("DATA"))), data=p.data, seeds=", ".join(map(str, seeds)), z=f"{Z:g}",
        min_seeds=MIN_SEEDS, commits=", ".join(sorted(commits)) or "none yet",
        machines="\n".join(f"- {_machine_line(m)}" for m in machines.values()) or "- none yet (no run recorded)",
        rows="\n".join(rows), sections="\n\n".join(sections), plots="\n".join(plots) or "None yet.",
        departs="\n".join(departs) or "None: every row with a verdict agrees with its paper.",
        hours=f"{sum(seconds.values()) / 3600:.1f}", n_runs=len(seconds))
    atomic_write_bytes(out, text.encode())
    return out


def _metrics(c: Claim) -> str:
    """What the rule's arms measure: the claim's metric, or each arm's own."""
    arms = {a.name: a for a in c.arms}
    labels = {name: (arms[name].metric or c.metric).label for name in c.rule.arms()}
    if len(set(labels.values())) == 1:
        return next(iter(labels.values()))
    return "; ".join(f"{name}: {label}" for name, label in labels.items())


def _arm_row(name: str, r: ArmResult, p: Plan, run: Run | None, source: bool = False) -> str:
    subst = {str(p.data): "DATA", **{str(d): f"DATA({preset})" for d, preset in p.datasets.items()}}
    if run is not None:
        subst[str(run.dir)] = "RUN"
        if run.parent is not None:
            subst[str(run.parent.dir)] = "CKPT"
    cmd = _cmd([_portable(subst.get(x, x)) for x in run.argv]) if run is not None else "-"
    per = ", ".join(f"s{s}: {100 * x:.1f}" for s, x in zip(r.seeds, r.stats.values)) or "-"
    if source:  # a train arm whose checkpoints the claim's test-time arms score: their metric is not its
        per = "the checkpoints the arms below score"
    elif r.failed:
        per += f" (no number: seed {', '.join(map(str, r.failed))})"
    if r.arm.kind == "train" and r.runs:  # the steps a budget in minutes allowed
        steps = [(x.result() or {}).get("step", 0) for x in r.runs]
        per += f"; {min(steps)}-{max(steps)} steps" if min(steps) != max(steps) else f"; {steps[0]} steps"
    if not r.stats.n:
        return f"| {name} | {r.arm.kind} | {per} | - | - | `{cmd}` |"
    return f"| {name} | {r.arm.kind} | {per} | {_pm(r.stats)} ({r.stats.n}) | {100 * r.stats.se:.1f} | `{cmd}` |"


def _read_json(p: Path) -> dict | None:
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def _machine_line(m: dict) -> str:
    bf16 = m.get("bf16_1thread_gflops")
    return (f"{m.get('cpu')} ({m.get('logical_cpus')} logical CPUs; {' '.join(m.get('flags') or []) or 'no AVX2'}; "
            f"1-thread matmul fp32 {m.get('fp32_1thread_gflops')} GFLOP/s"
            + (f", bf16 {bf16} GFLOP/s" if bf16 is not None else ", no hardware bf16") + ")")


def _series(c: Claim, arm: ArmResult) -> list[dict]:
    """The curve's named series of each of an arm's runs (a run whose result lacks them is left out)."""
    out = []
    for run in arm.runs:
        try:
            out.append(c.curve.series(run.result() or {}))
        except (KeyError, IndexError, TypeError, ValueError):
            continue
    return out


def _plot(c: Claim, arms: dict[str, ArmResult], path: Path) -> Path | None:
    """The curve of the claim's arm(s): each series' mean over the seeds, the band one std."""
    names = (c.curve.arm, *c.curve.also)
    per_arm = {name: _series(c, arms[name]) for name in names}
    if not any(per_arm.values()):
        return None
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    k = c.curve.yscale
    fig, ax = plt.subplots(figsize=(6, 4))
    for arm, per_seed in per_arm.items():
        for name, (xs, _) in (per_seed[0].items() if per_seed else ()):
            ys = [s[name][1] for s in per_seed if name in s and list(s[name][0]) == list(xs)]
            mean = [sum(v) / len(v) for v in zip(*ys)]
            sd = [Stats(tuple(v)).std for v in zip(*ys)]
            label = f"{arm}: {name}" if len(names) > 1 and name else name or arm
            seeds = f"{len(ys)} seed{'s' if len(ys) > 1 else ''}"
            ax.plot(xs, [k * m for m in mean], "o-", ms=4, label=f"{label} ({seeds})")
            ax.fill_between(xs, [k * (m - d) for m, d in zip(mean, sd)], [k * (m + d) for m, d in zip(mean, sd)],
                            alpha=0.2)
    ax.set(xlabel=c.curve.xlabel, ylabel=c.curve.ylabel, title=c.curve.title,
           xscale="log" if c.curve.xlog else "linear", yscale="log" if c.curve.ylog else "linear")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path


_TEMPLATE = """# Claims: the papers' figures beside ours

Each row is a claim of the TRM paper (arXiv 2510.04871), the PTRM paper (arXiv 2605.19943), this project's
attractor study, Attractor Models (arXiv 2605.12466) or TRM with Mamba-2 (arXiv 2602.12078), tested on one small
CPU testbed over several seeds. Written by `trm claims` on {date} from
the runs in its cache; do not edit by hand. The claims, their arms and their rules are Python in
`src/trm/claims_spec.py`, the runner is `src/trm/claims.py`.

Regenerate everything with `trm claims` (hours of CPU: `trm claims --dry-run` lists the runs and their cost,
`--jobs N` runs N at a time, one core each), one row with the command in its last column. Runs are cached
(`--cache`, default `runs/claims`): a killed sweep resumes where it stopped, finished runs are reused. Each
finished run's result and record (command, machine, commit) are also kept in git, in `claims/results/` beside
this file (`--store`), so a checkout on another machine reuses them and runs only what is missing; a row may
so gather runs from several machines, all listed below (the budget is in optimizer steps: the same testbed on
each). `trm claims --report` rewrites this file from the cache and the store without running anything;
`trm claims --claims NAME --cache EMPTY --verify` makes a row's runs again from nothing and checks each of its
numbers against the stored one (on the machine that made them, training and evaluation repeat to the bit).

Why a command and not a script in benchmarks/: the table is the evidence behind what the README says trm
reproduces, so anyone who installs trm should be able to rerun a row and check it, with the same caching and
records as the runs here; benchmarks/ measure speed on the machine at hand and are not installed.

## The testbed

Preset `{preset}` on {size}x{size} minimal Sudoku: {train} generated training puzzles (augmented on the fly) and
{test} held-out test puzzles, data seed {seed}, built once into `{data}` by the equivalent of

    {data_cmd}

Every training run: {budget}, one thread, flags `{flags}`, then the final evaluation of the EMA weights on every
test puzzle. Seeds: {seeds}. Each arm's steps are listed below, and the machine of every run is recorded.
In the commands below DATA is the dataset, RUN the run's folder in the cache and CKPT
the train run whose checkpoint a test-time run uses.

Some rows test PTRM on fixed 9x9 checkpoints that the claims do not train (`../shared/runs`, made by `trm train
--preset sudoku9-cpu`): their seeds are noise seeds (`--seeds`), DATA(sudoku9-cpu) is that preset's dataset
(`trm data sudoku --pool 17clue --test 1000`, built into the cache), and a checkpoint that is not on the machine
leaves its rows "waiting".

The testbed (puzzles, budget) is `TESTBED` in `src/trm/claims_spec.py`, where its calibration is noted: the
`testbed` row checks that the default TRM lands in the middle (`trm claims --claims testbed --seeds 0,1,2`;
`--steps S` tries a budget of S optimizer steps, `--minutes M` another cap).

## The verdict rule

An arm's number is its mean over seeds, with the sample standard deviation (n - 1) and the standard error
SE = std / sqrt(n). A difference d between two arms is weighed against their combined SE = sqrt(SE_a^2 + SE_b^2):

- "A lower (higher) than B" holds when A is below (above) B by more than {z} SE, does not hold when it is
  above (below) by more than {z} SE, and is inconclusive otherwise.
- Paired arms: where both arms score the same checkpoint at each seed (two numbers of one `trm eval`, or two
  test-time settings on one checkpoint), d and its SE are the mean and standard error of the per-seed
  differences, since the arms rise and fall together with the checkpoint. The rule line of such a claim says
  "paired".
- "A within m points of B" holds when |d| + {z} SE < m, does not hold when |d| - {z} SE > m.
- "A between lo and hi" holds when mean +- {z} SE lies inside, does not hold when it lies wholly outside.
- With fewer than {min_seeds} seeds a row is "inconclusive (n seeds)", whatever the numbers; "not run" has no
  run yet; "waiting" needs flags that other work is building (its arms are written, and run once they exist)
  or a checkpoint that is not on this machine.

The paper's figures are at the paper's scale (Sudoku-Extreme 9x9, 65k steps on a GPU); ours are on the
testbed, so a row compares the direction of an effect, not its size.

## Table

| claim | source | paper | ours: mean ± std | seeds | verdict | budget | command |
|---|---|---|---|---|---|---|---|
{rows}

## Where ours does not bear the paper out

Rows that do not hold or stay inconclusive, with the likeliest reason (scale, task, budget). A reading is
written after the runs; it explains a verdict and never changes the rule that gave it.

{departs}

## The machines

{machines}

The {n_runs} runs behind this table took {hours} CPU-hours (their recorded wall time, one core each);
`trm claims --dry-run` estimates what a fresh cache would take and what is left.

Commits of the runs: {commits}.

## Claims and their arms

{sections}

## Plots

{plots}
"""
