"""Writes that a kill cannot tear: build beside the destination, then rename into place.

A rename within one filesystem is atomic, so a reader (or a resumed run) sees the old content or the new one,
never half of either. Datasets, checkpoints, recordings, reports and the small JSON/CSV/PNG files all go
through the three helpers here.

A temporary is named `.NAME.HOST-PID-RANDOM.tmp` (`.old` for a replaced folder moved aside), so the next
write of NAME can remove what a killed writer left (GBs of a half-built dataset) without touching the files of
a writer that is still alive. A folder is replaced only when it is one trm wrote (`check_replaceable`).
`hold_lock` keeps a second process from writing where one already does (a training run).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock, runs go unlocked
    fcntl = None

# What trm writes, by the file that marks it (and a key that file's JSON holds): the only folders that
# atomic_dir replaces. A dataset and a recording both have a meta.json; their keys tell them apart.
KINDS = {
    "dataset": ("meta.json", "splits"),     # trm data ...
    "recording": ("meta.json", "arrays"),   # trm analyze --record-dir
    "report": ("report.json", None),        # trm analyze --out
    "checkpoint": ("model.safetensors", None),
}


class OverwriteRefused(ValueError):
    """An existing path that trm will not replace (one-line message)."""


def check_replaceable(target: str | os.PathLike, kind: str | None = None) -> None:
    """Raise OverwriteRefused unless `target` is absent, an empty folder, or a folder trm wrote (of `kind`, or
    of any kind in KINDS when None). Never a plain file, a symbolic link, the current folder or one above it:
    --overwrite must not be able to delete what the user keeps there."""
    target = Path(target)
    if not os.path.lexists(target):
        return
    if target.is_symlink():
        raise OverwriteRefused(f"{target} is a symbolic link: refusing to replace it (give the folder it points "
                               f"to, {os.path.realpath(target)}, or another output folder)")
    if not target.is_dir():
        raise OverwriteRefused(f"{target} is a file, not a folder trm wrote: refusing to replace it (move it "
                               f"away or choose another output folder)")
    real, cwd = Path(os.path.realpath(target)), Path(os.path.realpath(os.getcwd()))
    if real == cwd or real in cwd.parents:
        raise OverwriteRefused(f"{target} is the current folder or holds it: refusing to replace it (choose "
                               f"another output folder)")
    if not any(target.iterdir()):
        return
    kinds = [kind] if kind else list(KINDS)
    if not any(_is_kind(target, k) for k in kinds):
        what = f"a trm {kind} (no {KINDS[kind][0]})" if kind else f"a folder trm wrote (a {', '.join(KINDS)})"
        raise OverwriteRefused(f"{target} is not {what}: refusing to replace it (move it away or choose another "
                               f"output folder)")


def _is_kind(folder: Path, kind: str) -> bool:
    marker, key = KINDS[kind]
    if not (folder / marker).is_file():
        return False
    if key is None:
        return True
    try:
        return key in json.loads((folder / marker).read_text())
    except (OSError, ValueError, TypeError):
        return False


# --- temporaries that name their writer --------------------------------------------------------------------
_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:24] or "host"  # no dots: the name stays parseable
_TMP = re.compile(r"(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)-[0-9a-f]{8}\.(?:tmp|old)")


def _temp_name(name: str, what: str = "tmp") -> str:
    return f".{name}.{_HOST}-{os.getpid()}-{secrets.token_hex(4)}.{what}"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale(target: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of `target` that a writer on this host left when it was killed (its pid is gone);
    returns what was removed. A live writer's temporaries, and other hosts' (a shared filesystem), stay."""
    target = Path(target)
    prefix, removed = f".{target.name}.", []
    try:
        entries = list(target.parent.iterdir())
    except FileNotFoundError:
        return removed
    for p in entries:
        m = _TMP.match(p.name[len(prefix):]) if p.name.startswith(prefix) else None
        if m is None or m["host"] != _HOST or _alive(int(m["pid"])):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


@contextmanager
def atomic_dir(target: str | os.PathLike, *, aside: str | None = None, fsync: bool = False,
               kind: str | None = None) -> Iterator[Path]:
    """Yield an empty temporary directory beside `target`; when the block ends without an exception it
    replaces `target`, and when it raises it is removed and `target` is left as it was.

    An existing `target` is moved aside first and removed last, so a crash at any point leaves the old or the
    new directory, never neither. It must be a folder trm wrote, of `kind` when given (check_replaceable,
    checked before and after the block: callers should also call it before long work). `aside` names that
    moved-aside copy (a name readers know to fall back to, as `checkpoint.old`); by default it is hidden and
    per-process. fsync: flush every file's content to disk before the renames make it visible (a power cut then
    cannot leave a complete-looking, empty file)."""
    check_replaceable(target, kind)
    target = Path(os.path.abspath(target))  # `.` and `x/..` have a name to build siblings from
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target)
    tmp = target.with_name(_temp_name(target.name))
    tmp.mkdir()
    try:
        yield tmp
        if fsync:
            for f in tmp.rglob("*"):
                if f.is_file():
                    with open(f, "rb") as fh:
                        os.fsync(fh.fileno())
        check_replaceable(target, kind)  # the block may have run for hours: look again
        old = target.with_name(aside or _temp_name(target.name, "old"))
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)  # left by an earlier crash
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    remove_stale(target)  # a killed writer's moved-aside copy: the new target is in place now


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` (with its suffix, for writers that go by it: savefig, np.savez);
    what is written there replaces `path` when the block ends without an exception, fsynced first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    # a unique name, not mkstemp: the writer creates the file, with the permissions the umask gives
    tmp = path.with_name(_temp_name(path.name) + path.suffix)
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


# --- one writer per folder ----------------------------------------------------------------------------------
class Locked(ValueError):
    """Another process holds the lock (one-line message naming it)."""


def hold_lock(path: str | os.PathLike, what: str):
    """Take an exclusive lock on the file `path` (created, holding this pid) and return its open file: the lock
    lasts until that file is closed, or the process ends however it ends (the OS drops a flock with its
    process, so a crash leaves no stale lock). Raises Locked naming `what` and the holder's pid."""
    f = open(path, "a+")
    if fcntl is None:
        return f
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        raise Locked(f"{what} is in use by another process (pid {holder}): wait for it to end or stop it "
                     f"first") from None
    f.truncate(0)
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f
