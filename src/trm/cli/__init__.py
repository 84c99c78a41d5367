"""The `trm` command: one module per command group, each thin (parse, call, print).

    info.py      trm presets, trm params
    data.py      trm data sudoku|maze|arc
    train.py     trm train
    evaluate.py  trm eval, trm sweep
    solve.py     trm solve (without --checkpoint: the shipped model for the puzzle)
    models.py    trm models, trm models ship (trm.shipped: models/ and their cards)
    serve.py     trm serve (the web page, trm.serve)
    reference.py trm import, trm export (checkpoints of the official code)
    claims.py    trm claims (the claims table, docs/claims.md)
    common.py    one-line errors, config fields as flags, presets, the test-time-scaling flags
    (trm.analysis.cli adds trm analyze)

Errors are one line and a non-zero exit: 2 for a refused request, 1 for a bug (TRM_DEBUG=1 shows its traceback);
a closed output pipe (`trm presets | head`) ends quietly with 141, as a shell reports SIGPIPE.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..analysis.cli import add_parser as add_analyze_parser
from ..checkpoint import CheckpointError
from ..data.format import DatasetError
from ..data.recipes import shared_data_root
from ..runtime import exit_worker, tune_allocator
from . import claims, data, evaluate, info, models, reference, serve, solve, train
from .common import Parser, UserError


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="trm", allow_abbrev=False,
               description="Tiny Recursive Models: train, evaluate and solve grid puzzles.")
    sub = p.add_subparsers(dest="command", required=True)
    info.add_parsers(sub)
    data.add_parsers(sub)
    train.add_parsers(sub)
    evaluate.add_parsers(sub)
    solve.add_parsers(sub)
    models.add_parsers(sub)
    serve.add_parsers(sub)
    reference.add_parsers(sub)
    claims.add_parsers(sub)
    add_analyze_parser(sub)
    return p


def main(argv=None) -> int:
    return exit_worker(_main(argv))  # a torchrun worker ends here, without the interpreter's teardown


def _main(argv=None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--"]:  # `torchrun ... -m trm.cli -- train ...` keeps torchrun off trm's options
        argv = argv[1:]
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a usage error already printed on one line
        return int(e.code or 0)
    args.argv = argv  # what was asked, for records (`trm train` writes it to the run's config.json)
    tune_allocator()
    try:
        code = args.func(args)  # a command returns an exit code where it can fail without an error (a check)
        sys.stdout.flush()  # a reader gone before a short output was written shows only here
    except BrokenPipeError:  # `trm presets | head`: the reader has what it wanted; stop quietly
        _silence_stdout()
        return 141  # what a shell reports for a command ended by SIGPIPE
    except (UserError, CheckpointError, DatasetError) as e:
        print(f"trm: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, PermissionError, IsADirectoryError) as e:
        print(f"trm: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("trm: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug or an environment problem: still one line; TRM_DEBUG=1 shows the traceback
        if os.environ.get("TRM_DEBUG"):
            raise
        msg = str(e).splitlines()[0] if str(e) else ""
        print(f"trm: error: {type(e).__name__}: {msg} (set TRM_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
    return int(code or 0)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush of what is still buffered cannot fail again
    ("Exception ignored ... BrokenPipeError" at exit)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's capture)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


__all__ = ["Parser", "UserError", "build_parser", "main", "shared_data_root"]
