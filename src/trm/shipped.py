"""The models trm ships: `models/NAME/` holds a checkpoint (the evaluated weights and the run's config, no
training state) and its model card, both written by `trm models ship RUN NAME`.

    models/NAME/model.safetensors   the weights `trm train` evaluated (its EMA when EMA is on)
    models/NAME/config.json         the run's record: model, training config, command, commit, environment
    models/NAME/card.json           what the card says, as data: the evaluations behind every figure
    models/NAME/README.md           the model card, rendered from card.json

`trm solve PUZZLE` without --checkpoint takes the shipped model for the puzzle's task and size (`pick`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .atomic import atomic_dir, atomic_write_bytes, check_replaceable
from .checkpoint import CheckpointError, load_config, load_model, resolve_checkpoint
from .data import validator
from .data.format import load_dataset
from .evaluate import evaluate
from .model import count_parameters
from .sampling import SamplerConfig, evaluate_sampled
from .trusted import Task, solve, verify_config

CARD = "card.json"
TASK_NAMES = {"sudoku": "Sudoku", "maze": "maze", "arc": "ARC"}


def models_dir() -> Path:
    """Where shipped models live: $TRM_MODELS, else models/ of the working directory if it holds one, else the
    models/ of the repository this package was installed from."""
    if os.environ.get("TRM_MODELS"):
        return Path(os.environ["TRM_MODELS"])
    here = Path.cwd() / "models"
    return here if list_models(here) else Path(__file__).resolve().parents[2] / "models"


def list_models(root: Path | None = None) -> list[dict]:
    """Every model under `root` (a shipped one, or a run folder put there): name, checkpoint path, task, size
    and its card (None where it has none)."""
    root = models_dir() if root is None else Path(root)
    out = []
    for p in sorted(root.iterdir()) if root.is_dir() else []:
        try:
            ckpt = resolve_checkpoint(p)
            meta = load_config(ckpt).get("data_meta", {})
        except CheckpointError:
            continue
        try:
            card = json.loads((p / CARD).read_text())
        except (OSError, ValueError):
            card = None
        out.append({"name": p.name, "path": ckpt, "task": meta.get("task", "sudoku"), "size": meta.get("size"),
                    "card": card, "folder": p})
    return out


def pick(task: str, size: int, root: Path | None = None) -> Path:
    """The shipped model for `task` at `size`: the one with the best held-out exact accuracy on its card."""
    found = [m for m in list_models(root) if m["task"] == task and m["size"] == size]
    if not found:
        what = f"{size}x{size} {TASK_NAMES.get(task, task)}"
        have = ", ".join(f"{m['name']} ({m['size']}x{m['size']} {m['task']})" for m in list_models(root)) or "none"
        raise CheckpointError(f"no shipped model for a {what} in {root or models_dir()} (shipped: {have}); "
                              f"give --checkpoint RUN")
    return max(found, key=lambda m: ((m["card"] or {}).get("held_out", {}).get("exact_accuracy", -1)))["path"]


def _portable(path: str) -> str:
    """A run's folder as the card shows it: `runs/NAME`, not a path on the machine that trained it."""
    return f"runs/{Path(path).name}" if Path(path).is_absolute() else str(path)


def _command(cfg: dict) -> str:
    """The training command as a user types it (`trm train ...`), from the argv the run recorded."""
    argv = list(cfg.get("command") or [])
    if argv and (argv[0].endswith(".py") or argv[0].endswith("trm")):  # a path to trm's __main__.py, or trm
        argv = argv[1:]
    argv = [_portable(a) if i and argv[i - 1] == "--out" else
            "--out=" + _portable(a[6:]) if a.startswith("--out=") else a for i, a in enumerate(argv)]
    return "trm " + " ".join(argv) if argv else "(not recorded)"


def _eval_record(m: dict, keys=("n", "D", "exact_accuracy", "cell_accuracy", "valid_fraction",
                                "exact_accuracy_at_halt", "halting_precision", "mean_halt_steps")) -> dict:
    return {k: m[k] for k in keys if k in m}


