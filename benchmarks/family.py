"""Train each member of the model family on the same testbed for the same wall-clock budget, one after the
other on the same threads, and print a table of held-out accuracy (a first look; the claims table does this
with seeds and error bars).

    python benchmarks/family.py --minutes 10 --threads 1 --out runs/family      # every arm
    python benchmarks/family.py --arms trm,hrm --minutes 10                       # a subset

A finished arm (its eval.json exists) is not run again, so a killed sweep resumes where it stopped. Each arm's
eval.json, config and the machine are copied to --record (docs/results/family-10min by default).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import step_speed  # benchmarks/ is on sys.path when this script runs
import torch

# name -> (preset, extra flags): the variants' presets, and the paper's ablations as flags of sudoku6-cpu
ARMS = {
    "trm": ("sudoku6-cpu", []),
    "hrm": ("sudoku6-hrm-cpu", []),
    "singlez": ("sudoku6-singlez-cpu", []),
    "multiz": ("sudoku6-multiz-cpu", []),
    "transformer": ("sudoku6-transformer-cpu", []),
    "two-networks": ("sudoku6-cpu", ["--networks", "2"]),
    "one-step-grad": ("sudoku6-cpu", ["--grad", "one_step"]),
    "all-grad": ("sudoku6-cpu", ["--grad", "all"]),
    "no-ema": ("sudoku6-cpu", ["--ema", "0"]),
    "L4-n2": ("sudoku6-cpu", ["--L", "4", "--n", "2"]),
}


def cpu_name() -> str:
    return step_speed.machine(torch.device("cpu"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {', '.join(ARMS)}")
    ap.add_argument("--minutes", type=float, default=10.0, help="training budget of every arm (default 10)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads of every arm (default 1)")
    ap.add_argument("--out", default="runs/family", help="where the runs go")
    ap.add_argument("--record", default="docs/results/family-10min", help="where the records go")
    args = ap.parse_args()
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    bad = [a for a in arms if a not in ARMS]
    if bad:
        sys.exit(f"family.py: unknown arm {bad[0]} (choose from {', '.join(ARMS)})")
    out, record = Path(args.out), Path(args.record)
    record.mkdir(parents=True, exist_ok=True)
    trm = [sys.executable, "-m", "trm.cli"]
    rows = []
    for arm in arms:
        preset, flags = ARMS[arm]
        run = out / arm
        cmd = [*trm, "train", "--preset", preset, "--time-budget", str(args.minutes), "--quiet",
               "--threads", str(args.threads), *flags]
        if not (run / "eval.json").is_file():
            if (run / "checkpoint").exists():
                cmd = [*trm, "train", "--resume", str(run), "--threads", str(args.threads)]
            else:
                cmd += ["--out", str(run)]
            print(f"[{time.strftime('%H:%M:%S')}] {arm}: {' '.join(cmd[2:])}", flush=True)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        ev = json.loads((run / "eval.json").read_text())
        cfg = json.loads((run / "config.json").read_text())
        rec = {"arm": arm, "preset": preset, "flags": flags, "minutes": args.minutes, "threads": args.threads,
               "command": f"trm train --preset {preset} --time-budget {args.minutes:g} "
                          f"--threads {args.threads} {' '.join(flags)}".strip(),
               "step": ev["step"], "exact_accuracy": ev["exact_accuracy"], "cell_accuracy": ev["cell_accuracy"],
               "raw": ev.get("raw"), "n": ev.get("n"), "model": cfg["model"], "git_commit": cfg.get("git_commit"),
               "environment": cfg.get("environment"), "cpu": cpu_name()}
        (record / f"{arm}.json").write_text(json.dumps(rec, indent=1) + "\n")
        shutil.copy(run / "metrics.jsonl", record / f"{arm}.metrics.jsonl")
        rows.append(rec)
    print(f"\n{args.minutes:g} minutes each, {args.threads} thread(s), {cpu_name()}\n")
    print("| arm | preset + flags | steps | exact (EMA) | cell | exact (raw) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        raw = r["raw"]["exact_accuracy"] if r.get("raw") else float("nan")
        print(f"| {r['arm']} | `{r['preset']} {' '.join(r['flags'])}`".rstrip() + f" | {r['step']} | "
              f"{100 * r['exact_accuracy']:.1f}% | {100 * r['cell_accuracy']:.1f}% | {100 * raw:.1f}% |")


if __name__ == "__main__":
    main()
