"""Stored pixel values -> uint8 0..255, by a range that comes from the format or a flag.

Never from the data: scaling by the observed maximum would let one bright record change every
image. The only look at the values is a check (a value outside the declared range stops loading)
and a one-line warning when the images use a tiny part of their range (12-bit data in a 16-bit
file), which changes nothing.
"""

from __future__ import annotations

import sys

import numpy as np

from ..errors import DataError


def format_range(dtype: np.dtype) -> tuple[float, float]:
    """The range a pixel type stands for: floats (and bools) 0-1, unsigned integers 0..2^bits-1."""
    dtype = np.dtype(dtype)
    if dtype.kind in "fb":
        return 0.0, 1.0
    if dtype.kind == "u":
        return 0.0, float(np.iinfo(dtype).max)
    if dtype.kind == "i":  # signed ints usually hold 0..255 numbers (e.g. np.array of ints)
        return 0.0, 255.0
    raise DataError(f"pixels of type {dtype} are not images; use unsigned integer or float arrays")


def to_uint8(
    values: np.ndarray,
    source: str,
    pixel_range: tuple[float, float] | None = None,
    window: tuple[float, float] | None = None,
    warn: bool = True,
) -> np.ndarray:
    """Map ``pixel_range`` (default: the dtype's) linearly onto 0..255.

    With ``window``, values are clipped to it first (display windowing), so nothing is out of range.
    Without, a value outside ``pixel_range`` is an error naming ``--pixel-range``."""
    values = np.asarray(values)
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise DataError(f"{source}: images contain NaN or infinite values; clean or drop them")
    if window is not None:
        low, high = window
        values = np.clip(values.astype(np.float64), low, high)
    else:
        declared = pixel_range is not None
        low, high = pixel_range if declared else format_range(values.dtype)
        if values.dtype == np.uint8 and (low, high) == (0.0, 255.0):
            return values
        vmin, vmax = (float(values.min()), float(values.max())) if values.size else (low, high)
        if vmin < low or vmax > high:
            hint = (
                "pass the range your pixels are stored in, e.g. --pixel-range 0,255"
                if not declared
                else "check the range, or pass --window LOW,HIGH to clip"
            )
            raise DataError(
                f"{source}: pixel values {vmin:g}..{vmax:g} fall outside the "
                f"{'declared' if declared else 'format'} range {low:g}..{high:g}; "
                f"{hint}"
            )
        if warn and not declared and values.dtype.itemsize >= 2 and values.dtype.kind == "u":
            warn_if_narrow(vmax, high, source)
    scaled = (values.astype(np.float64) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def warn_if_narrow(vmax: float, high: float, source: str) -> None:
    """One line when 16-bit images use at most 1/8 of their range (e.g. 12-bit scanner data):
    they would train almost black. The fix is a flag; nothing is rescaled behind the user's back."""
    if vmax <= high / 8:
        bits = max(int(np.ceil(np.log2(vmax + 1))), 1)
        print(
            f"privsynth: warning: {source}: pixels use only 0..{vmax:g} of 0..{high:g} "
            f"(looks like {bits}-bit data in a {int(np.log2(high + 1))}-bit file); they will "
            f"look dark — pass --pixel-range 0,{2**bits - 1} or a --window",
            file=sys.stderr,
        )


def to_channels(images: np.ndarray, channels: int | None, source: str) -> np.ndarray:
    """uint8 N x C x H x W with C in (1, 3) -> ``channels`` (default 1).

    Grayscale -> RGB repeats the channel; RGB whose three channels are equal is grayscale. A truly
    colour image stops loading unless ``channels`` was declared: --channels 3 keeps colour,
    an explicit --channels 1 converts to luminance (ITU-R 601, as Pillow's 'L')."""
    c = images.shape[1]
    want = 1 if channels is None else channels
    if c == want:
        return images
    if c == 1:
        return np.repeat(images, 3, axis=1)
    if c != 3:
        raise DataError(f"{source}: images need 1 (grayscale) or 3 (RGB) channels, got {c}")
    colour = np.any(images[:, 0] != images[:, 1], axis=(1, 2)) | np.any(
        images[:, 0] != images[:, 2], axis=(1, 2)
    )
    if colour.any() and channels is None:
        raise DataError(
            f"{source}: {int(colour.sum())} colour image(s); the channel count is a "
            "public input, not read from the data: pass --channels 3 for RGB models "
            "or --channels 1 to convert to grayscale"
        )
    weights = np.array([299, 587, 114], dtype=np.float64)[None, :, None, None] / 1000
    return np.rint((images * weights).sum(axis=1, keepdims=True)).astype(np.uint8)


def to_nchw(images: np.ndarray, source: str) -> np.ndarray:
    """N x H x W, N x H x W x C or N x C x H x W -> N x C x H x W (C = 1 or 3, by position)."""
    if images.ndim == 3:
        return images[:, None]
    if images.ndim == 4:
        if images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
            return np.ascontiguousarray(images.transpose(0, 3, 1, 2))
        return images
    raise DataError(f"{source}: images must be 3-D or 4-D, got shape {images.shape}")
