"""Checkpoints: safetensors weights + JSON config (+ the full training state for resume), written atomically.

    RUN_DIR/checkpoint/model.safetensors   weights to evaluate (the EMA when EMA is on), with buffers
    RUN_DIR/checkpoint/config.json         model + training config, dataset meta, step
    RUN_DIR/checkpoint/train_state.pt      raw weights, optimizer, EMA, step, data position, RNG, ACT carry
    RUN_DIR/train.lock                     held (flock) by the one process training the run

A new checkpoint is written to a temporary directory and renamed over the old one, so a kill at any moment
leaves a complete checkpoint (in the worst case the previous one, kept as checkpoint.old until the swap).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .atomic import atomic_dir
from .model import TRM, ModelConfig
from .model.layers import legacy_keys

CKPT_DIR = "checkpoint"
LOCK = "train.lock"


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated or does not match its config (message is one line)."""


def save_checkpoint(run_dir: str | os.PathLike, weights: dict[str, torch.Tensor], config: dict,
                    train_state: dict | None = None) -> Path:
    final = Path(run_dir) / CKPT_DIR
    # the previous checkpoint waits as checkpoint.old (where resolve_checkpoint looks) until the new one is in;
    # fsync: the files' contents are on disk before the renames make them visible
    try:
        with atomic_dir(final, aside=f"{CKPT_DIR}.old", fsync=True, kind="checkpoint") as tmp:
            save_file({k: v.detach().contiguous().cpu() for k, v in weights.items()}, tmp / "model.safetensors")
            (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
            if train_state is not None:
                torch.save(train_state, tmp / "train_state.pt")
    except (OSError, RuntimeError) as e:  # torch reports a full disk as "enforce fail at inline_container.cc"
        if isinstance(e, RuntimeError) and "write" not in str(e):
            raise
        free = shutil.disk_usage(final.parent).free / 2**20
        raise CheckpointError(f"cannot write the checkpoint {final} ({free:.0f} MiB free on its disk): "
                              f"{getattr(e, 'strerror', None) or 'the write failed'}; the previous checkpoint "
                              f"is kept") from e
    return final


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """Accept a run directory or a checkpoint directory; fall back to checkpoint.old after a killed swap."""
    path = Path(path)
    if (path / "model.safetensors").is_file():
        return path
    for cand in (path / CKPT_DIR, path / f"{CKPT_DIR}.old"):
        if (cand / "model.safetensors").is_file() and (cand / "config.json").is_file():
            return cand
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}: the path does not exist")
    raise CheckpointError(f"no checkpoint in {path} (expected {path / CKPT_DIR}/model.safetensors)")


def run_dir_of(path: str | os.PathLike) -> Path:
    """The run folder of a run or of its checkpoint folder (`RUN/checkpoint`, `RUN/checkpoint.old`): where a
    resumed run goes on writing. A checkpoint folder by another name has no run to resume."""
    path = Path(path)
    ckpt = resolve_checkpoint(path)
    if ckpt != path:
        return path
    if path.name in (CKPT_DIR, f"{CKPT_DIR}.old"):
        return path.parent
    raise CheckpointError(f"{path} is a checkpoint folder, not a run: resume the run folder that holds "
                          f"{CKPT_DIR}/ (a copied checkpoint has no run to continue)")


def is_run_dir(path: Path) -> bool:
    """Whether `path` is a folder `trm train` wrote: its config.json record, its lock, or a checkpoint."""
    if (path / LOCK).is_file() or (path / CKPT_DIR).is_dir() or (path / f"{CKPT_DIR}.old").is_dir():
        return True
    try:
        return "train" in json.loads((path / "config.json").read_text())
    except (OSError, ValueError, TypeError):
        return False


def check_new_run_dir(out: str | os.PathLike) -> None:
    """Refuse to start a new run in `out` unless it is absent, empty, or a run killed before its first
    checkpoint (started again from step 0): never a file, a folder of the user's or a run to resume."""
    out = Path(out)
    if not os.path.lexists(out):
        return
    if not out.is_dir():
        raise CheckpointError(f"--out {out} is a file: give a new or empty folder")
    if (out / "model.safetensors").exists():
        raise CheckpointError(f"--out {out} is a checkpoint folder: give a new or empty folder")
    if (out / CKPT_DIR).is_dir() or (out / f"{CKPT_DIR}.old").is_dir():
        raise CheckpointError(f"{out} already holds a run: resume it with --resume {out} or pick another --out")
    if any(out.iterdir()) and not is_run_dir(out):
        shown = sorted(p.name for p in out.iterdir())
        raise CheckpointError(f"--out {out} is a folder that is not a trm run (it holds {', '.join(shown[:3])}"
                              f"{', ...' if len(shown) > 3 else ''}): give a new or empty folder")


def load_config(ckpt: Path) -> dict:
    try:
        cfg = json.loads((ckpt / "config.json").read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{ckpt}/config.json is missing") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{ckpt}/config.json is broken ({e.msg})") from None
    if "model" not in cfg:
        raise CheckpointError(f"{ckpt}/config.json has no model config")
    return cfg


def load_weights(ckpt: Path, device="cpu") -> dict[str, torch.Tensor]:
    try:
        return legacy_keys(load_file(ckpt / "model.safetensors", device=str(device)))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{ckpt}/model.safetensors is unreadable or truncated ({msg})") from None


def load_model(path: str | os.PathLike, device="cpu") -> tuple[TRM, dict]:
    """The model of a checkpoint in eval mode, and its config dict."""
    ckpt = resolve_checkpoint(path)
    cfg = load_config(ckpt)
    try:
        model = TRM(ModelConfig(**cfg["model"]))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{ckpt}/config.json has an invalid model config ({e})") from None
    weights = load_weights(ckpt)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise CheckpointError(f"{ckpt}/model.safetensors does not match its config: {first}") from None
    return model.to(device).eval(), cfg


def load_train_state(ckpt: Path) -> dict:
    f = ckpt / "train_state.pt"
    if not f.is_file():
        raise CheckpointError(f"{ckpt} has no train_state.pt: it cannot be resumed (was it saved by eval-only?)")
    try:
        return torch.load(f, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types on truncation; report one line
        raise CheckpointError(f"{f} is unreadable or truncated ({type(e).__name__})") from None
