"""`trm presets` and `trm params`: the named configurations and what a model of one holds (its parameters;
with --backward-memory, what one training step keeps for its backward, against depth)."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

from ..model import TRM, ModelConfig, count_parameters
from ..presets import PRESETS
from ..sampling import SAMPLER_PRESETS
from .common import UserError, add_field_flags, int_list, resolve_preset
from .preflight import check_flags


def add_parsers(sub) -> None:
    sub.add_parser("presets", help="list the named configurations").set_defaults(func=cmd_presets)
    sp = sub.add_parser("params", help="count a preset's parameters (puzzle-embedding table on its own line)")
    sp.add_argument("--preset", required=True)
    g = sp.add_argument_group("training memory against depth (measured on random puzzles, CPU)")
    g.add_argument("--backward-memory", metavar="DEPTHS", default=None,
                   help="comma-separated depths: the bytes one training supervision step keeps for its backward at "
                        "each (a fixed-point model: max_iter, its tolerance off; else: n)")
    g.add_argument("--batch", type=int, default=16, help="puzzles in that step (default 16)")
    g.add_argument("--seed", type=int, default=0, help="seed of the weights and the random puzzles (default 0)")
    g.add_argument("--json", action="store_true", help="print one JSON object")
    add_field_flags(sp, ModelConfig, "model (override the preset)")
    sp.set_defaults(func=cmd_params)


def cmd_presets(args) -> None:
    for p in PRESETS.values():
        m = p.model
        print(f"{p.name:20s} {p.about}")
        variant = "" if (m.recursion, m.networks, m.grad) == ("trm", 1, "last") else \
            f"recursion={m.recursion} networks={m.networks} grad={m.grad} "
        if m.uses_solver:
            variant += f"solver={m.solver} max_iter={m.max_iter} tol={m.tol:g} fp_grad={m.fp_grad} "
        print(f"{'':20s} {variant}mixer={m.layer_pattern or m.mixer} d={m.d} L={m.L} n={m.n} T={m.T} N_sup={m.N_sup} "
              f"batch={p.train.batch_size} "
              f"steps={p.train.steps} lr={p.train.lr} data={p.data.get('path', '-')}")
    print("\ntest-time samplers (trm eval / solve / sweep --sampler NAME; flags override):")
    for name, (about, c) in SAMPLER_PRESETS.items():
        print(f"{name:20s} K={c.K} sigma={c.sigma:g} D={c.D} noise={c.noise} select={c.select}: {about}")


def cmd_params(args) -> None:
    preset = resolve_preset(args)
    if args.backward_memory is not None:
        return backward_memory(preset, args)
    if args.json:
        raise UserError("--json prints the --backward-memory measurement; give --backward-memory DEPTHS")
    counts = count_parameters(TRM(preset.model))
    m = preset.model
    print(f"preset {preset.name}: recursion={m.recursion} networks={m.networks} grad={m.grad} "
          f"mixer={m.layer_pattern or m.mixer} d={m.d} L={m.L} n={m.n} T={m.T} vocab={m.vocab_size} seq_len={m.seq_len} prefix={m.prefix_len} "
          f"({m.calls_per_step} network calls per supervision step)")
    print(f"puzzle-embedding table (trained by sign-SGD, not counted below): {m.num_puzzle_ids} ids x "
          f"{m.puzzle_emb_dim} = {counts['puzzle_embedding']}")
    print("trainable parameters:")
    print(counts["trainable"])


def backward_memory(preset, args) -> None:
    """The bytes autograd saves in one training supervision step at each depth: the fixed-point claim's
    constant training memory (implicit gradient) against the unrolled solve, or TRM's growth with n."""
    import torch

    from ..model.memory import saved_for_backward
    depths = int_list(args.backward_memory, "--backward-memory")
    if not depths or min(depths) < 1:
        raise UserError("--backward-memory takes depths >= 1 (e.g. 2,4,8,16,32)")
    check_flags(args, ("batch", 1))
    cfg = preset.model
    knob = "max_iter" if cfg.uses_solver else "n"
    rows = []
    for depth in depths:
        c = replace(cfg, max_iter=depth, min_iter=0, tol=0.0) if cfg.uses_solver else replace(cfg, n=depth)
        torch.manual_seed(args.seed)
        saved = saved_for_backward(TRM(c), args.batch, seed=args.seed)
        rows.append({"depth": depth, "saved_bytes": saved, "saved_mb": round(saved / 2**20, 3)})
    out = {"preset": preset.name, "depth": knob, "batch": args.batch, "seed": args.seed,
           "grad": cfg.fp_grad if cfg.uses_solver else cfg.grad, "rows": rows,
           "ratio_last_to_first": rows[-1]["saved_bytes"] / max(1, rows[0]["saved_bytes"]),
           "model": asdict(cfg)}
    if args.json:
        print(json.dumps(out))
        return
    how = f"solver {cfg.solver}, gradient {cfg.fp_grad}" if cfg.uses_solver else f"grad {cfg.grad}"
    print(f"preset {preset.name} ({how}), batch {args.batch}: MB one training supervision step keeps for its "
          f"backward (weights excluded)")
    for r in rows:
        print(f"  {knob} {r['depth']:4d}: {r['saved_mb']:10.2f} MB")
