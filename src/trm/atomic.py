"""Writes that a kill cannot tear: build beside the destination, then rename into place.

A rename within one filesystem is atomic, so a reader (or a resumed run) sees the old content or the new one,
never half of either. Datasets, checkpoints, recordings, reports and the small JSON/CSV/PNG files all go
through the three helpers here.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_dir(target: str | os.PathLike, *, aside: str | None = None, fsync: bool = False) -> Iterator[Path]:
    """Yield an empty temporary directory beside `target`; when the block ends without an exception it
    replaces `target`, and when it raises it is removed and `target` is left as it was.

    An existing `target` is moved aside first and removed last, so a crash at any point leaves the old or the
    new directory, never neither. `aside` names that moved-aside copy (a name readers know to fall back to,
    as `checkpoint.old`); by default it is hidden and per-process. fsync: flush every file's content to disk
    before the renames make it visible (a power cut then cannot leave a complete-looking, empty file)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        yield tmp
        if fsync:
            for f in tmp.rglob("*"):
                if f.is_file():
                    with open(f, "rb") as fh:
                        os.fsync(fh.fileno())
        old = target.with_name(aside or f".{target.name}.old-{os.getpid()}")
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)  # left by an earlier crash
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` (with its suffix, for writers that go by it: savefig, np.savez);
    what is written there replaces `path` when the block ends without an exception, fsynced first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a unique name, not mkstemp: the writer creates the file, with the permissions the umask gives
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a file so that readers see either the old or the new content, never a torn one."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())
