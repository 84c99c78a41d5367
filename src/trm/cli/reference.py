"""`trm import` and `trm export`: checkpoints of the official TRM / HRM code in and out (trm.reference)."""

from __future__ import annotations

import json
from pathlib import Path

from ..reference import ReferenceError, check_against, export_reference, import_reference
from .common import UserError


def add_parsers(sub) -> None:
    ip = sub.add_parser("import", help="turn a reference checkpoint (step_N + all_config.yaml) into a trm run")
    ip.add_argument("ref", metavar="REF_DIR", help="folder with step_N and all_config.yaml (or a step_N file)")
    ip.add_argument("--out", required=True, help="the run directory to write (must not exist or be empty)")
    ip.add_argument("--check", metavar="GOLDEN", default=None,
                    help="a safetensors file of the reference's own outputs on a fixed batch (inputs, labels, "
                         "eval_logits, eval_q_halt, train_loss, grad.*): compare, print, exit 1 beyond tolerance")
    ip.add_argument("--json", action="store_true", help="print the check as JSON")
    ip.set_defaults(func=cmd_import)
    ep = sub.add_parser("export", help="write a trm run in the reference's format (step_N + all_config.yaml)")
    ep.add_argument("run", metavar="RUN_DIR", help="a trm run or checkpoint directory")
    ep.add_argument("--out", required=True, help="folder for step_N and all_config.yaml")
    ep.set_defaults(func=cmd_export)


def _read_golden(path: str) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    p = Path(path)
    if not p.is_file():
        raise UserError(f"--check {p}: no such file")
    try:
        golden = load_file(p)
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"--check {p} is not a readable safetensors file ({str(e).splitlines()[0][:100]})") from None
    need = {"inputs", "labels", "puzzle_identifiers", "eval_logits", "eval_q_halt", "eval_q_continue", "train_loss",
            "train_lm_loss", "train_q_halt_loss"}
    missing = sorted(need - set(golden))
    if missing:
        raise UserError(f"--check {p} lacks {', '.join(missing)}")
    return golden


def cmd_import(args) -> int:
    golden = _read_golden(args.check) if args.check else None  # read before writing anything
    try:
        out, imp = import_reference(args.ref, args.out)
    except ReferenceError as e:
        raise UserError(str(e)) from None
    c = imp.model_cfg
    print(f"imported {imp.kind} ({imp.arch.get('name')}) into {out}: recursion={c.recursion} networks={c.networks} "
          f"grad={c.grad} mixer={c.mixer} pos={c.pos} d={c.d} L={c.L} n={c.n} T={c.T} N_sup={c.N_sup} "
          f"prefix={c.prefix_len} dtype={imp.dtype}")
    if imp.ignored:
        print(f"arch fields trm does not use (ignored): {', '.join(imp.ignored)}")
    if golden is None:
        return 0
    from ..checkpoint import load_model
    model, _ = load_model(out)
    r = check_against(model, golden, imp.kind, q_continue_loss=imp.train["q_continue_loss"])
    if args.json:
        print(json.dumps(r, indent=1))
    else:
        print("step  max|logits diff|  max|q_halt diff|  max|q_continue diff|  tolerance")
        for s in r["steps"]:
            print(f"{s['step']:4d}  {s['logits']:16.2e}  {s['q_halt']:16.2e}  {s['q_continue']:20.2e}  {s['tol']:9.0e}")
        print("training step, relative difference: " + ", ".join(f"{k} {v:.2e}" for k, v in r["losses"].items())
              + f" (tolerance {r['tol']['loss_rel']:.0e})")
        worst = max(r["grads"], key=r["grads"].get)
        print(f"gradients: {len(r['grads'])} parameters, largest relative difference {r['grads'][worst]:.2e} "
              f"({worst}; tolerance {r['tol']['grad_rel']:.0e})")
    print("check: " + ("within tolerance" if r["ok"] else "BEYOND TOLERANCE"))
    return 0 if r["ok"] else 1


def cmd_export(args) -> None:
    try:
        path = export_reference(args.run, args.out)
    except ReferenceError as e:
        raise UserError(str(e)) from None
    print(f"wrote {path} and {Path(args.out) / 'all_config.yaml'}")
