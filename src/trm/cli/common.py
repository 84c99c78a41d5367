"""What several commands share: one-line errors, config fields as flags (their source comments as help), presets
with overrides, and the test-time-scaling flags."""

from __future__ import annotations

import argparse
import inspect
import io
import textwrap
import tokenize
from dataclasses import MISSING, fields, is_dataclass

from ..model import ModelConfig
from ..presets import Preset, get_preset
from ..sampling import SamplerConfig, get_sampler_preset
from ..train import TrainConfig


class UserError(ValueError):
    """A request `trm` refuses (bad flags, a missing input): printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the default prints the whole usage first)."""

    def error(self, message: str):
        self.exit(2, f"trm: error: {message} (see `{self.prog} --help`)\n")


# --- dataclass fields as plain flags ---------------------------------------------------------------------
def field_comments(cls) -> dict[str, str]:
    """The comment on each field's line in the source of dataclass `cls` (and its dataclass bases).

    A line holding only a comment, indented further than the field, continues the field above it; any other
    line ends it. {} when the source cannot be read (no .py file, as in a frozen app)."""
    out: dict[str, str] = {}
    for c in reversed(cls.__mro__):
        if c is not object and is_dataclass(c):
            out.update(_own_field_comments(c))
    return out


def _own_field_comments(cls) -> dict[str, str]:
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(textwrap.dedent(inspect.getsource(cls))).readline))
    except (OSError, TypeError, SyntaxError, tokenize.TokenError):
        return {}
    names = {f.name for f in fields(cls)}
    comments: dict[str, list[str]] = {}
    depth, line, prev = 0, [], None
    field = None  # (name, column) of the field a comment-only line may continue
    for tok in tokens:
        if tok.type == tokenize.INDENT:
            depth += 1
        elif tok.type == tokenize.DEDENT:
            depth -= 1
        elif not line and tok.type == tokenize.COMMENT:  # a line holding only a comment
            if field is not None and tok.start[1] > field[1]:
                comments[field[0]].append(tok.string.lstrip("#").strip())
            else:
                field = None
        elif not line and tok.type == tokenize.NL:
            if prev != tokenize.COMMENT:  # a blank line
                field = None
        elif tok.type == tokenize.NEWLINE:  # the end of a statement: is it `name: type = default  # comment`?
            code = [t for t in line if t.type not in (tokenize.COMMENT, tokenize.NL)]
            field = None
            if (depth == 1 and len(code) > 1 and code[0].type == tokenize.NAME and code[1].string == ":"
                    and code[0].string in names and code[0].string not in comments):
                comments[code[0].string] = [t.string.lstrip("#").strip() for t in line if t.type == tokenize.COMMENT]
                field = (code[0].string, code[0].start[1])
            line = []
        else:
            line.append(tok)
        prev = tok.type
    return {k: " ".join(p for p in v if p) for k, v in comments.items() if any(v)}


def add_field_flags(parser: argparse.ArgumentParser, cls, title: str) -> None:
    """--name (and --name-with-dashes) for every field of `cls`; None when not given, so a preset's value stays."""
    group = parser.add_argument_group(title)
    comments = field_comments(cls)
    for f in fields(cls):
        names = [f"--{f.name}"] + ([f"--{f.name.replace('_', '-')}"] if "_" in f.name else [])
        default = f.default if f.default is not MISSING else None
        about = comments.get(f.name, "").replace("%", "%%")  # argparse formats help strings with %
        if isinstance(default, bool):
            group.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                               help=f"{about} (preset default {default})".strip())
        else:
            group.add_argument(*names, dest=f.name, type=type(default), default=None,
                               metavar=type(default).__name__.upper(), help=f"{about} (default {default})".strip())


def overrides(args: argparse.Namespace, cls) -> dict:
    """The fields of `cls` given on the command line."""
    return {f.name: getattr(args, f.name) for f in fields(cls) if getattr(args, f.name, None) is not None}


def resolve_preset(args: argparse.Namespace) -> Preset:
    """The preset --preset names, with the model and training fields given as flags set on it."""
    preset = get_preset(args.preset)
    for k, v in overrides(args, ModelConfig).items():
        setattr(preset.model, k, v)
    for k, v in overrides(args, TrainConfig).items():
        setattr(preset.train, k, v)
    return preset


# --- lists and test-time scaling -------------------------------------------------------------------------
def int_list(text: str, flag: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{flag} takes comma-separated integers, not '{text}'") from None


def float_list(text: str, flag: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{flag} takes comma-separated numbers, not '{text}'") from None


SAMPLER_FLAGS = ("K", "sigma", "noise", "select", "stop_after", "stop_margin")


def add_sampler_flags(p: argparse.ArgumentParser, sweep: bool = False) -> None:
    """PTRM's flags (trm.sampling); `trm sweep` takes its own comma-separated K, sigma, noise and stop rules."""
    g = p.add_argument_group("test-time scaling (PTRM: K noisy rollouts, one picked; any of these turns it on)")
    g.add_argument("--sampler", default=None, help="the papers' settings: ptrm-sudoku, ptrm-maze, ptrm-arc "
                   "(trm presets lists them); the flags below override")
    if not sweep:
        g.add_argument("--K", type=int, default=None, help="rollouts per puzzle (ARC: per augmented version)")
        g.add_argument("--sigma", type=float, default=None, help="std of the Gaussian noise (paper: 0.2-1.0)")
        g.add_argument("--noise", default=None, choices=["z", "y", "init"],
                       help="z (paper) or y: added before every supervision step; init: the initial state only")
        g.add_argument("--select", default=None, choices=["best-q", "mode", "q-vote"],
                       help="which rollout's answer counts: highest final q_halt (paper), most frequent answer, "
                       "or the answer with the largest sum of sigmoid(q_halt)")
        g.add_argument("--stop-after", type=int, default=None,
                       help="freeze a rollout once q_halt > --stop-margin for this many steps in a row (saves "
                       "compute; the paper runs all D steps)")
        g.add_argument("--stop-margin", type=float, default=None)
    g.add_argument("--seeds", default=None, help="comma-separated noise seeds, results averaged (default 0)")
    g.add_argument("--max-rows", type=int, default=0,
                   help="rollout rows (puzzles x K) per forward pass (default: what fits in --memory-gb)")
    g.add_argument("--memory-gb", type=float, default=1.0, help="memory bound of the rollout state (default 1)")


def sampler_config(args: argparse.Namespace, N_sup: int) -> SamplerConfig | None:
    """The SamplerConfig the flags ask for (D defaults to the checkpoint's N_sup), or None when no
    test-time-scaling flag was given."""
    given = {k: getattr(args, k) for k in SAMPLER_FLAGS if getattr(args, k, None) is not None}
    if args.sampler is None and not given and args.seeds is None:
        return None
    cfg = get_sampler_preset(args.sampler) if args.sampler else SamplerConfig()
    for k, v in given.items():
        setattr(cfg, k, v)
    if args.D is not None:
        cfg.D = args.D
    cfg.D = cfg.D or N_sup
    cfg.validate()
    if args.max_rows < 0 or not args.memory_gb > 0:
        raise UserError("--max-rows must be >= 0 and --memory-gb > 0")
    return cfg


def seed_list(args: argparse.Namespace) -> list[int]:
    """--seeds, or [0]."""
    return int_list(args.seeds, "--seeds") if args.seeds else [0]
