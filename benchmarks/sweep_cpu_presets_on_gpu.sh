#!/usr/bin/env bash
# Sample efficiency of candidate CPU-preset settings, measured fast on a GPU (accuracy per training step does
# not depend on the device; the CPU cost per step comes from benchmarks/step_speed.py on the CPU).
#   bash benchmarks/sweep_cpu_presets_on_gpu.sh OUT_DIR
# Needs data/sudoku6 (trm data sudoku --out data/sudoku6 --size 6 --generate 2000 --test 1000).
set -euo pipefail
out=${1:-runs/sweep}
steps=${STEPS:-1000}
common="--preset sudoku6-cpu --steps $steps --eval_every 100 --eval_limit 1000 --quiet --data data/sudoku6"
TRM=${TRM:-trm}
run() { name=$1; shift; $TRM train $common --out "$out/$name" "$@" > "$out/$name.log" 2>&1 || tail -3 "$out/$name.log"; \
        python3 - "$out/$name" <<'PY'
import json, os, sys
run = sys.argv[1]
rows = []
for line in open(run + "/metrics.jsonl") if os.path.exists(run + "/metrics.jsonl") else []:
    try:
        rows.append(json.loads(line))
    except json.JSONDecodeError:  # the last line of a killed run
        pass
ev = [(r["step"], r["eval"]["exact_accuracy"]) for r in rows if "eval" in r]
if not os.path.exists(run + "/eval.json"):
    print(run.split("/")[-1], " ".join(f"{s}:{a:.3f}" for s, a in ev), "final: none (the run did not finish)")
    sys.exit(0)
fin = json.load(open(run + "/eval.json"))
raw = (fin.get("raw") or {}).get("exact_accuracy")
print(run.split("/")[-1], " ".join(f"{s}:{a:.3f}" for s, a in ev), f"final:{fin['exact_accuracy']:.3f}",
      "raw:-" if raw is None else f"raw:{raw:.3f}")
PY
}
mkdir -p "$out"
run d128-n6T3
run d128-n3T2 --n 3 --T 2
run d64-n6T3 --d 64 --puzzle_emb_dim 64
run d128-n6T3-b64 --batch_size 64
run d96-n4T2 --d 96 --puzzle_emb_dim 96 --n 4 --T 2
