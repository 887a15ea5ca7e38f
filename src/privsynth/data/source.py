"""Where a dataset is and how to read it: the *public* format inputs.

The number of channels, the pixel range and the class list shape the model (its architecture, its
input scaling, its conditional head) and so are part of what a run releases. They are declared
here, never guessed from the private pixels or labels: one unusual record must not be able to
change them (docs/privacy.md, "Format inputs are public"). A default either follows from the file
format alone (a 16-bit PNG holds 0..65535) or the loader stops with an error naming the flag.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from ..errors import ConfigError


@dataclass(frozen=True)
class DataSource:
    """A dataset path plus its format inputs (all optional; see each loader for its default).

    ``classes``: the class list — a count (labels are 0..N-1) or names (integer label i is the
    i-th name; string labels are names). Folders default to their sub-folder names; an .npz to its
    ``class_names`` array; IDX files have no class list, so they need it.
    ``channels``: 1 (grayscale) or 3 (RGB). Default 1; a colour image then stops loading.
    ``pixel_range``: (low, high) of the stored values, mapped linearly to 0..255; a value outside
    stops loading. Default: the format's range (float arrays 0-1, 8-bit 0-255, 16-bit 0-65535).
    ``window``: (low, high) display window for PNG/TIFF/DICOM: clip to it, then map to 0..255
    (e.g. a CT window in Hounsfield units). Overrides the pixel range and DICOM's own window.
    ``name``: the dataset's name in cards and reports (default: the folder or file name; the
    parent's name when the folder is called train/test/...).
    """

    path: str
    classes: int | tuple[str, ...] | None = None
    channels: int | None = None
    pixel_range: tuple[float, float] | None = None
    window: tuple[float, float] | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.classes, list):
            object.__setattr__(self, "classes", tuple(self.classes))
        for key in ("pixel_range", "window"):
            value = getattr(self, key)
            if value is not None:
                object.__setattr__(self, key, check_range(value, f"--{key.replace('_', '-')}"))
        if self.channels not in (None, 1, 3):
            raise ConfigError(f"--channels must be 1 (grayscale) or 3 (RGB), got {self.channels}")
        if isinstance(self.classes, int) and self.classes < 2:
            raise ConfigError(f"--classes {self.classes}: conditional models need >= 2 classes")
        if isinstance(self.classes, tuple) and len(set(self.classes)) != len(self.classes):
            raise ConfigError(f"--classes lists a name twice: {list(self.classes)}")

    def __fspath__(self) -> str:
        return self.path

    def __str__(self) -> str:
        return self.path

    def with_path(self, path: str | os.PathLike[str], name: str | None = None) -> DataSource:
        return replace(self, path=str(path), name=name)

    def options(self) -> dict:
        """The format inputs as JSON (recorded on the card so evaluation reloads the same way)."""
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        del out["path"]
        return out

    @classmethod
    def from_options(cls, path: str, options: dict | None) -> DataSource:
        known = {f.name for f in fields(cls)} - {"path"}
        return cls(str(path), **{k: v for k, v in (options or {}).items() if k in known})


def as_source(spec: str | os.PathLike[str] | DataSource) -> DataSource:
    return spec if isinstance(spec, DataSource) else DataSource(str(spec))


def check_range(value, flag: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{flag} expects LOW,HIGH (two numbers), got {value!r}") from None
    if not low < high:
        raise ConfigError(f"{flag} {low:g},{high:g}: LOW must be below HIGH")
    return low, high


def parse_range(text: str, flag: str) -> tuple[float, float]:
    """'0-255', '0,255', '-1000,400' or '-1000:400' -> (low, high)."""
    text = text.strip()
    for sep in (",", ":"):
        if sep in text:
            return check_range(text.split(sep), flag)
    head, dash, tail = text[1:].partition("-")  # '0-255'; a leading '-' is a sign
    if dash:
        return check_range((text[0] + head, tail), flag)
    raise ConfigError(f"{flag} expects LOW,HIGH (e.g. 0,255 or 0-1), got '{text}'")


def parse_classes(text: str) -> int | tuple[str, ...]:
    """'10' -> 10 (labels 0..9); 'cat,dog' -> ('cat', 'dog')."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    names = tuple(s.strip() for s in text.split(","))
    if len(names) < 2 or not all(names):
        raise ConfigError(
            f"--classes expects a count (e.g. 10) or two or more comma-separated "
            f"names (e.g. normal,pneumonia), got '{text}'"
        )
    return names


SPLIT_NAMES = {"train", "training", "test", "testing", "val", "valid", "validation", "holdout"}


def default_name(path: Path) -> str:
    """A folder called train/ (or test/...) is named after its parent: 'chest-xray', not 'train'."""
    path = path.resolve()
    stem = path.name.split(".")[0] if path.is_file() else path.name
    if stem.lower() in SPLIT_NAMES and path.parent.name:
        return path.parent.name
    return stem or str(path)
