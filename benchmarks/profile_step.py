"""Where the time of one training (or evaluation) step goes: a torch.profiler table, grouped.

    python benchmarks/profile_step.py --preset sudoku-extreme-mlp --batch 64
    python benchmarks/profile_step.py --preset sudoku-extreme-mlp --batch 1 --eval    # the solve path

Prints the top operators by self time and the share of the step spent in matrix multiplies (the FLOPs the
analytic count covers) against everything else (elementwise ops, norms, copies, the optimizer), and the FLOP/s
the matmuls themselves reach. This is what explains the distance between a step's achieved FLOP/s and the
machine's square-matmul rate (benchmarks/step_speed.py). A benchmark, not a test.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from step_speed import build_steps  # this folder: the steps are timed and profiled the same way
from trm.model.flops import eval_step_flops, train_step_flops
from trm.runtime import pick_device, resolve_dtype, tune_allocator

MATMUL = ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::_mkl", "mkldnn", "aten::_scaled_dot")


def group(name: str) -> str:
    if any(name.startswith(m) for m in MATMUL):
        return "matmul"
    if "Optimizer" in name or "adam" in name.lower() or name.startswith("aten::_foreach"):
        return "optimizer"
    if name in ("aten::copy_", "aten::clone", "aten::contiguous", "aten::to", "aten::_to_copy", "aten::cat",
                "aten::fill_", "aten::zero_", "aten::zeros", "aten::empty", "aten::empty_strided"):
        return "copies / allocation"
    return "elementwise, norms, reductions"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="sudoku-extreme-mlp")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp32"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--eval", action="store_true", help="profile an evaluation step (no grad) instead")
    ap.add_argument("--compile", action="store_true", help="torch.compile the network f first")
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    tune_allocator()
    device = pick_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    cfg, B, train_step, eval_step = build_steps(args.preset, device, dtype, args.batch, args.compile)
    step = eval_step if args.eval else train_step
    step()  # warm-up (and compilation)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        step()
    events = prof.key_averages()
    use_cuda = device.type == "cuda"
    self_us = (lambda e: e.self_device_time_total) if use_cuda else (lambda e: e.self_cpu_time_total)
    total = sum(self_us(e) for e in events)
    groups = defaultdict(float)
    for e in events:
        groups[group(e.key)] += self_us(e)
    flops = (eval_step_flops if args.eval else train_step_flops)(cfg, B)
    print(f"{args.preset}, batch {B}, {'eval' if args.eval else 'train'} step, {dtype}, "
          f"{torch.get_num_threads()} threads: {total / 1e6:.2f} s profiled, {flops / 1e9:.0f} GFLOP "
          f"-> {flops / total * 1e-3:.1f} GFLOP/s overall")
    for g, t in sorted(groups.items(), key=lambda kv: -kv[1]):
        extra = f"  -> matmuls alone at {flops / t * 1e-3:.1f} GFLOP/s" if g == "matmul" else ""
        print(f"  {g:32s} {t / 1e6:7.2f} s  {100 * t / total:5.1f}%{extra}")
    print()
    print(f"{'operator':40s} {'calls':>6s} {'self s':>8s} {'share':>6s}")
    for e in sorted(events, key=lambda e: -self_us(e))[:args.top]:
        print(f"{e.key[:40]:40s} {e.count:6d} {self_us(e) / 1e6:8.3f} {100 * self_us(e) / total:5.1f}%")


if __name__ == "__main__":
    main()
