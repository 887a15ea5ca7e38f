"""One writer per output folder: a second `privsynth train` into the same --out while the first
runs is refused with one line naming the running one, instead of both finishing and one result
being silently lost.

The lock is ``.<name>.lock`` beside the folder (the folder itself is swapped whole by
``--overwrite``, so it cannot hold its own lock), held with ``flock``: the kernel drops it when
the process dies, so a killed run never blocks the next one. The file and any parent folders the
lock had to create are removed on release.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Iterator

from .errors import ConfigError

try:
    import fcntl
except ImportError:  # Windows: no flock; the folder is then not locked
    fcntl = None  # type: ignore[assignment]


@contextlib.contextmanager
def hold_output(out: str | os.PathLike[str], what: str = "privsynth train") -> Iterator[None]:
    """Hold ``out``'s lock for the body; `ConfigError` naming the holder if another has it."""
    if fcntl is None:
        yield
        return
    absolute = Path(out).absolute()
    path = absolute.parent / f".{absolute.name}.lock"
    created = _make_parents(path.parent)
    try:
        fd = _acquire(path, Path(out), what)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                path.unlink()
            os.close(fd)  # closing drops the flock
    finally:
        for folder in reversed(created):  # only what the lock itself made, and only if empty
            with contextlib.suppress(OSError):
                folder.rmdir()


def _acquire(path: Path, out: Path, what: str) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise ConfigError(
                f"--out '{out}' is in use by another run ({holder}); wait for it to finish "
                "or choose another --out"
            ) from None
        except OSError:  # a file system without flock: run unlocked rather than not at all
            return fd
        # The holder may have removed the file between our open and flock: then we locked an
        # orphan, and a third process could lock a new file at the same path. Retry.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            info = {"pid": os.getpid(), "command": what, "argv": sys.argv[1:], "since": _now()}
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(info).encode())
            return fd
        os.close(fd)


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 65536, 0) or b"{}")
        return f"{info['command']}, pid {info['pid']}, started {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a privsynth process still running"


def _make_parents(folder: Path) -> list[Path]:
    """The folders made to hold ``folder``, outermost first."""
    missing = [f for f in (folder, *folder.parents) if not f.exists()][::-1]
    for f in missing:
        f.mkdir(exist_ok=True)
    return missing


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
