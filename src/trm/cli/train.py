"""`trm train`: a preset with overrides (its dataset built when missing), or a run resumed from its checkpoint."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..checkpoint import check_new_run_dir
from ..data.recipes import build_preset_data
from ..evaluate import summary_line
from ..model import ModelConfig
from ..train import Diverged, RunStopped, TrainConfig, Trainer
from .common import UserError, add_field_flags, overrides, resolve_preset


def add_parsers(sub) -> None:
    tp = sub.add_parser("train", help="train a preset (or resume a run)")
    tp.add_argument("--preset", help="named configuration (trm presets)")
    tp.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    tp.add_argument("--quiet", action="store_true", help="no progress bars")
    add_field_flags(tp, ModelConfig, "model (override the preset)")
    add_field_flags(tp, TrainConfig, "training (override the preset)")
    tp.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    if args.resume:
        if overrides(args, ModelConfig):
            raise UserError("the model cannot be changed when resuming")
        trainer = Trainer(ModelConfig(), TrainConfig(), resume=args.resume, overrides=overrides(args, TrainConfig),
                          progress=not args.quiet, command=_command(args))
        print(f"resuming {trainer.run_dir} at step {trainer.step}")
    else:
        if not args.preset:
            raise UserError("give --preset NAME (trm presets lists them) or --resume RUN_DIR")
        preset = resolve_preset(args)
        cfg = preset.train
        if not cfg.out:
            cfg.out = f"runs/{preset.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        check_new_run_dir(cfg.out)  # before minutes of building a dataset (the Trainer checks again)
        if not cfg.data:
            if not preset.data:
                raise UserError(f"preset {preset.name} names no dataset: pass --data DIR")
            cfg.data = preset.data["path"]
            if not (Path(cfg.data) / "meta.json").exists():
                print(f"building the dataset of {preset.name} in {cfg.data} ...")
                build_preset_data(preset.data, Path(cfg.data), progress=not args.quiet)
        trainer = Trainer(preset.model, cfg, preset=preset.name, progress=not args.quiet, command=_command(args))
        if trainer.main:
            print(f"training {preset.name} into {cfg.out} on {trainer.device} "
                  f"({trainer.world} process{'es' if trainer.world > 1 else ''})")
    try:
        result = trainer.fit()
    except RunStopped as e:  # a signal (exit 128 + its number, checkpoint saved) or a NaN loss (nothing saved)
        if trainer.main:
            print(f"trm: {'error: ' if isinstance(e, Diverged) else ''}{e}", file=sys.stderr)
        return e.code
    if trainer.main and result is not None:
        print(f"final test ({result['weights']} weights, step {result['step']}): {summary_line(result)}")
        if "raw" in result:
            print(f"raw (non-EMA) weights: exact {result['raw']['exact_accuracy']:.4f}  "
                  f"cell {result['raw']['cell_accuracy']:.4f}")
        print(f"checkpoint: {trainer.run_dir / 'checkpoint'}")
    return 0


def _command(args) -> list[str] | None:
    """The command line as typed (`trm train ...`), for the run's record; None: the process's own argv."""
    return ["trm", *args.argv] if getattr(args, "argv", None) is not None else None
