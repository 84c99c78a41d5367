"""Time to accuracy: train recipes for the same budget of training time on the same machine and print how long
each took to reach 1, 5, 10, 25, 50 and 90% exact on the held-out split (EMA weights, all D steps), with the
accuracy curve and the machine (CPU model, AVX-512 BF16 or not, matmul rates at both ends).

    python benchmarks/time_to_accuracy.py --minutes 60 --arm old="sudoku9-cpu --stagger false" \\
        --arm new="sudoku9-cpu" --parallel                       # side by side, one core each
    python benchmarks/time_to_accuracy.py --minutes 30 --arm a="sudoku6-cpu" --arm b="sudoku6-cpu --lr 3e-3"
    python benchmarks/time_to_accuracy.py --minutes 60 --threads 2 --arm goal="sudoku9-cpu --dtype auto"  # both cores

An arm is NAME=PRESET [trm train flags]. Every arm gets --threads T (default 1), --budget_clock train (the
budget counts training steps, not the evaluations), --eval_minutes E and --eval_limit L on top of its own flags. With
--parallel the arms run at the same time (arms x T threads must fit the cores), else one after
the other. A finished arm (eval.json present) is reused; a killed one is resumed. The record (JSON and a
plot) goes to --record.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import step_speed  # benchmarks/ is on sys.path when this script runs
import torch

from trm.runtime import cpu_flags, cpu_has_fast_bf16
from trm.train import read_metrics

THRESHOLDS = (0.01, 0.05, 0.10, 0.25, 0.50, 0.90)


def machine() -> dict:
    return {"cpu": step_speed.machine(torch.device("cpu")), "flags": cpu_flags(), "avx512_bf16": cpu_has_fast_bf16()}


def rates() -> dict:
    """1-thread square-matmul rates (step_speed's measurement): each arm runs on one thread."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    try:
        return {"fp32_1thread_gflops": round(step_speed.matmul_rate(cpu, torch.float32, (1024,), 1.0) / 1e9, 1),
                "bf16_1thread_gflops": round(step_speed.matmul_rate(cpu, torch.bfloat16, (1024,), 0.5) / 1e9, 1)}
    finally:
        torch.set_num_threads(prev)


def curve(run: Path) -> list[dict]:
    """(training minutes, step, exact) at every periodic evaluation and the final one."""
    out = []
    for r in read_metrics(run / "metrics.jsonl"):  # the arm may be being written
        if "eval" in r and "train_s" in r:
            out.append({"train_min": r["train_s"] / 60, "step": r["step"], "exact": r["eval"]["exact_accuracy"],
                        "cell": r["eval"]["cell_accuracy"], "n": r["eval"].get("n")})
    ev = run / "eval.json"
    if ev.is_file():
        e = json.loads(ev.read_text())
        out.append({"train_min": e.get("train_s", 0) / 60, "step": e["step"], "exact": e["exact_accuracy"],
                    "cell": e["cell_accuracy"], "n": e.get("n"), "final": True,
                    "raw_exact": (e.get("raw") or {}).get("exact_accuracy")})
    return out


def parse_arms(specs: list[str]) -> dict[str, list[str]]:
    """--arm NAME=PRESET [flags] (repeated) -> {name: [preset, *flags]}; a malformed one ends the script."""
    arms = {}
    for a in specs:
        name, _, spec = a.partition("=")
        if not spec.split() or not name.replace("-", "").replace("_", "").isalnum():
            sys.exit(f"{Path(sys.argv[0]).name}: --arm wants NAME=PRESET [flags], not {a!r}")
        arms[name] = shlex.split(spec)
    return arms


def time_to(points: list[dict], threshold: float) -> float | None:
    for p in points:
        if p["exact"] >= threshold:
            return p["train_min"]
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arm", action="append", required=True, help="NAME=PRESET [trm train flags] (repeat)")
    ap.add_argument("--minutes", type=float, default=60.0, help="training minutes per arm (default 60)")
    ap.add_argument("--eval-minutes", type=float, default=5.0, help="training minutes between evaluations")
    ap.add_argument("--eval-limit", type=int, default=1000, help="held-out puzzles per evaluation (default 1000)")
    ap.add_argument("--parallel", action="store_true", help="run the arms at the same time")
    ap.add_argument("--threads", type=int, default=1, help="threads per arm (default 1); with --parallel, arms x threads must fit the cores")
    ap.add_argument("--out", default="runs/tta", help="where the runs go")
    ap.add_argument("--record", default="docs/results/tta", help="where the record goes")
    args = ap.parse_args()
    arms = parse_arms(args.arm)
    if args.threads < 1 or (args.parallel and args.threads * len(arms) > (os.cpu_count() or 1)):
        sys.exit(f"time_to_accuracy.py: --threads {args.threads} x {len(arms)} arms does not fit "
                 f"{os.cpu_count()} cores")
    threads = str(args.threads)
    out, record = Path(args.out), Path(args.record)
    record.mkdir(parents=True, exist_ok=True)
    before = rates()
    procs = {}
    for name, spec in arms.items():
        run = out / name
        if (run / "eval.json").is_file():
            continue
        if (run / "checkpoint").exists():
            cmd = ["train", "--resume", str(run), "--threads", threads]
        else:
            cmd = ["train", "--preset", spec[0], *spec[1:], "--time-budget", str(args.minutes), "--budget_clock",
                   "train", "--eval_minutes", str(args.eval_minutes), "--eval_limit", str(args.eval_limit),
                   "--eval_every", "0", "--threads", threads, "--quiet", "--out", str(run)]
        full = [sys.executable, "-m", "trm.cli", *cmd]
        print(f"[{time.strftime('%H:%M:%S')}] {name}: trm {' '.join(cmd)}", flush=True)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / f"{name}.log", "a") as log:
            p = subprocess.Popen(full, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": threads})
        if args.parallel:
            procs[name] = p
        elif p.wait() != 0:
            sys.exit(f"arm {name} failed: see {out / (name + '.log')}")
    for name, p in procs.items():
        if p.wait() != 0:
            sys.exit(f"arm {name} failed: see {out / (name + '.log')}")
    after = rates()
    result = {"machine": machine(), "matmul_before": before, "matmul_after": after, "minutes": args.minutes,
              "eval_minutes": args.eval_minutes, "eval_limit": args.eval_limit, "parallel": args.parallel,
              "threads": args.threads, "arms": {}}
    for name, spec in arms.items():
        pts = curve(out / name)
        cfg = json.loads((out / name / "config.json").read_text())
        result["arms"][name] = {"spec": " ".join(spec), "curve": pts,
                                "time_to": {f"{int(t * 100)}%": time_to(pts, t) for t in THRESHOLDS},
                                "git_commit": cfg.get("git_commit"), "command": cfg.get("command")}
    (record / "time_to_accuracy.json").write_text(json.dumps(result, indent=1) + "\n")
    m = result["machine"]
    print(f"\n{m['cpu']} ({'AVX-512 BF16' if m['avx512_bf16'] else 'no AVX-512 BF16'}); 1-thread matmul "
          f"fp32 {before['fp32_1thread_gflops']} -> {after['fp32_1thread_gflops']} GFLOP/s, bf16 "
          f"{before['bf16_1thread_gflops']} -> {after['bf16_1thread_gflops']}; {args.minutes:g} training minutes "
          f"per arm on {args.threads} thread(s), {'side by side' if args.parallel else 'one after the other'}\n")
    print("| arm | recipe | " + " | ".join(f"to {int(t * 100)}%" for t in THRESHOLDS) + " | final exact | steps |")
    print("|---|---|" + "---|" * (len(THRESHOLDS) + 2))
    for name, a in result["arms"].items():
        final = a["curve"][-1] if a["curve"] else {"exact": float("nan"), "step": 0}
        cells = [f"{v:.0f} min" if v is not None else "-" for v in a["time_to"].values()]
        print(f"| {name} | `{a['spec']}` | " + " | ".join(cells) + f" | {100 * final['exact']:.1f}% | {final['step']} |")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, a in result["arms"].items():
            ax.plot([p["train_min"] for p in a["curve"]], [100 * p["exact"] for p in a["curve"]], "o-", label=name)
        ax.set_xlabel(f"training minutes ({args.threads} thread(s) an arm)")
        ax.set_ylabel("exact, held-out (%)")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(record / "time_to_accuracy.png", dpi=110)
    except ImportError:
        print("(matplotlib missing: no plot)")


if __name__ == "__main__":
    main()
