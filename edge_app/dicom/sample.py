"""DICOM instances made on the device, by pydicom: a single-frame image dataset around any pixels, and a synthetic
Digital Mammography image with the patient, study and series modules a modality sends (for self-tests, benchmarks of
the DICOM node and the tests). The patient is a labelled test pattern, never a person."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import (
    UID,
    DigitalMammographyXRayImageStorageForPresentation,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)


def image_dataset(pixels: NDArray[Any], sop_class: str = SecondaryCaptureImageStorage, **attributes: Any) -> Dataset:
    """A single-frame image holding `pixels` (monochrome, or colour when 3-D); `attributes` override or add header
    elements, and an attribute given as None is removed."""
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.SOPClassUID = UID(sop_class)
    dataset.SOPInstanceUID = generate_uid()
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
            if keyword in dataset:
                delattr(dataset, keyword)
        else:
            setattr(dataset, keyword, value)
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID  # the file's meta names the instance it holds
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    return dataset


def mammogram(pixels: NDArray[Any], **attributes: Any) -> Dataset:
    """A Digital Mammography image for presentation (12 bits stored in 16) of a test-pattern patient, in a study
    and series of its own unless `attributes` name them."""
    header = {
        "PatientName": "TEST^PATTERN",
        "PatientID": "MAMMO-EDGE-TEST",
        "PatientBirthDate": "19600101",
        "PatientSex": "F",
        "StudyInstanceUID": generate_uid(),
        "SeriesInstanceUID": generate_uid(),
        "StudyID": "1",
        "StudyDate": "20261129",
        "StudyTime": "101500",
        "AccessionNumber": "TEST-1",
        "ReferringPhysicianName": "",
        "SeriesNumber": 1,
        "InstanceNumber": 1,
        "Manufacturer": "mammo-edge test pattern",
        "PatientOrientation": ["A", "R"],
        "ImageLaterality": "R",
        "ViewPosition": "CC",
        "ImageType": ["ORIGINAL", "PRIMARY", ""],
        "PresentationIntentType": "FOR PRESENTATION",
        "ImagerPixelSpacing": [0.1, 0.1],
        "PixelSpacing": [0.1, 0.1],
        "BitsStored": 12,
        "HighBit": 11,
    }
    return image_dataset(pixels, DigitalMammographyXRayImageStorageForPresentation, **{**header, **attributes})


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
