"""The fixed-point variant (model/fixed_point.py) against max_iter: iterations and residual per solve, and what
a training step keeps for its backward under each gradient (unroll against implicit, neumann, phantom).

    python benchmarks/fixed_point.py                                   # sudoku6-deq-cpu's model, batch 16, CPU
    python benchmarks/fixed_point.py --max-iter 2,4,8,16,32 --batch 16 --threads 1 --seconds 3

The preset's model at its random initialisation, on random puzzles, one supervision step from the initial carry
(T = 2 solves). Solve quality: each solver run for exactly max_iter iterations (tol 0), the relative residual
||f(z) - z|| / ||f(z)|| of the last iterate (mean and worst over the solves' batch-worst samples); and with the
preset's tol, the iterations the solves took. Memory: the bytes of the distinct tensors autograd saves for the
backward in one training forward (saved_tensors_hooks; the weights excluded), with tol 0 so every iteration runs
(the worst case), and on CUDA the peak allocated memory of the step. Time: forward + backward of that step.
A benchmark, not a test: nothing here asserts a figure.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import step_speed  # benchmarks/ is on sys.path when this script runs
import torch

from trm.model import TRM
from trm.model.memory import saved_bytes
from trm.presets import get_preset

GRADS = ("unroll", "implicit", "neumann", "phantom")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="sudoku6-deq-cpu")
    ap.add_argument("--max-iter", default="2,4,8,16,32", help="comma-separated max_iter values")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=2.0, help="timing per cell")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    base = get_preset(args.preset).model
    g = torch.Generator().manual_seed(0)
    inputs = torch.randint(1, base.vocab_size, (args.batch, base.seq_len), generator=g).to(device)
    ids = torch.zeros(args.batch, dtype=torch.long, device=device)
    print(f"{args.preset} model (d={base.d}, L={base.L}, mixer={base.mixer}, T={base.T}, tokens={base.total_len}), "
          f"random init, batch {args.batch}, {args.threads} thread(s), {step_speed.machine(device)}")

    def model(**kw):
        torch.manual_seed(0)
        return TRM(replace(base, **kw)).to(device)

    def solves(m, train=False):
        m.train(train)
        m.solver_stats()
        with torch.no_grad():
            m(m.initial_carry(args.batch, device), inputs, ids)
        return m.solver_stats()

    print("\n| max_iter | fpi residual mean / max | anderson residual mean / max | anderson iterations at tol "
          f"{base.tol:g} (mean / max) | " + " | ".join(f"{k} saved MB" for k in GRADS) + " | "
          + " | ".join(f"{k} step ms" for k in ("unroll", "implicit")) + " | implicit backward iterations |")
    print("|---" * (5 + len(GRADS) + 2) + "|")
    for M in [int(v) for v in args.max_iter.split(",")]:
        fpi = solves(model(solver="fpi", max_iter=M, tol=0))
        aa = solves(model(solver="anderson", max_iter=M, tol=0))
        at_tol = solves(model(solver="anderson", max_iter=M))
        mem, ms, bwd = {}, {}, ""
        for grad in GRADS:
            m = model(fp_grad=grad, max_iter=M, tol=0).train()

            def forward(m=m):
                return m(m.initial_carry(args.batch, device), inputs, ids)[1].logits.float().square().mean()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            mem[grad], loss = saved_bytes(forward, m.parameters())
            loss.backward()
            if device.type == "cuda":
                mem[grad] = f"{mem[grad] / 2**20:.2f} (peak {torch.cuda.max_memory_allocated(device) / 2**20:.0f})"
            else:
                mem[grad] = f"{mem[grad] / 2**20:.2f}"
            if grad == "implicit":
                s = m.solver_stats()
                bwd = f"{s['bwd_iter_mean']:.0f}, residual {s['bwd_res_max']:.1e}"
            if grad in ("unroll", "implicit"):
                ms[grad] = 1000 * step_speed.timed(lambda: forward().backward(), device, args.seconds, warmup=1)
            m.zero_grad(set_to_none=True)
        print(f"| {M} | {fpi['res_mean']:.2e} / {fpi['res_max']:.2e} | {aa['res_mean']:.2e} / {aa['res_max']:.2e} | "
              f"{at_tol['iter_mean']:.1f} / {at_tol['iter_max']:.0f} | " + " | ".join(mem[k] for k in GRADS) + " | "
              + " | ".join(f"{ms[k]:.0f}" for k in ("unroll", "implicit")) + f" | {bwd} |")


if __name__ == "__main__":
    main()
