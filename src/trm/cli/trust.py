"""`trm solve`'s trust flags (trm.trusted: decoding under the puzzle's rules, --verify) and its maze path."""

from __future__ import annotations

import json

from ..data import maze
from ..sampling import get_sampler_preset
from ..trusted import Task, solve, verify_config
from .common import SAMPLER_FLAGS, UserError, sampler_config, seed_list
from .preflight import question_input


def add_trust_flags(sv) -> None:
    g = sv.add_argument_group("answers you can trust (trm.trusted, docs/serve.md)")
    g.add_argument("--raw", action="store_true", help="show the model's own argmax, as trm eval scores it "
                   "(default: the givens kept, every blank a digit; a maze's walls, S and G kept)")
    g.add_argument("--propagate", action="store_true", help="Sudoku: fill cells most-confident first, each placed "
                   "digit struck from its row, column and box")
    g.add_argument("--verify", action="store_true", help="after the deterministic rollout, sample PTRM rollouts "
                   "(batches of --K, default 8, --sigma default 0.3) until one obeys the rules")
    g.add_argument("--verify-budget", type=int, default=64,
                   help="most rollouts --verify tries, the deterministic one included (default 64)")


def trust_options(args, N_sup: int) -> dict:
    """trm.trusted.solve's how, sampler and verify from the flags."""
    if args.raw and args.propagate:
        raise UserError("--raw shows the model's own argmax; --propagate decodes under the rules: choose one")
    sampler, verify = sampler_config(args, N_sup), None
    if args.verify:  # batches of K 8 at sigma 0.3 unless the sampler flags say otherwise
        given = {k: getattr(args, k) for k in SAMPLER_FLAGS if getattr(args, k) is not None}
        verify = verify_config(args.verify_budget, given, D=args.D or 0,
                               preset=get_sampler_preset(args.sampler) if args.sampler else None)
        verify.validate()
        sampler = None
    if (sampler is not None or verify is not None) and args.trace:
        raise UserError("--trace follows one deterministic rollout; leave out the sampler flags and --verify")
    return {"how": "raw" if args.raw else "propagate" if args.propagate else "constrained", "sampler": sampler,
            "verify": verify}


def verify_lines(r: dict, verdict: str, ms: str) -> tuple[str, str]:
    """The lines around the grid of a --verify answer."""
    v = r["verify"]
    head = (f"model's answer ({'the first valid one' if v['found'] else 'none valid; the selected one'} of "
            f"{v['rollouts']} rollouts: the deterministic one, then batches of {v['K']} with noise on {v['noise']} "
            f"sigma {v['sigma']:g}, D={v['D']}):")
    tail = (f"{verdict}; {v['rollouts']} rollouts, {v['network_calls']} network calls"
            + (f" (found in rollout {v['first_valid_rollout']})" if v["found"] else
               f": none valid within the budget of {v['budget']}") + f", q_halt {r['q_halt']:+.2f}, {ms}")
    return head, tail


def notes(r: dict) -> list[str]:
    """The lines after an answer: cells the decoding changed, a halt the rule checker overruled."""
    out = []
    if r.get("ran_past_halt"):
        out.append(f"Q said halt at step {r['halted_at']} on an answer that breaks the rules: ran on to step "
                   f"{r['steps']} (--no-halt always runs every step)")
    if r["cells_decoded"]:
        out.append(f"{r['cells_decoded']} cells differ from the model's own argmax ({r['decode']} decoding; --raw "
                   f"shows it)")
    return out


def solve_maze(args, model, cfg: dict) -> None:
    """`trm solve MAZE --checkpoint RUN` for a maze checkpoint: the path, checked to be a shortest S-G path."""
    size = int(cfg.get("data_meta", {}).get("size", 30))
    if args.propagate:
        raise UserError("--propagate is for Sudoku (a maze has no digits to place)")
    opts = trust_options(args, model.cfg.N_sup)
    if args.trace:
        raise UserError("--trace is for Sudoku")
    tokens = _maze_question(args, model, cfg, size)
    r = solve(model, Task("maze", size), tokens, D=args.D, halt=not args.no_halt, seed=seed_list(args)[0],
              dtype=args.dtype, max_rows=args.max_rows, memory_gb=args.memory_gb, **opts)
    if args.json:
        print(json.dumps(r))
        return
    print("maze:")
    print(maze.to_text(tokens, size))
    verdict = "a shortest path" if r["valid"] else "NOT a shortest S-G path"
    ms = f"{r['seconds'] * 1000:.0f} ms"
    head, tail = (verify_lines(r, verdict, ms) if "verify" in r else
                  ("model's answer:", f"{verdict}; {r['steps']} supervision steps, q_halt {r['q_halt']:+.2f}, {ms}"))
    print(head)
    print(r["solution"])
    print(tail)
    for line in notes(r):
        print(line)


def _maze_question(args, model, cfg: dict, size: int):
    row, text = question_input(args, model, cfg, f"a maze ({size} rows of '#', ' ', 'S', 'G'; a file or -)")
    if row is not None:
        return row
    try:
        return maze.parse_question(text, size)
    except ValueError as e:
        raise UserError(f"bad maze: {e}") from None
