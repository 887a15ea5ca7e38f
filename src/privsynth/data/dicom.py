"""DICOM slices (pydicom): stored values -> modality values (rescale slope/intercept) -> a window
-> uint8. Every step uses the file's own header or a flag, never statistics of the images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .pixels import to_uint8

DICOM_SUFFIXES = {".dcm", ".dicom"}


def is_dicom(path: Path) -> bool:
    """``.dcm``/``.dicom``, or any file with the DICM preamble at byte 128 (often no suffix)."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    if path.suffix:
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def read_dicom(
    path: Path,
    pixel_range: tuple[float, float] | None = None,
    window: tuple[float, float] | None = None,
) -> np.ndarray:
    """One slice as uint8 C x H x W.

    Grayscale: the modality LUT (RescaleSlope/Intercept, e.g. to Hounsfield units), then the first
    of: ``window`` (clip), ``pixel_range`` (must hold every value), the file's WindowCenter/Width,
    the range its BitsStored can hold. MONOCHROME1 (white = low) is inverted. RGB is kept as is."""
    try:
        import pydicom
    except ImportError:
        raise DataError(f"{path}: reading DICOM needs pydicom (pip install pydicom)") from None
    try:
        ds = pydicom.dcmread(path)
        stored = ds.pixel_array
    except Exception as e:  # pydicom raises many types for damaged or compressed files
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DataError(
            f"{path}: cannot read DICOM pixels ({first}); export uncompressed "
            "DICOM or fix/remove the file"
        ) from None
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    samples = int(getattr(ds, "SamplesPerPixel", 1))
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        raise DataError(f"{path}: {frames}-frame DICOM; export one slice per file")
    if samples == 3:
        if photometric.startswith("YBR"):
            from pydicom.pixels import convert_color_space

            stored = convert_color_space(stored, photometric, "RGB")
        return to_uint8(stored, str(path), pixel_range, window).transpose(2, 0, 1)
    if samples != 1 or not photometric.startswith("MONOCHROME"):
        raise DataError(
            f"{path}: unsupported DICOM photometric interpretation {photometric}; "
            "export MONOCHROME1/2 or RGB"
        )
    values = _modality(stored, ds)
    if window is None and pixel_range is None:
        window = _file_window(ds) or _stored_range(ds)
    image = to_uint8(values, str(path), pixel_range, window)
    if photometric == "MONOCHROME1":
        image = 255 - image
    return image[None]


def _modality(stored: np.ndarray, ds) -> np.ndarray:
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
    return stored.astype(np.float64) * slope + intercept


def _file_window(ds) -> tuple[float, float] | None:
    center, width = getattr(ds, "WindowCenter", None), getattr(ds, "WindowWidth", None)
    if center is None or width is None:
        return None
    # Multi-valued windows (several presets): the first is the default view.
    center, width = (float(np.ravel(v)[0]) for v in (center, width))
    if width <= 0:
        return None
    return center - width / 2, center + width / 2


def _stored_range(ds) -> tuple[float, float]:
    bits = int(getattr(ds, "BitsStored", 0) or getattr(ds, "BitsAllocated", 16))
    signed = int(getattr(ds, "PixelRepresentation", 0)) == 1
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    ends = _modality(np.array([low, high]), ds)
    return float(ends.min()), float(ends.max())
