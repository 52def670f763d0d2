"""DICOM files for the tests, built by pydicom (never by hand): one single-frame image dataset, and its bytes in any
transfer syntax pydicom writes natively."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import (
    DigitalMammographyXRayImageStorageForPresentation,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)


def image_dataset(pixels: np.ndarray, **attributes: Any) -> Dataset:
    """A mammography image holding `pixels` (monochrome, or colour when 3-D); `attributes` override or add header
    elements, and an attribute given as None is removed."""
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.SOPClassUID = SecondaryCaptureImageStorage
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID
    dataset.Modality = "MG"
    dataset.Rows, dataset.Columns = pixels.shape[:2]
    dataset.SamplesPerPixel = 1 if pixels.ndim == 2 else pixels.shape[2]
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated = pixels.dtype.itemsize * 8
    dataset.BitsStored = dataset.BitsAllocated
    dataset.HighBit = dataset.BitsStored - 1
    dataset.PixelRepresentation = int(pixels.dtype.kind == "i")
    if pixels.ndim == 3:
        dataset.PlanarConfiguration = 0
    dataset.PixelData = np.ascontiguousarray(pixels).tobytes()
    for keyword, value in attributes.items():
        if value is None:
            delattr(dataset, keyword)
        else:
            setattr(dataset, keyword, value)
    return dataset


def encode(dataset: Dataset, syntax: Any = ExplicitVRLittleEndian) -> bytes:
    """The dataset as a DICOM file (preamble, file meta, `syntax`)."""
    buffer = io.BytesIO()
    dataset.file_meta.TransferSyntaxUID = syntax
    dataset.save_as(
        buffer,
        enforce_file_format=True,
        implicit_vr=syntax == ImplicitVRLittleEndian,
        little_endian=syntax != ExplicitVRBigEndian,
    )
    return buffer.getvalue()


def dicom_bytes(pixels: np.ndarray, **attributes: Any) -> bytes:
    return encode(image_dataset(pixels, **attributes))


def mammogram(pixels: np.ndarray, **attributes: Any) -> Dataset:
    """A Digital Mammography image for presentation, with the patient, study and series a modality sends (what a
    DICOM answer copies into its own instances)."""
    study = {
        "SOPClassUID": DigitalMammographyXRayImageStorageForPresentation,
        "PatientName": "Test^Patient",
        "PatientID": "TEST-0001",
        "PatientBirthDate": "19600101",
        "PatientSex": "F",
        "StudyInstanceUID": generate_uid(),
        "SeriesInstanceUID": generate_uid(),
        "StudyID": "1",
        "StudyDate": "20261129",
        "StudyTime": "101500",
        "AccessionNumber": "ACC-1",
        "ReferringPhysicianName": "",
        "SeriesNumber": 1,
        "InstanceNumber": 1,
        "Manufacturer": "test",
        "PatientOrientation": ["A", "R"],
        "ImageLaterality": "R",
        "ViewPosition": "CC",
        "ImageType": ["ORIGINAL", "PRIMARY", ""],
        "PresentationIntentType": "FOR PRESENTATION",
        "ImagerPixelSpacing": [0.1, 0.1],
        "PixelSpacing": [0.1, 0.1],
    }
    dataset = image_dataset(pixels, **{**study, **attributes})
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    return dataset
