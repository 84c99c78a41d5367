"""Run tests/test_ddp.py's 2-process training command many times and count the runs that fail.

    python benchmarks/ddp_repeat.py --runs 40 [--busy 3]

A race shows in a fraction of runs, not in one: this is how the exit of torchrun workers was checked
(docs/performance.md, section 7). --busy N starts N busy-loop processes beside the runs (a loaded machine is
where the race showed). Prints each failure's first stderr line that names an abort, and the count.
A stress script, not a test (it needs the dev install: it reads tests/conftest.py and tests/test_ddp.py).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import make_sort_dataset  # noqa: E402  the test's own data and command, not copies
from test_ddp import ARGS  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--busy", type=int, default=0, help="busy-loop processes running beside the runs")
    a = ap.parse_args()
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(a.busy)]
    fails = 0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data = make_sort_dataset(Path(tmp) / "data")
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            for i in range(1, a.runs + 1):
                out = Path(tmp) / f"run{i}"
                r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                    "--nproc_per_node", "2", "-m", "trm.cli", "--", "train", *ARGS,
                                    "--data", str(data), "--out", str(out)],
                                   capture_output=True, text=True, env=env)
                if r.returncode != 0:
                    fails += 1
                    why = next((ln for ln in r.stderr.splitlines() if "terminate" in ln or "Signal" in ln), "")
                    print(f"run {i}: exit {r.returncode}  {why.strip()}", flush=True)
                print(f"\r{i}/{a.runs} runs, {fails} failed", end="", file=sys.stderr, flush=True)
    finally:
        for p in busy:
            p.kill()
    print(f"\n{fails} of {a.runs} runs failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