def _solve_record(model, task: Task, split, limit: int, verify_budget: int, progress) -> dict:
    """What `trm solve` answers (decoded under the rules, halting checked) and `trm solve --verify`, on the
    first `limit` test puzzles: the share whose answer the rule checker accepts (a Sudoku's solution, a maze's
    shortest path) and the mean network calls."""
    hows = {"default": {}}
    if verify_budget > 1:
        hows["verify"] = {"verify": verify_config(verify_budget, {}, D=0)}
    right = {how: [] for how in hows}
    calls = {how: [] for how in hows}
    n = min(limit, len(split))
    for i in range(n):
        x = np.asarray(split.inputs[i])
        for how, kw in hows.items():
            r = solve(model, task, x, **kw)
            right[how].append(r["valid"])
            calls[how].append(r["verify"]["network_calls"] if "verify" in r
                              else r["steps"] * model.cfg.calls_per_step)
        progress(i + 1, n)
    return {how: {"n": n, "exact_accuracy": float(np.mean(v)), "network_calls_per_puzzle": float(np.mean(calls[how]))}
            for how, v in right.items()} | {"verify_budget": verify_budget}


def ship(run: str | os.PathLike, name: str, *, root: Path | None = None, data: str | None = None,
         hard: str | None = None, limit: int = 0, hard_limit: int = 0, solve_limit: int = 200, ptrm_limit: int = 200,
         ptrm: SamplerConfig | None = None, verify_budget: int = 64, log=print) -> Path:
    """Copy RUN's evaluated weights to models/NAME and write its card from fresh evaluations: the held-out
    test split of its dataset (or `data`), the hard pool `hard` (optional), `trm solve` as a user runs it
    (decoded, halting checked; and with --verify) and PTRM (best-Q, verify and pass@K)."""
    root = models_dir() if root is None else Path(root)
    if not name or "/" in name or name.startswith("."):
        raise CheckpointError(f"a model name is a plain folder name, not {name!r}")
    check_replaceable(root / name, "checkpoint")  # refused now, not after minutes of evaluation
    ckpt = resolve_checkpoint(run)
    cfg = load_config(ckpt)
    record = ckpt.parent / "config.json"  # the run's record (command, commit, environment) beside its checkpoint
    if ckpt.name.startswith("checkpoint") and record.is_file():
        cfg = {**json.loads(record.read_text()), **cfg}
    meta = cfg.get("data_meta", {})
    kind = meta.get("task", "sudoku")
    if kind not in ("sudoku", "maze"):
        raise CheckpointError(f"{run} was trained on {kind}: trm ships Sudoku and maze models (a rule checker "
                              f"makes their answers checkable)")
    data = data or cfg.get("train", {}).get("data")
    if not data or not (Path(data) / "meta.json").is_file():
        raise CheckpointError(f"the dataset {data} that {run} trained on is not here: give --data DIR (its test "
                              f"split is the card's held-out figure)")
    model, _ = load_model(ckpt)
    ds = load_dataset(data)
    if ds.meta.get("task") != kind or ds.meta.get("size") != meta.get("size"):
        raise CheckpointError(f"{data} holds {ds.meta.get('task')} of size {ds.meta.get('size')}; {run} was "
                              f"trained on {kind} of size {meta.get('size')}")
    task = Task(kind, int(meta["size"]))
    split = ds["test"]
    t0 = time.perf_counter()
    card = {"name": name, "task": kind, "size": task.size, "source_run": _portable(str(run)),
            "params": count_parameters(model)["trainable"], "model": cfg["model"], "preset": cfg.get("preset"),
            "command": _command(cfg), "git_commit": cfg.get("git_commit"), "environment": cfg.get("environment"),
            "data": {"path": str(data), "meta": cfg.get("data_meta")}, "step": cfg.get("step")}
    run_eval = Path(ckpt).parent / "eval.json"
    final = json.loads(run_eval.read_text()) if run_eval.is_file() else {}
    card["train_seconds"] = final.get("train_s")
    if (final.get("step") == cfg.get("step") and final.get("n") == len(split) and not limit
            and Path(data).resolve() == Path(cfg.get("train", {}).get("data", "")).resolve()):
        # the run's final evaluation: the same weights (its step), the same split, the same evaluate()
        card["held_out"] = {**_eval_record(final), "from": "the run's final evaluation (eval.json)"}
    else:
        log(f"held-out: {data} test split, {limit or len(split)} puzzles")
        card["held_out"] = _eval_record(evaluate(model, split, limit=limit, validity=validator(ds.meta)))
    if hard:
        hs = load_dataset(hard)
        if hs.meta.get("task") != kind or hs.meta.get("size") != task.size:
            raise CheckpointError(f"--hard {hard} is not {kind} of size {task.size}")
        log(f"hard pool: {hard} test split, {hard_limit or len(hs['test'])} puzzles")
        card["hard"] = {"path": str(hard), **_eval_record(evaluate(model, hs["test"], limit=hard_limit,
                                                                    validity=validator(hs.meta)))}
    if solve_limit:
        log(f"trm solve (decoded, halting checked; --verify budget {verify_budget}) on {solve_limit} puzzles")
        card["solve"] = _solve_record(model, task, split, solve_limit, verify_budget,
                                      lambda i, n: log(f"  {i}/{n}") if i % 50 == 0 or i == n else None)
    if ptrm_limit:
        ptrm = ptrm or SamplerConfig(K=8, sigma=0.3, noise="z")
        log(f"PTRM K={ptrm.K} sigma {ptrm.sigma:g} on {ptrm.noise}, {ptrm_limit} puzzles")
        m = evaluate_sampled(model, split, ptrm, limit=ptrm_limit, validity=validator(ds.meta))
        s = m["scores"][-1]
        card["ptrm"] = {"sampler": asdict(ptrm), "n": m["n"], "deterministic": m["deterministic"]["best-q@K"],
                        **{k: s[k] for k in ("best-q@K", "verify@K", "pass@K", "calls_per_puzzle") if k in s}}
    card["card_seconds"] = round(time.perf_counter() - t0, 1)
    from .runtime import git_commit
    card["card_commit"] = git_commit()
    with atomic_dir(root / name, kind="checkpoint") as tmp:
        shutil.copyfile(ckpt / "model.safetensors", tmp / "model.safetensors")
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        (tmp / CARD).write_text(json.dumps(card, indent=2) + "\n")
        (tmp / "README.md").write_text(render_card(card))
    return root / name


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _ship_command(c: dict, run: str) -> str:
    return f"trm models ship {run} {c['name']}" + (f" --hard {c['hard']['path']}" if "hard" in c else "")


