"""Claim a folder for one worker, so sweeps on several machines sharing an output folder never
train the same cell twice.

A claim is the file ``.<folder name>.claim`` beside the folder (a run folder must stay empty
until training writes it), created with ``O_CREAT | O_EXCL``: of any number of
processes (on any host that sees the folder: local disks, NFSv3+, SMB) exactly one creates it.
It names its owner (host, pid). A claim is *stale*, and may be taken over, when its owner ran on
this host and is gone, or when nothing in the folder changed for ``stale_after`` seconds (a
training run writes a checkpoint every ``--checkpoint-every`` steps, which is its heartbeat).
Taking over renames the stale claim away first; only one renamer wins.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path

STALE_AFTER_S = 6 * 3600.0


def claim(folder: Path, stale_after: float = STALE_AFTER_S) -> bool:
    """True if this process now owns ``folder``; False if another one does."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    path = _path(folder)
    for _ in range(2):  # a second try after breaking a stale claim
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not _stale(folder, stale_after):
                return False
            try:  # break it: of several breakers only one rename succeeds
                os.replace(path, path.with_name(f"{path.name}.stale-{uuid.uuid4().hex[:8]}"))
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(
                {
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "claimed": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                },
                f,
            )
        return True
    return False


def release(folder: Path) -> None:
    """Drop this process' claim on ``folder`` (finished, or failed: someone may retry)."""
    path = _path(folder)
    if _owner(path) == (socket.gethostname(), os.getpid()):
        path.unlink(missing_ok=True)
    for stale in folder.parent.glob(f"{path.name}.stale-*"):
        stale.unlink(missing_ok=True)


def holder(folder: Path) -> str | None:
    """'host:pid' of the claim's owner, or None if the folder is not claimed."""
    owner = _owner(_path(folder))
    return f"{owner[0]}:{owner[1]}" if owner else None


def _path(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.claim"


def _owner(path: Path) -> tuple[str, int] | None:
    try:
        data = json.loads(path.read_text())
        return str(data["host"]), int(data["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _stale(folder: Path, stale_after: float) -> bool:
    path = _path(folder)
    owner = _owner(path)
    if owner is not None and owner[0] == socket.gethostname() and not _alive(owner[1]):
        return True
    try:
        files = [path, *(folder.iterdir() if folder.is_dir() else [])]
        newest = max(p.stat().st_mtime for p in files)
    except (OSError, ValueError):
        return False
    return time.time() - newest > stale_after


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
