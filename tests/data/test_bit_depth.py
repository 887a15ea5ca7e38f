"""Medical images as they come: 16-bit PNG/TIFF read at their bit depth, DICOM with its rescale
and window. Every file is made here (Pillow, pydicom)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from privsynth.data import load_dataset
from privsynth.errors import DataError

RAMP16 = np.linspace(0, 65535, 64 * 64).round().astype(np.uint16).reshape(64, 64)
RAMP12 = np.linspace(0, 4095, 64 * 64).round().astype(np.uint16).reshape(64, 64)


def folder_of(root, arrays_by_class: dict, ext: str = ".png"):
    for name, arrays in arrays_by_class.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, a in enumerate(arrays):
            Image.fromarray(a).save(root / name / f"{i}{ext}")
    return root


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_ramp_is_not_saturated(tmp_path, ext):
    # Pillow's 8-bit conversion clipped 99% of this ramp to white.
    root = folder_of(tmp_path / "f", {"a": [RAMP16], "b": [RAMP16[::-1]]}, ext)
    with Image.open(root / "a" / f"0{ext}") as im:
        assert im.mode.startswith("I;16")  # really a 16-bit file
    data = load_dataset(root)
    a = data.images[0, 0]
    np.testing.assert_array_equal(a, np.rint(RAMP16.astype(float) * (255 / 65535)).astype(np.uint8))
    assert (a == 255).mean() < 0.01 and abs(a.mean() - 127.5) < 1


def test_12bit_data_in_16bit_file_warns_and_takes_a_declared_range(tmp_path, capsys):
    root = folder_of(tmp_path / "f", {"a": [RAMP12], "b": [RAMP12]})
    dark = load_dataset(root)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning" in err and "--pixel-range 0,4095" in err
    assert dark.images.max() == 16  # what the format range gives: dark, but not silently
    full = load_dataset(root, pixel_range=(0, 4095))
    expected = np.rint(RAMP12.astype(float) * (255 / 4095)).astype(np.uint8)
    np.testing.assert_array_equal(full.images[0, 0], expected)
    assert capsys.readouterr().err == ""


def test_window_clips_then_stretches(tmp_path):
    root = folder_of(tmp_path / "f", {"a": [RAMP16], "b": [RAMP16]})
    data = load_dataset(root, window=(16384, 49151))
    expected = np.rint((np.clip(RAMP16.astype(float), 16384, 49151) - 16384) * (255 / 32767))
    np.testing.assert_array_equal(data.images[0, 0], expected.astype(np.uint8))


def test_value_outside_declared_range_stops(tmp_path):
    root = folder_of(tmp_path / "f", {"a": [RAMP16], "b": [RAMP16]})
    with pytest.raises(DataError, match="outside the declared range 0..4095.*--window"):
        load_dataset(root, pixel_range=(0, 4095))


# --- DICOM ---------------------------------------------------------------------------------------
def write_dicom(
    path,
    stored: np.ndarray,
    *,
    bits_stored=12,
    intercept=-1024.0,
    slope=1.0,
    window=(40.0, 400.0),
    photometric="MONOCHROME2",
):
    """A minimal uncompressed CT-like slice, written by pydicom."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 0
    ds.RescaleIntercept, ds.RescaleSlope = intercept, slope
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = stored.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)  # with the 128-byte preamble and DICM
    return path


@pytest.fixture
def ct_folder(tmp_path):
    stored = RAMP12
    root = tmp_path / "ct"
    for cls in ("normal", "lesion"):
        (root / cls).mkdir(parents=True)
        write_dicom(root / cls / "slice1.dcm", stored)
        write_dicom(root / cls / "IM0002", stored)  # no suffix: found by its DICM preamble
    return root, stored


def test_dicom_folder_uses_rescale_and_window(ct_folder):
    root, stored = ct_folder
    data = load_dataset(root)
    assert data.images.shape == (4, 1, 64, 64) and data.class_names == ["lesion", "normal"]
    hu = stored.astype(float) - 1024  # RescaleIntercept -1024: stored -> Hounsfield units
    low, high = 40 - 200, 40 + 200  # the file's window (center 40, width 400)
    expected = np.rint((np.clip(hu, low, high) - low) * (255 / (high - low))).astype(np.uint8)
    for image in data.images:
        np.testing.assert_array_equal(image[0], expected)


def test_dicom_window_flag_overrides_the_file(ct_folder):
    root, stored = ct_folder
    data = load_dataset(root, window=(-1000, 1000))
    hu = stored.astype(float) - 1024
    expected = np.rint((np.clip(hu, -1000, 1000) + 1000) * (255 / 2000)).astype(np.uint8)
    np.testing.assert_array_equal(data.images[0, 0], expected)


def test_dicom_without_window_uses_the_stored_bit_range(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / "d" / cls).mkdir(parents=True)
        write_dicom(tmp_path / "d" / cls / "x.dcm", RAMP12, window=None, intercept=0.0)
        write_dicom(
            tmp_path / "d" / cls / "y.dcm",
            RAMP12,
            window=None,
            intercept=0.0,
            photometric="MONOCHROME1",
        )
    data = load_dataset(tmp_path / "d")
    plain = np.rint(RAMP12.astype(float) * (255 / 4095)).astype(np.uint8)
    np.testing.assert_array_equal(data.images[0, 0], plain)
    np.testing.assert_array_equal(data.images[1, 0], 255 - plain)  # MONOCHROME1: white is low


def test_corrupt_dicom_is_one_line(ct_folder):
    root, _ = ct_folder
    (root / "normal" / "bad.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"garbage")
    with pytest.raises(DataError, match="bad.dcm: cannot read DICOM") as e:
        load_dataset(root)
    assert "\n" not in str(e.value)