def render_card(c: dict) -> str:
    """The model card (Markdown) of a card.json."""
    m, h = c["model"], c["held_out"]
    what = f"{c['size']}x{c['size']} {TASK_NAMES.get(c['task'], c['task'])}"
    mixer = m.get("layer_pattern") or m.get("mixer")
    dm = c["data"]["meta"] or {}
    splits = dm.get("splits", {})
    env = c.get("environment") or {}
    minutes = f"{c['train_seconds'] / 60:.1f} training minutes, " if c.get("train_seconds") else ""
    source = "; the run's final evaluation" if "from" in h else ""
    lines = [
        f"# {c['name']}: {what}",
        "",
        f"Generated by `{_ship_command(c, c['source_run'])}` (commit {c.get('card_commit') or 'unknown'}); "
        f"do not edit, ship again.",
        "",
        "| | |", "|---|---|",
        f"| task | {what} |",
        f"| model | {m.get('recursion', 'trm').upper()}, {mixer} mixer, d={m['d']}, L={m['L']}, n={m['n']}, T={m['T']}, "
        f"N_sup={m['N_sup']}: {c['params']:,} parameters |",
        f"| trained on | `{c['data']['path']}`: {splits.get('train', '?')} training puzzles"
        + (f" (pools {', '.join(dm['pools'])})" if dm.get("pools") else "")
        + f", {dm.get('augment') or 'no'} augmentation; {splits.get('test', '?')} held out |",
        f"| training | `{c['command']}` |",
        f"| commit | {c.get('git_commit') or 'not recorded'} |",
        f"| run | step {c.get('step')}, {minutes}{env.get('device', '?')} {env.get('dtype', '')}, "
        f"{env.get('cpu_threads', '?')} thread(s), torch {env.get('torch', '?')} |",
        "",
        "## Accuracy",
        "",
        "| evaluation | puzzles | exact | cells | note |", "|---|---|---|---|---|",
        f"| held-out test split, all {h['D']} steps (as `trm eval`) | {h['n']} | {_pct(h['exact_accuracy'])} | "
        f"{_pct(h['cell_accuracy'])} | the model's argmax{source} |",
        f"| held-out, stopping where Q halts | {h['n']} | {_pct(h.get('exact_accuracy_at_halt'))} | | mean halt "
        f"step {h.get('mean_halt_steps', '-')} |",
    ]
    if "hard" in c:
        k = c["hard"]
        lines.append(f"| hard pool `{k['path']}` | {k['n']} | {_pct(k['exact_accuracy'])} | "
                     f"{_pct(k['cell_accuracy'])} | harder than the training puzzles |")
    s = c.get("solve", {})
    if "default" in s:
        d = s["default"]
        lines.append(f"| `trm solve` (decoded under the rules, a halt on a broken answer overruled) | {d['n']} | "
                     f"{_pct(d['exact_accuracy'])} | | {d['network_calls_per_puzzle']:.0f} network calls a puzzle |")
    if "verify" in s:
        d = s["verify"]
        lines.append(f"| `trm solve --verify` (rollouts until one obeys the rules, budget {s['verify_budget']}) | "
                     f"{d['n']} | {_pct(d['exact_accuracy'])} | | {d['network_calls_per_puzzle']:.0f} network "
                     f"calls a puzzle |")
    if "ptrm" in c:
        p = c["ptrm"]
        sm = p["sampler"]
        lines.append(f"| PTRM K={sm['K']}, sigma {sm['sigma']:g} on {sm['noise']}: best-Q@K | {p['n']} | "
                     f"{_pct(p.get('best-q@K'))} | | deterministic {_pct(p['deterministic'])}, verify@K "
                     f"{_pct(p.get('verify@K'))}, pass@K {_pct(p.get('pass@K'))} |")
    lines += ["", "## Limits", ""] + [f"- {x}" for x in _limits(c)] + [
        "", "## Reproduce", "", "```", c["command"], _ship_command(c, "RUN"), "```", ""]
    return "\n".join(lines)


