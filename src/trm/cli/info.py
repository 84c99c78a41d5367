"""`trm presets` and `trm params`: the named configurations and what a model of one holds."""

from __future__ import annotations

from ..model import TRM, ModelConfig, count_parameters
from ..presets import PRESETS
from ..sampling import SAMPLER_PRESETS
from .common import add_field_flags, resolve_preset


def add_parsers(sub) -> None:
    sub.add_parser("presets", help="list the named configurations").set_defaults(func=cmd_presets)
    sp = sub.add_parser("params", help="count a preset's parameters (puzzle-embedding table on its own line)")
    sp.add_argument("--preset", required=True)
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
    counts = count_parameters(TRM(preset.model))
    m = preset.model
    print(f"preset {preset.name}: recursion={m.recursion} networks={m.networks} grad={m.grad} mixer={m.layer_pattern or m.mixer} "
          f"d={m.d} L={m.L} n={m.n} T={m.T} vocab={m.vocab_size} seq_len={m.seq_len} prefix={m.prefix_len} "
          f"({m.calls_per_step} network calls per supervision step)")
    print(f"puzzle-embedding table (trained by sign-SGD, not counted below): {m.num_puzzle_ids} ids x "
          f"{m.puzzle_emb_dim} = {counts['puzzle_embedding']}")
    print("trainable parameters:")
    print(counts["trainable"])
