"""DICOM files for the tests: the device's own builders (`edge_app.dicom.sample`, by pydicom, never by hand), and
the bytes of an image dataset in any transfer syntax pydicom writes natively."""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_app.dicom.sample import encode, image_dataset, mammogram

__all__ = ["dicom_bytes", "encode", "image_dataset", "mammogram"]


def dicom_bytes(pixels: np.ndarray, **attributes: Any) -> bytes:
    return encode(image_dataset(pixels, **attributes))