def _limits(c: dict) -> list[str]:
    """What the figures say a user should not expect, in words."""
    h, what = c["held_out"], f"{c['size']}x{c['size']}"
    out = [f"Only {what} {TASK_NAMES.get(c['task'], c['task'])}: the model has a fixed grid size and vocabulary."]
    miss = 1 - h["exact_accuracy"]
    if h["exact_accuracy"] == 0:
        out.append(f"It solves none of the {h['n']} held-out puzzles ({_pct(h['cell_accuracy'])} of cells right): "
                   f"a run too short to learn the task, shipped so that the commands have a model of this kind; "
                   f"do not expect answers from it.")
    elif miss > 0:
        out.append(f"It answers {_pct(miss)} of held-out puzzles wrongly with all steps; `trm solve` says when an "
                   f"answer breaks the rules, and `--verify` samples more rollouts until one obeys them.")
    at_halt = h.get("exact_accuracy_at_halt")
    if at_halt is not None and at_halt < h["exact_accuracy"] - 0.01:
        out.append(f"Its Q head halts early and wrongly at times ({_pct(at_halt)} exact where it halts): "
                   f"`trm solve` runs on when a halted answer breaks the rules.")
    if "hard" in c and c["hard"]["exact_accuracy"] < h["exact_accuracy"] - 0.1:
        out.append(f"It was trained on easier puzzles than the hard pool ({_pct(c['hard']['exact_accuracy'])} "
                   f"exact there).")
    if "hard" not in c:
        out.append("No hard pool was evaluated (trm's hard lists are 9x9 Sudoku).")
    return out


def render_again(folder: str | os.PathLike) -> Path:
    """Rewrite a shipped model's README.md from its card.json (after a change to the card's layout)."""
    folder = Path(folder)
    try:
        card = json.loads((folder / CARD).read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{folder / CARD} is missing or broken ({type(e).__name__})") from None
    atomic_write_bytes(folder / "README.md", render_card(card).encode())
    return folder / "README.md"
