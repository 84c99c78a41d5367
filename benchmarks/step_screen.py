"""A screen by optimizer steps: train each arm for the same number of steps (one thread, one after the other, over
several seeds) and print exact accuracy on the held-out split at every evaluation. Accuracy per step does not
depend on the machine, so a screen on a small preset finds candidates cheaply; time to accuracy
(benchmarks/time_to_accuracy.py) then compares the survivors by wall clock.

    python benchmarks/step_screen.py --steps 150 --eval-every 50 --seeds 0,1 --record docs/results/muon-4x4 \\
        --arm adamw="sudoku4-cpu --optimizer adamw" --arm muon="sudoku4-cpu --optimizer muon --muon_lr 0.02"

An arm is NAME=PRESET [trm train flags]; every arm gets --steps, --eval_every, --seed, --threads 1. A finished
run (eval.json present) under --out is reused. The record (JSON: commands, commit, machine, exact by step, mean
over seeds) goes to --record/runs.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import step_speed  # benchmarks/ is on sys.path when this script runs
import torch

from trm.atomic import atomic_write_json
from trm.runtime import git_commit
from trm.train import read_metrics


def exact_by_step(run: Path) -> dict[int, float]:
    out = {}
    for r in read_metrics(run / "metrics.jsonl"):
        if "eval" in r or "final_eval" in r:  # periodic evaluations, then the final one (EMA weights)
            out[int(r["step"])] = (r.get("eval") or r["final_eval"])["exact_accuracy"]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arm", action="append", required=True, help="NAME=PRESET [trm train flags] (repeat)")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--seeds", default="0", help="comma-separated training seeds")
    p.add_argument("--out", default="runs/step-screen", help="where the runs go")
    p.add_argument("--record", required=True, help="folder for runs.json")
    args = p.parse_args()
    arms = {}
    for a in args.arm:
        name, sep, spec = a.partition("=")
        if not sep or not spec.split():
            print(f"error: --arm takes NAME=PRESET [flags], not '{a}'", file=sys.stderr)
            return 2
        arms[name] = spec
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        print(f"error: --seeds takes comma-separated integers, not '{args.seeds}'", file=sys.stderr)
        return 2
    out = Path(args.out)
    record = {"steps": args.steps, "eval_every": args.eval_every, "seeds": seeds, "git_commit": git_commit(),
              "machine": step_speed.machine(torch.device("cpu")), "arms": {}}
    for name, spec in arms.items():
        preset, *flags = shlex.split(spec)
        runs = {}
        for seed in seeds:
            run = out / f"{name}-s{seed}"
            cmd = ["train", "--preset", preset, *flags, "--steps", str(args.steps), "--eval_every",
                   str(args.eval_every), "--seed", str(seed), "--threads", "1", "--quiet", "--out", str(run)]
            if not (run / "eval.json").is_file():
                if (run / "checkpoint").exists():
                    cmd = ["train", "--resume", str(run), "--threads", "1", "--quiet"]
                print(f"{name} seed {seed}: trm {shlex.join(cmd)}", flush=True)
                r = subprocess.run([sys.executable, "-m", "trm.cli", *cmd], env={**os.environ, "OMP_NUM_THREADS": "1"},
                                   capture_output=True, text=True)
                if r.returncode:
                    print(f"error: {name} seed {seed} failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}",
                          file=sys.stderr)
                    return 1
            runs[seed] = {"command": "trm " + shlex.join(cmd), "exact_at_step": exact_by_step(run)}
        steps = sorted(set.intersection(*(set(r["exact_at_step"]) for r in runs.values())))
        mean = {s: sum(r["exact_at_step"][s] for r in runs.values()) / len(runs) for s in steps}
        record["arms"][name] = {"spec": spec, "runs": runs, "mean_exact_at_step": mean}
        print(f"{name}: " + ", ".join(f"step {s}: {100 * m:.1f}%" for s, m in mean.items())
              + f"  (mean of {len(runs)} seeds)", flush=True)
    Path(args.record).mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(args.record) / "runs.json", record)
    print("| arm | flags | " + " | ".join(f"step {s}" for s in steps) + " |")
    print("|---|---|" + "---|" * len(steps))
    for name, a in record["arms"].items():
        print(f"| {name} | `{a['spec']}` | " + " | ".join(
            " / ".join(f"{100 * r['exact_at_step'].get(s, float('nan')):.1f}" for r in a["runs"].values())
            for s in steps) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
