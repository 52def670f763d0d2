"""Shared fixtures: synthetic data made by the project's own generator, DICOM files written with pydicom, and the
real MIAS films from ``../shared`` when they are there (tests that need them skip with the reason otherwise)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from train.synth import SynthSpec, generate

REPO = Path(__file__).resolve().parents[1]
MIAS_DIR = Path(os.environ.get("MAMMO_SHARED", REPO.parent / "shared")) / "data" / "mini-mias"


@pytest.fixture(scope="session")
def mias_dir() -> Path:
    if not (MIAS_DIR / "Info.txt").is_file():
        pytest.skip(f"real MIAS films not found at {MIAS_DIR} (../shared is absent in this clone)")
    return MIAS_DIR


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset, two sources, one copy per original."""
    root = tmp_path_factory.mktemp("synth")
    generate(root, SynthSpec(per_class=12, size=96, seed=3, copies=2, sources=("SYNTH", "OTHER")))
    return root


def _write_dicom(
    path: Path,
    pixels: np.ndarray,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    window: tuple[float, float] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """A minimal valid DICOM file (explicit VR little endian) holding `pixels`."""
    from pydicom import Dataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.Modality = "MG"
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = photometric
    dataset.BitsAllocated = pixels.dtype.itemsize * 8
    dataset.BitsStored = bits_stored or dataset.BitsAllocated
    dataset.HighBit = dataset.BitsStored - 1
    dataset.PixelRepresentation = 0
    if window is not None:
        dataset.WindowCenter, dataset.WindowWidth = window
    for keyword, value in (extra or {}).items():
        setattr(dataset, keyword, value)
    dataset.PixelData = np.ascontiguousarray(pixels).tobytes()
    dataset.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def write_dicom() -> Callable[..., Path]:
    return _write_dicom


@pytest.fixture
def gradient16() -> np.ndarray:
    """A 16-bit test image using the whole range, with structure in both axes."""
    rows, cols = np.mgrid[0:48, 0:64]
    return ((rows * 1000 + cols * 37) % 65536).astype(np.uint16)
