"""Candidate coverage of token mixers: train each arm for the same budget (over seeds), then sample K noisy PTRM
rollouts per puzzle and print pass@K (some rollout exact) and best-Q@K (the Q head's pick) for each K, as mean
and spread over the seeds, with the machine. The TRM + Mamba-2 paper's claim (arXiv 2602.12078): the SSD mixer
raises pass@K (coverage) more than pass@1.

    python benchmarks/pass_at_k.py --steps 150 --K 1,2,10,100 --seeds 0,1,2 --out runs/passk4 \\
        --record docs/results/passk4 --arm mlp-t="sudoku4-cpu" --arm attention="sudoku4-cpu --mixer attention \\
        --pos rope" --arm ssd="sudoku4-cpu --mixer ssd --ssd_expand 1 --ssd_state 16 --ssd_head_dim 8"

An arm is NAME=PRESET [trm train flags]; every arm trains `--steps` optimizer steps (or `--minutes` of training)
on one thread per seed, one after the other, then `trm sweep` samples its EMA weights (one sampling run at the
largest K; the first k rollouts of it give pass@k). Finished runs and sweeps are reused, killed ones resumed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import time_to_accuracy  # benchmarks/ is on sys.path when this script runs: the machine and matmul probes


def trm(*args: str) -> None:
    cmd = [str(Path(sys.executable).with_name("trm")), *args]
    print(f"[{time.strftime('%H:%M:%S')}] {shlex.join(cmd)}", flush=True)
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})  # one core a run


def mean_sd(xs: list[float]) -> list[float]:
    """Mean and sample standard deviation (0 for one value)."""
    return [statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arm", action="append", required=True, help="NAME=PRESET [trm train flags] (repeat)")
    budget = ap.add_mutually_exclusive_group(required=True)
    budget.add_argument("--steps", type=int, help="optimizer steps per run")
    budget.add_argument("--minutes", type=float, help="training minutes per run")
    ap.add_argument("--seeds", default="0,1,2", help="training seeds (default 0,1,2)")
    ap.add_argument("--K", default="1,2,10,100", help="rollouts per puzzle (default 1,2,10,100)")
    ap.add_argument("--sigma", type=float, default=0.3, help="noise scale (default 0.3)")
    ap.add_argument("--noise", default="z", help="where the noise goes: z or init (default z)")
    ap.add_argument("--D", type=int, default=0, help="supervision steps of a rollout (default: the model's N_sup)")
    ap.add_argument("--limit", type=int, default=500, help="held-out puzzles sampled (default 500)")
    ap.add_argument("--out", required=True, help="where the runs go")
    ap.add_argument("--record", default=None, help="where the record (JSON and plot) goes")
    args = ap.parse_args()
    arms = time_to_accuracy.parse_arms(args.arm)
    seeds = [int(s) for s in args.seeds.split(",")]
    Ks = sorted({int(k) for k in args.K.split(",")})
    out = Path(args.out)
    record = {"machine": time_to_accuracy.machine(), "rates_start": time_to_accuracy.rates(), "args": vars(args),
              "arms": {}}
    for name, (preset, *flags) in arms.items():
        per_seed = []
        for seed in seeds:
            run = out / f"{name}-s{seed}"
            if not (run / "eval.json").is_file():
                budget = ["--steps", str(args.steps)] if args.steps else \
                    ["--time-budget", str(args.minutes), "--budget_clock", "train"]
                trm("train", "--preset", preset, *flags, "--seed", str(seed), *budget, "--eval_every", "0",
                    "--threads", "1", "--quiet", "--out", str(run))
            sweep = run / "sweep"
            if not (sweep / "sweep.json").is_file():
                data = json.loads((run / "config.json").read_text())["train"]["data"]
                trm("sweep", "--checkpoint", str(run), "--data", data, "--out", str(sweep), "--quiet",
                    "--K", ",".join(map(str, Ks)), "--sigma", str(args.sigma), "--noise", args.noise, "--seeds", "0",
                    "--limit", str(args.limit), *(["--D", str(args.D)] if args.D else []))
            rows = json.loads((sweep / "sweep.json").read_text())["rows"]
            D = max(r["D"] for r in rows)
            noisy = {r["K"]: r for r in rows if r["D"] == D and r["noise"] != "none"}
            ev = json.loads((run / "eval.json").read_text())
            per_seed.append({"seed": seed, "step": ev["step"], "train_min": ev.get("train_s", 0) / 60,
                             "exact": ev["exact_accuracy"], "D": D,
                             "pass@K": {k: noisy[k]["pass@K"] for k in Ks},
                             "best-q@K": {k: noisy[k]["best-q@K"] for k in Ks}})
        summary = {m: {k: mean_sd([s[m][k] for s in per_seed]) for k in Ks} for m in ("pass@K", "best-q@K")}
        record["arms"][name] = {"command": [preset, *flags], "seeds": per_seed, **summary}
    record["rates_end"] = time_to_accuracy.rates()

    print(f"\n{record['machine']['cpu']}; AVX-512 BF16: {record['machine']['avx512_bf16']}; 1-thread matmul "
          f"{record['rates_start']} -> {record['rates_end']}")
    print(f"{len(seeds)} seeds; {args.limit} held-out puzzles; sigma {args.sigma} on {args.noise}; mean +- sd")
    head = "| arm | exact (EMA) | " + " | ".join(f"pass@{k}" for k in Ks) + " | " + \
        " | ".join(f"best-Q@{k}" for k in Ks) + " |"
    print(head + "\n" + "|---" * (head.count("|") - 1) + "|")
    for name, a in record["arms"].items():
        exact, sd = mean_sd([s["exact"] for s in a["seeds"]])
        cells = [f"{100 * a[m][k][0]:.1f} +- {100 * a[m][k][1]:.1f}" for m in ("pass@K", "best-q@K") for k in Ks]
        print(f"| {name} | {100 * exact:.1f} +- {100 * sd:.1f} | " + " | ".join(cells) + " |")
    if args.record:
        rec = Path(args.record)
        rec.mkdir(parents=True, exist_ok=True)
        (rec / "pass_at_k.json").write_text(json.dumps(record, indent=1) + "\n")
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, a in record["arms"].items():
            for metric, style in (("pass@K", "-o"), ("best-q@K", "--x")):
                ax.errorbar(Ks, [100 * a[metric][k][0] for k in Ks], yerr=[100 * a[metric][k][1] for k in Ks],
                            fmt=style, capsize=3, label=f"{name} {metric}")
        ax.set(xscale="log", xlabel="K (rollouts per puzzle)", ylabel="exact (%)", title="coverage by mixer")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(rec / "pass_at_k.png", dpi=120)
        print(f"record: {rec}/pass_at_k.json, pass_at_k.png")


if __name__ == "__main__":
    main()
