"""Time a training step and an evaluation step of the paper configs and the CPU presets on this machine.

    python benchmarks/step_speed.py                       # every preset that fits the device, ~10 s each
    python benchmarks/step_speed.py --presets sudoku6-cpu --dtype fp32 --seconds 20
    python benchmarks/step_speed.py --presets sudoku-extreme-mlp --peer --solve   # + the PyPI peer, solve latency

Prints samples x supervision-steps per second, the achieved model FLOP/s (analytic count, trm.model.flops)
and, measured in the same run, this machine's square matmul rate in fp32 and bf16, so the fraction of the
hardware each step reaches can be read off. A benchmark, not a test: nothing here asserts a speed.

--peer also times the `tiny-recursive-model` package from PyPI (`pip install -e '.[bench]'`) on the same task
size: its TinyRecursiveModel with its MLPMixer1D(dim=512, depth=2, seq_len=81), n=6, T=3, one supervision step
(forward + backward + AdamW), at the same batch and dtype, with its FLOPs counted the same way. --solve times
`trm solve`'s path for one 9x9 puzzle with the paper-size MLP model (all 16 steps, no halting: the worst case).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from trm.model import TRM
from trm.model.flops import eval_step_flops, train_step_flops
from trm.optim import build_optimizer
from trm.presets import PRESETS, get_preset
from trm.runtime import autocast, cpu_name, matmul_rate, pick_device, resolve_dtype, tune_allocator


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def machine(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()}, {os.cpu_count()} logical CPUs"


def timed(fn, device, seconds, warmup=2) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    reps, t0 = 0, time.perf_counter()
    while reps < 2 or time.perf_counter() - t0 < seconds:
        fn()
        reps += 1
    sync(device)
    return (time.perf_counter() - t0) / reps


def build_steps(name, device, dtype, batch=0, compile_=False):
    """A preset's model on random tokens and its two steps as closures: (cfg, batch, train_step, eval_step).
    Training step = one supervision step as `trm train` runs it (forward through T cycles, backward through the
    last, optimizer); evaluation step = one supervision step without gradients."""
    p = get_preset(name)
    cfg = p.model
    model = TRM(cfg).to(device)
    if compile_:
        torch._dynamo.reset()  # each preset is a new model: no recompile limit shared across them
        model.compile_networks()
    B = batch or p.train.batch_size
    opt = build_optimizer(model.named_parameters(), name=p.train.optimizer, lr=1e-4, weight_decay=0.1, betas=(0.9, 0.95))
    inputs = torch.randint(1, cfg.vocab_size, (B, cfg.seq_len), device=device)
    labels = torch.randint(1, cfg.vocab_size, (B, cfg.seq_len), device=device)
    ids = torch.zeros(B, dtype=torch.long, device=device)
    carry = model.initial_carry(B, device)

    def train_step():
        model.train()
        with autocast(device, dtype):
            _, out = model(carry, inputs, ids)
        loss = torch.nn.functional.cross_entropy(out.logits.float().flatten(0, 1), labels.flatten())
        (loss + out.q_halt.sum()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    @torch.no_grad()
    def eval_step():
        model.eval()
        with autocast(device, dtype):
            model(carry, inputs, ids)

    return cfg, B, train_step, eval_step


def bench_preset(name, device, dtype, batch, seconds, compile_):
    cfg, B, train_step, eval_step = build_steps(name, device, dtype, batch, compile_)
    t_train = timed(train_step, device, seconds)
    t_eval = timed(eval_step, device, seconds)
    return {"preset": name, "batch": B, "dtype": dtype,
            "train_step_s": t_train, "train_samples_x_steps_per_s": B / t_train,
            "train_gflops": train_step_flops(cfg, B) / t_train / 1e9,
            "eval_step_s": t_eval, "eval_samples_x_steps_per_s": B / t_eval,
            "eval_gflops": eval_step_flops(cfg, B) / t_eval / 1e9}


def peer_call_flops(B: int, dim: int = 512, depth: int = 2, seq_len: int = 81, exp: float = 4.0,
                    exp_token: float = 0.5) -> int:
    """One call of the peer's MLPMixer1D: per layer a token mix seq_len -> exp*dim -> seq_len (1x1 convs over the
    sequence axis, for every channel) and a channel mix dim -> exp_token*dim -> dim."""
    ht, hc = int(exp * dim), int(exp_token * dim)
    return B * depth * (2 * dim * 2 * seq_len * ht + 2 * seq_len * 2 * dim * hc)


def bench_peer(device, dtype, B, seconds, n=6, T=3, vocab=10, seq_len=81, dim=512):
    try:
        from tiny_recursive_model import MLPMixer1D, TinyRecursiveModel
    except ImportError:
        raise SystemExit("--peer needs the tiny-recursive-model package: pip install -e '.[bench]'") from None
    model = TinyRecursiveModel(dim=dim, num_tokens=vocab, network=MLPMixer1D(dim=dim, depth=2, seq_len=seq_len),
                               num_refinement_blocks=T, num_latent_refinements=n).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    seq = torch.randint(0, vocab, (B, seq_len), device=device)
    labels = torch.randint(0, vocab, (B, seq_len), device=device)
    y0, z0 = model.get_initial()

    def step():
        with autocast(device, dtype):
            loss, *_ = model(seq, y0, z0, labels=labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    t = timed(step, device, seconds, warmup=1)
    call = peer_call_flops(B, dim, 2, seq_len)
    flops = (T - 1) * (n + 1) * call + 3 * ((n + 1) * call + B * 2 * seq_len * dim * vocab)
    return {"preset": "peer: tiny-recursive-model MLPMixer1D", "batch": B, "dtype": dtype, "train_step_s": t,
            "train_samples_x_steps_per_s": B / t, "train_gflops": flops / t / 1e9,
            "params": sum(p.numel() for p in model.parameters())}


def bench_solve(device, dtype, seconds):
    """Seconds for one 9x9 puzzle through the path `trm solve` takes (16 supervision steps of the paper MLP)."""
    from trm.evaluate import rollout
    model = TRM(get_preset("sudoku-extreme-mlp").model).to(device).eval()
    inputs = torch.randint(1, 11, (1, 81), device=device)
    ids = torch.zeros(1, dtype=torch.long, device=device)

    def solve():
        for _ in rollout(model, inputs, ids, model.cfg.N_sup, dtype=dtype):
            pass
    return timed(solve, device, seconds, warmup=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="*", default=None,
                    help="default: every preset on a GPU; on a CPU the Sudoku ones and the *-cpu ones (a 900-token "
                         "paper step takes minutes there)")
    ap.add_argument("--batch", type=int, default=0, help="batch size (default: each preset's; paper: 768)")
    ap.add_argument("--cpu-paper-batch", type=int, default=64,
                    help="batch for the paper presets on CPU (768 takes minutes a step there)")
    ap.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp32"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seconds", type=float, default=10.0, help="time spent on each measurement")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--peer", action="store_true", help="also time the tiny-recursive-model package (see above)")
    ap.add_argument("--peer-batch", type=int, default=64)
    ap.add_argument("--solve", action="store_true", help="also time one 9x9 solve with the paper-size model")
    ap.add_argument("--json", default="", help="also write the results to this JSON file")
    args = ap.parse_args()
    tune_allocator()  # as the CLI does: big freed blocks stay in the heap
    device = pick_device(args.device)
    if args.presets is None:
        args.presets = [p for p in PRESETS if device.type != "cpu" or p.startswith("sudoku") or p.endswith("-cpu")]
    dtype = resolve_dtype(args.dtype, device)
    print(f"device {device}, dtype {dtype}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    rates = {"fp32": matmul_rate(device, torch.float32)}
    if device.type == "cuda" or dtype == "bf16":
        rates["bf16"] = matmul_rate(device, torch.bfloat16)
    else:  # slow without hardware bf16: a smaller, shorter probe says so without wasting minutes
        rates["bf16"] = matmul_rate(device, torch.bfloat16, sizes=(256,), seconds=1.0)
    for k, v in rates.items():
        print(f"matmul {k}: {v / 1e9:.1f} GFLOP/s (square, measured now)")
    ref = rates[dtype]
    rows = []
    print(f"{'preset':20s} {'batch':>5s} {'train s/step':>12s} {'train smp*st/s':>14s} {'GFLOP/s':>8s} {'%mm':>5s} "
          f"{'eval s/step':>11s} {'eval smp*st/s':>13s} {'GFLOP/s':>8s}")
    for name in args.presets:
        batch = args.batch or (args.cpu_paper_batch if device.type == "cpu" and not name.endswith("-cpu") else 0)
        r = bench_preset(name, device, dtype, batch, args.seconds, args.compile)
        rows.append(r)
        print(f"{name:20s} {r['batch']:5d} {r['train_step_s']:12.3f} {r['train_samples_x_steps_per_s']:14.1f} "
              f"{r['train_gflops']:8.1f} {100 * r['train_gflops'] * 1e9 / ref:5.1f} {r['eval_step_s']:11.3f} "
              f"{r['eval_samples_x_steps_per_s']:13.1f} {r['eval_gflops']:8.1f}", flush=True)
    extra = {}
    if args.peer:
        r = bench_peer(device, dtype, args.peer_batch, args.seconds)
        rows.append(r)
        print(f"{'peer (PyPI)':20s} {r['batch']:5d} {r['train_step_s']:12.3f} {r['train_samples_x_steps_per_s']:14.1f} "
              f"{r['train_gflops']:8.1f} {100 * r['train_gflops'] * 1e9 / ref:5.1f}   ({r['params']} parameters)")
        same = [o for o in rows if o["preset"] == "sudoku-extreme-mlp" and o["batch"] == args.peer_batch]
        ours = same[0] if same else bench_preset("sudoku-extreme-mlp", device, dtype, args.peer_batch, args.seconds,
                                                 args.compile)
        if not same:
            rows.append(ours)
        extra["ours_over_peer_flops"] = ours["train_gflops"] / r["train_gflops"]
        extra["ours_over_peer_samples"] = ours["train_samples_x_steps_per_s"] / r["train_samples_x_steps_per_s"]
        print(f"sudoku-extreme-mlp at batch {args.peer_batch}: {ours['train_gflops']:.1f} GFLOP/s, "
              f"{extra['ours_over_peer_flops']:.2f}x the peer's FLOP/s, {extra['ours_over_peer_samples']:.2f}x its "
              f"samples x steps/s")
    if args.solve:
        extra["solve_9x9_paper_mlp_s"] = bench_solve(device, dtype, args.seconds)
        print(f"trm solve path, one 9x9 puzzle, paper MLP model, 16 steps: {extra['solve_9x9_paper_mlp_s']:.3f} s")
    # the machine's speed again: a shared or throttled machine shows up as a drift between the two
    end = matmul_rate(device, torch.float32 if dtype == "fp32" else torch.bfloat16)
    drift = end / ref - 1
    print(f"matmul {dtype} at the end: {end / 1e9:.1f} GFLOP/s ({100 * drift:+.0f}% against the start)"
          + ("  -- the machine's speed changed during the run: compare with care" if abs(drift) > 0.1 else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": str(device), "machine": machine(device), "dtype": dtype,
                       "threads": torch.get_num_threads(), "torch": torch.__version__,
                       "matmul_gflops": {k: v / 1e9 for k, v in rates.items()},
                       "matmul_gflops_end": end / 1e9, "rows": rows, **extra}, f, indent=2)


if __name__ == "__main__":
    main()
