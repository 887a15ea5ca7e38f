"""Checks that run before any work, so a bad flag stops with one line and leaves nothing behind:
the device exists, an output path can be written."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from .errors import ConfigError


def check_device(device: str) -> str:
    """'cpu', 'cuda', 'cuda:N' or 'mps', and present on this machine."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(
            f"--device '{device}' is not a device; use cpu, cuda, cuda:N or mps"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"--device {device}: CUDA is not available here (no GPU, or a "
                "CPU-only torch build); use --device cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(
                f"--device {device}: this machine has {torch.cuda.device_count()} "
                "CUDA device(s); pick cuda:0..cuda:N-1"
            )
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"--device {device}: Apple MPS is not available here; use cpu")
    elif dev.type != "cpu":
        raise ConfigError(f"--device '{device}' is not supported; use cpu, cuda, cuda:N or mps")
    return device


def check_output_folder(out: str | os.PathLike[str], flag: str = "--out") -> Path:
    """``out`` is (or can become) a writable folder. Creates nothing."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{flag} '{out}' is a file; pass a folder path")
    _check_writable(out, flag)
    return out


def check_output_file(out: str | os.PathLike[str], flag: str = "--out") -> Path:
    """``out`` is a file path whose folder is (or can become) writable. Creates nothing."""
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"{flag} '{out}' is a folder; pass a file path")
    _check_writable(out.parent if str(out.parent) else Path("."), flag, named=out)
    return out


def _check_writable(folder: Path, flag: str, named: Path | None = None) -> None:
    named = named or folder
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"cannot create {flag} '{named}': '{existing}' is a file, not a folder")
    # os.access says yes to root everywhere; a real probe also catches read-only mounts and /proc.
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".privsynth-probe-"):
            pass
    except OSError as e:
        why = (
            "files cannot be created"
            if e.errno == errno.ENOENT
            else (os.strerror(e.errno) if e.errno else str(e))
        )
        raise ConfigError(
            f"cannot write {flag} '{named}': {why} in '{existing}'; choose a folder you can write"
        ) from None


def check_not_an_input(
    out: str | os.PathLike[str], inputs: dict[str, object], flag: str = "--out"
) -> None:
    """Refuse an output that is or contains an input (``{"RUN": path, ...}``): an --overwrite
    would delete the input with the old output. Inputs that are not paths are skipped (e.g.
    'digits', in-memory data)."""
    target = Path(out).expanduser().resolve()
    for name, given in inputs.items():
        if not isinstance(given, (str, os.PathLike)) or not Path(given).exists():
            continue
        source = Path(given).expanduser().resolve()
        if target == source or target in source.parents:
            raise ConfigError(
                f"{flag} '{out}' is or contains the input {name} '{given}'; writing it "
                "would delete the input: choose another output folder"
            )


def available_memory() -> int | None:
    """Bytes the kernel says a new allocation can use now (MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def check_memory(need: float, what: str, fix: str) -> None:
    """Refuse, before allocating, a request that cannot fit this machine's free memory."""
    free = available_memory()
    if free is not None and need > free:
        raise ConfigError(
            f"{what} needs about {_gib(need)} of memory but this machine has {_gib(free)} "
            f"available; {fix}"
        )


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"
