"""DICOM files for the tests: the device's own builders (`edge_app.dicom.sample`, by pydicom, never by hand), and
the bytes of an image dataset in any transfer syntax pydicom writes natively."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydicom.uid import SecondaryCaptureImageStorage

from edge_app.dicom.sample import encode, image_dataset, mammogram

__all__ = ["ARCHIVE_FLAWS", "dicom_bytes", "encode", "image_dataset", "mammogram"]

_TYPE2 = ("PatientName", "PatientBirthDate", "PatientSex", "StudyID", "StudyDate", "StudyTime", "AccessionNumber")
_FLAWS: dict[str, dict[str, Any]] = {
    # A public screening archive's films: Secondary Capture with Modality MG, no imager geometry
    "secondary_capture_mg": {
        "SOPClassUID": SecondaryCaptureImageStorage,
        "ImagerPixelSpacing": None,
        "PresentationIntentType": None,
    },
    "orientation_of_one_value": {"PatientOrientation": "CC"},
    "no_laterality": {"ImageLaterality": None},
    "no_pixel_spacing": {"PixelSpacing": None, "ImagerPixelSpacing": None},
    "type2_empty": dict.fromkeys(_TYPE2, ""),
    "type2_absent": dict.fromkeys((*_TYPE2, "ReferringPhysicianName"), None),
    "invalid_values": {"StudyDate": "2020-01-31", "PatientSex": "female", "StudyTime": "10:15", "ViewPosition": "cc"},
}
ARCHIVE_FLAWS: dict[str, dict[str, Any]] = {
    **_FLAWS,
    "all_together": {
        **_FLAWS["secondary_capture_mg"],
        **_FLAWS["orientation_of_one_value"],
        **_FLAWS["no_laterality"],
        **_FLAWS["no_pixel_spacing"],
        **_FLAWS["type2_absent"],
        "PatientName": "",
        "AccessionNumber": "",
        **{keyword: value for keyword, value in _FLAWS["invalid_values"].items() if keyword != "StudyDate"},
    },
}
"""Headers as real archives ship them (`mammogram` attributes; None removes one), each flaw alone and all together:
the DICOM answers' corpus (tests/test_dicom_answers.py)."""


def dicom_bytes(pixels: np.ndarray, **attributes: Any) -> bytes:
    return encode(image_dataset(pixels, **attributes))


Shape = tuple[str, list[tuple[float, float]]]


def measurement_report(source: Any, shapes: list[Shape], layout: str, repeats: int = 1, **others: Any) -> Any:
    """A TID 1500 measurement report marking `shapes` (graphic type, points in DICOM image coordinates) on `source`
    (and on each image of ``others={"marks": [(image, shape), ...]}``), built with highdicom. ``layout="group"``: each
    shape is its group's Image Region (TID 1410, highdicom's own); ``layout="measurement"``: each shape sits under a
    measurement value, `repeats` times (TID 300, as OHIF and other web viewers export a circle with its area, mean
    and maximum), which highdicom's own reader does not find."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    marks = [(source, shape) for shape in shapes] + list(others.get("marks", []))
    evidence = list({image.SOPInstanceUID: image for image, _ in marks}.values()) or [source]
    groups: list[Any] = []
    for index, (image, (graphic_type, points)) in enumerate(marks):
        tracking = hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"mass {index + 1}")
        data = np.array(points, dtype=float)
        kind = hd.sr.GraphicTypeValues[graphic_type]
        if layout == "group":
            region = hd.sr.ImageRegion(
                graphic_type=kind, graphic_data=data, source_image=hd.sr.SourceImageForRegion.from_source_image(image)
            )
            groups.append(
                hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                    tracking_identifier=tracking, referenced_region=region, finding_type=codes.SCT.Mass
                )
            )
            continue
        measurements = []
        for repeat in range(repeats):
            measurement = hd.sr.Measurement(
                name=codes.SCT.Area if repeat == 0 else codes.SCT.Mean,
                value=100.0 + repeat,
                unit=codes.UCUM.SquareMillimeter if repeat == 0 else hd.sr.CodedConcept("1", "UCUM", "no units"),
            )
            scoord = hd.sr.ScoordContentItem(
                name=codes.DCM.ImageRegion,
                graphic_type=kind,
                graphic_data=data,
                relationship_type=hd.sr.RelationshipTypeValues.INFERRED_FROM,
            )
            scoord.ContentSequence = [
                hd.sr.ImageContentItem(
                    name=codes.DCM.SourceImageForSegmentation,
                    referenced_sop_class_uid=image.SOPClassUID,
                    referenced_sop_instance_uid=image.SOPInstanceUID,
                    relationship_type=hd.sr.RelationshipTypeValues.SELECTED_FROM,
                )
            ]
            item = measurement[0]
            item.ContentSequence = [*(item.get("ContentSequence") or []), scoord]
            measurements.append(measurement)
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking, finding_type=codes.SCT.Mass, measurements=measurements
            )
        )
    if not groups:  # a report of a measurement on no image region (what a listener must refuse as regions)
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="breast density"),
                measurements=[hd.sr.Measurement(name=codes.SCT.Area, value=1.0, unit=codes.UCUM.SquareMillimeter)],
            )
        )
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Person,
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes("Reader^A"),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_person_context=observer),
        procedure_reported=codes.SCT.Mammography
        if hasattr(codes.SCT, "Mammography")
        else hd.sr.CodedConcept("71651007", "SCT", "Mammography"),
        imaging_measurements=groups,
    )
    return hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report[0],
        series_instance_uid=generate_uid(),
        series_number=42,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="viewer",
        is_complete=True,
    )
