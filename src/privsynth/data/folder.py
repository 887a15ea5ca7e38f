"""An image folder with one sub-folder per class: PNG/JPEG/BMP/GIF, 8- or 16-bit PNG/TIFF, DICOM.

Bit depth is read from the file: a 16-bit image maps 0..65535 onto 0..255 (or the declared
``--pixel-range`` / ``--window``), never saturates. The class list is the sub-folder names (or
``--classes``), the channel count is 1 unless ``--channels 3`` is declared.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .dataset import Content, ImageDataset
from .dicom import is_dicom, read_dicom
from .labels import class_list
from .pixels import to_channels, to_uint8, warn_if_narrow
from .source import SPLIT_NAMES, DataSource, default_name

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff"}
_HIGH_DEPTH = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}  # read as numbers, not as 8-bit


def load_folder(src: DataSource, image_size: int | None = None) -> ImageDataset:
    path = Path(src.path)
    subdirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    names = _class_names(path, subdirs, src.classes)
    files = [
        (f, names.index(d.name))
        for d in subdirs
        if d.name in names
        for f in sorted(d.iterdir())
        if f.is_file() and _is_image(f)
    ]
    if not files:
        raise DataError(
            f"folder '{path}' has no PNG/JPEG/TIFF/DICOM images in its class sub-folders"
        )
    labels = np.array([k for _, k in files], dtype=np.int64)
    if src.classes is None:
        empty = [n for k, n in enumerate(names) if k not in labels]
        if empty:
            raise DataError(
                f"folder '{path}': class sub-folder(s) {empty} hold no images; "
                "remove them or add images"
            )
    arrays, peaks = zip(*(_read(f, src) for f, _ in files), strict=True)
    if max(peaks) and src.pixel_range is None and src.window is None:
        warn_if_narrow(max(peaks), 65535.0, f"folder '{path}'")
    sizes = {a.shape[1:] for a in arrays}
    if image_size is None and len(sizes) > 1:
        raise DataError(
            f"folder '{path}' mixes {len(sizes)} image sizes "
            f"(e.g. {sorted(sizes)[:2]}); pass --image-size N to resize all to N x N"
        )
    # The ledger's key input: the decoded records with their classes, before any resizing.
    content = Content.of(arrays, labels, names)
    if image_size is not None:
        check_resize_fits(len(arrays), arrays[0].shape[0], image_size)
        arrays = [_resize(a, image_size) for a in arrays]
    pairs = zip(arrays, files, strict=True)
    stack = np.stack([to_channels(a[None], src.channels, str(f))[0] for a, (f, _) in pairs])
    return ImageDataset(stack, labels, names, name=src.name or default_name(path), content=content)


def _class_names(path: Path, subdirs: list[Path], declared) -> list[str]:
    found = [d.name for d in subdirs]
    if declared is None:
        if found and {n.lower() for n in found} <= SPLIT_NAMES:
            train = next((d for d in subdirs if d.name.lower().startswith("train")), subdirs[0])
            test = next((d for d in subdirs if d != train), None)
            hint = f" --holdout {test}" if test is not None else ""
            raise DataError(
                f"folder '{path}' holds the splits {', '.join(f + '/' for f in found)}"
                f" — not classes; pass --data {train}{hint}"
            )
        if len(found) < 2:
            raise DataError(
                f"folder '{path}' has {len(found)} class sub-folder(s); conditional "
                "models need >= 2 (put each class's images in its own sub-folder)"
            )
        return found
    names = class_list(declared, None, str(path))
    extra = sorted(set(found) - set(names))
    if extra:
        raise DataError(
            f"folder '{path}': sub-folder(s) {extra[:5]} are not in --classes "
            f"{names}; add them to --classes or move them out"
        )
    return names


def _is_image(f: Path) -> bool:
    return f.suffix.lower() in EXTENSIONS or is_dicom(f)


def _read(f: Path, src: DataSource) -> tuple[np.ndarray, float]:
    """One file -> (uint8 C x H x W, its peak stored value if 16-bit, else 0)."""
    if is_dicom(f):
        return read_dicom(f, src.pixel_range, src.window), 0.0
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(f) as im:
            im.load()
            mode = im.mode
            if mode in _HIGH_DEPTH:
                values = np.asarray(im)
            else:
                target = "L" if mode in ("L", "1", "LA") else "RGB"
                values = np.asarray(im.convert(target))
    except Image.DecompressionBombError as e:  # a header claiming 30000x30000: never decoded
        raise DataError(
            f"{f}: its header claims an image too large to decode ({e}); fix or remove the file"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(
            f"{f}: corrupt or unreadable image ({e.__class__.__name__}); fix or remove the file"
        ) from None
    peak = float(values.max()) if mode.startswith("I;16") and values.size else 0.0
    image = to_uint8(values, str(f), src.pixel_range, src.window, warn=False)
    return (image[None] if image.ndim == 2 else image.transpose(2, 0, 1)), peak


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[1:] == (size, size):
        return image
    from PIL import Image

    planes = [np.asarray(Image.fromarray(c).resize((size, size), Image.BILINEAR)) for c in image]
    return np.stack(planes)


def check_resize_fits(n: int, channels: int, size: int) -> None:
    """Refuse, before allocating, a resize whose result cannot fit free memory: the float copy
    the bilinear resize works on plus the uint8 result, about 5 bytes a pixel."""
    from ..preflight import check_memory

    check_memory(
        5.0 * n * channels * size * size,
        f"{n} images resized to {channels}x{size}x{size}",
        "use a smaller --image-size (or fewer images)",
    )
