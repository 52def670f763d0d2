"""The device's answer in DICOM, for a scan that came as DICOM: a TID 1500 Measurement Report (Comprehensive SR) and
a Secondary Capture of the overlay, each in a new series of the scan's own study, both built by highdicom.

Patient and study attributes are copied from the scan where they are valid DICOM, never invented
(`edge_app.dicom.headers`). Every UID of an answer is derived from the
scan's id, so writing an answer again after a crash gives the same instances: a PACS receives one report per scan,
however often the write stage is repeated.

What the report holds per region: the region as a closed polyline on the source image, the calibrated probability of
malignancy (DCM 111047 "Probability of cancer"), the decision at the bundle's threshold and the threshold itself, the
algorithm (model name, version, bundle file hash); an image without regions is reported as not analysed, with the
reason. "Research use only, not for clinical use" is in the report's text and in the capture's pixels and comments.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from edge_app.decode import decode_bytes, is_dicom
from edge_app.dicom.headers import AnswerSource, MissingIdentityError, answer_source
from edge_app.dicom.outbox import Outbox
from edge_app.fsutil import atomic_write
from edge_app.model import ModelIdentity
from edge_app.overlay import render
from edge_app.service.analyse import MARKED_BY_DEVICE, NEEDS_ROI, Analysis, RegionAnswer
from edge_app.service.lifecycle import ScanRecord
from edge_app.service.writer import NOTICE

log = logging.getLogger(__name__)

MANUFACTURER = "mammo-edge"
SR_SERIES_NUMBER = 9901
SC_SERIES_NUMBER = 9902
ANSWER_FOLDER = "dicom"
SR_SUFFIX = ".sr.dcm"
SC_SUFFIX = ".sc.dcm"
MAMMOGRAPHY = hd.sr.CodedConcept("71651007", "SCT", "Mammography")
MASS = hd.sr.CodedConcept("4147007", "SCT", "Mass")
PROBABILITY_OF_CANCER = hd.sr.CodedConcept("111047", "DCM", "Probability of cancer")
NO_UNITS = hd.sr.CodedConcept("1", "UCUM", "no units")
_SCHEME = "99MAMMOEDGE"  # private coding scheme (PS3.16 8.2: "99" prefix) for what no standard code says
THRESHOLD = hd.sr.CodedConcept("ME-0001", _SCHEME, "Decision threshold of the model")
DECISION = hd.sr.CodedConcept("ME-0002", _SCHEME, "Decision at the model's threshold")
ANALYSIS_STATUS = hd.sr.CodedConcept("ME-0003", _SCHEME, "Analysis status")
NOT_ANALYSED = hd.sr.CodedConcept("ME-0004", _SCHEME, "Not analysed: no region of interest was given")
REGION_SOURCE = hd.sr.CodedConcept("ME-0005", _SCHEME, "Source of the region")
REGION_SOURCES = {  # who or what marked a region (the result's marked_by); the device's own apart from a person's
    MARKED_BY_DEVICE: hd.sr.CodedConcept("ME-0006", _SCHEME, "Proposed by the device's detector"),
    "reader": hd.sr.CodedConcept("ME-0007", _SCHEME, "Marked by a reader"),
    "file": hd.sr.CodedConcept("ME-0008", _SCHEME, "Given with the scan"),
    "seg": hd.sr.CodedConcept("ME-0009", _SCHEME, "Given by a segmentation"),
    "sr": hd.sr.CodedConcept("ME-0010", _SCHEME, "Given by a measurement report"),
    "none": hd.sr.CodedConcept("ME-0011", _SCHEME, "The whole image"),
}
NOT_PROPOSED_NOTICE = "Regions proposed by the device's detector: a mass it did not propose was not assessed."
LIBRARY_NEEDS = ("PatientOrientation", "ImagerPixelSpacing")
"""What the report's image library describes a projection image by (highdicom's TID 1602): without both, the scan is
referenced as evidence only."""
DECISIONS = {
    "malignant": hd.sr.CodedConcept("86049000", "SCT", "Malignant neoplasm, primary"),
    "benign": hd.sr.CodedConcept("3898006", "SCT", "Neoplasm, benign"),
}


@dataclass(frozen=True)
class DicomAnswer:
    """The two instances answering one scan."""

    report: Dataset
    capture: Dataset


def answer_uid(scan_id: str, part: str) -> str:
    """A UID for one part of one scan's answer, the same every time (pydicom's root, hashed from the scan id)."""
    return str(generate_uid(entropy_srcs=["mammo-edge", scan_id, part]))


def read_header(scan: bytes) -> Dataset:
    """The scan's data set without its pixels (all an answer copies; a full-field film's pixels are megabytes)."""
    return pydicom.dcmread(io.BytesIO(scan), stop_before_pixels=True)


def build_answer(
    scan: bytes, scan_id: str, analysis: Analysis, identity: ModelIdentity, source: AnswerSource | None = None
) -> DicomAnswer:
    """The report and the capture answering the DICOM file `scan`, copying its header as `source` says (made from
    the file when not given; its pixels are decoded only when there is no overlay to capture). Raises
    `MissingIdentityError` when the scan does not say which patient, study and image it is."""
    header = (answer_source(read_header(scan)) if source is None else source).header
    return DicomAnswer(_report(header, scan_id, analysis, identity), _capture(header, scan, scan_id, analysis))


def _algorithm(identity: ModelIdentity) -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(
        name=identity.name,
        version=identity.version,
        parameters=[f"variant {identity.variant}", f"file {identity.file}", f"sha256 {identity.sha256}"],
    )


def _region_group(
    source: Dataset, scan_id: str, answer: RegionAnswer, identity: ModelIdentity
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    box = answer.box
    outline = np.array(
        [[box.x0, box.y0], [box.x1, box.y0], [box.x1, box.y1], [box.x0, box.y1], [box.x0, box.y0]], dtype=float
    )
    algorithm = _algorithm(identity)
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=answer_uid(scan_id, f"region {answer.label}"), identifier=f"region {answer.label}"
        ),
        referenced_region=hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
            graphic_data=outline,
            source_image=hd.sr.SourceImageForRegion.from_source_image(source),
        ),
        finding_type=MASS,
        algorithm_id=algorithm,
        measurements=[
            hd.sr.Measurement(PROBABILITY_OF_CANCER, answer.probability, NO_UNITS, algorithm_id=algorithm),
            hd.sr.Measurement(THRESHOLD, identity.threshold, NO_UNITS, algorithm_id=algorithm),
        ],
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(DECISION, DECISIONS[answer.decision]),
            hd.sr.QualitativeEvaluation(REGION_SOURCE, REGION_SOURCES[answer.marked_by]),
        ],
    )


def _not_analysed_group(scan_id: str) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=answer_uid(scan_id, "image"), identifier="whole image"),
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(ANALYSIS_STATUS, NOT_ANALYSED)],
    )


def _report(source: Dataset, scan_id: str, analysis: Analysis, identity: ModelIdentity) -> Dataset:
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=answer_uid(identity.sha256, "device"),
            name=identity.name,
            manufacturer_name=MANUFACTURER,
            model_name=f"{identity.name} {identity.version}",
        ),
    )
    groups: Sequence[hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations | hd.sr.MeasurementsAndQualitativeEvaluations]
    if analysis.status == NEEDS_ROI:
        groups = [_not_analysed_group(scan_id)]
    else:
        groups = [_region_group(source, scan_id, answer, identity) for answer in analysis.regions]
    content = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=MAMMOGRAPHY,
        imaging_measurements=groups,
        referenced_images=[source] if all(keyword in source for keyword in LIBRARY_NEEDS) else None,
    )
    report = hd.sr.ComprehensiveSR(
        evidence=[source],
        content=content[0],
        series_instance_uid=answer_uid(scan_id, "report series"),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=answer_uid(scan_id, "report"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description="mammo-edge report: research use only, not for clinical use",
    )
    report.ContentSequence.append(_comment(_report_text(analysis, identity)))
    return report


def _comment(text: str) -> Dataset:
    """A TEXT item "Comment" at the root of the report: what a reader sees first in any SR viewer."""
    item = hd.sr.TextContentItem(
        name=hd.sr.CodedConcept("121106", "DCM", "Comment"),
        value=text,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    return item


def _report_text(analysis: Analysis, identity: ModelIdentity) -> str:
    if analysis.status == NEEDS_ROI:
        finding = f"Not analysed: {analysis.reason}"
    else:
        finding = "; ".join(
            f"region {answer.label}: probability of malignancy {answer.probability:.3f}, {answer.decision} "
            f"at threshold {identity.threshold:.3f}"
            for answer in analysis.regions
        )
    proposed = any(answer.marked_by == MARKED_BY_DEVICE for answer in analysis.regions)
    return (
        f"{NOTICE} {finding}. {NOT_PROPOSED_NOTICE + ' ' if proposed else ''}"
        f"Model {identity.name} {identity.version} ({identity.variant}, sha256 {identity.sha256})."
    )


def _capture(source: Dataset, scan: bytes, scan_id: str, analysis: Analysis) -> Dataset:
    if analysis.overlay is not None:
        bgr = analysis.overlay.pixels()  # the picture itself: the capture is lossless, whatever the file's encoding
    else:
        gray = decode_bytes(scan).pixels
        headline = "NOT ANALYSED: no region of interest" if analysis.status == NEEDS_ROI else "no heatmap"
        bgr = render(gray, [], headline)
    rgb = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=rgb,
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system="PATIENT",
        patient_orientation=("A", "R"),  # replaced below by the source's own (highdicom takes single letters only)
        series_instance_uid=answer_uid(scan_id, "capture series"),
        series_number=SC_SERIES_NUMBER,
        sop_instance_uid=answer_uid(scan_id, "capture"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        series_description="mammo-edge overlay: research use only, not for clinical use",
    )
    capture.PatientOrientation = source.get("PatientOrientation", "")  # MG's compound values ("A\\FR") kept whole
    if "ImageLaterality" in source:
        capture.ImageLaterality = source.ImageLaterality
    else:
        capture.Laterality = source.get("Laterality", "")  # type 2C in the general series: empty when unknown
    reference = Dataset()
    reference.ReferencedSOPClassUID = source.SOPClassUID
    reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
    capture.SourceImageSequence = [reference]
    capture.DerivationDescription = "mammo-edge overlay: regions, probabilities and Grad-CAM over the source image"
    capture.BurnedInAnnotation = "YES"
    capture.ImageComments = NOTICE
    capture.ConversionType = "WSD"  # workstation: a derived picture, not a digitised film
    return capture


def _encoded(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
    return buffer.getvalue()


class DicomAnswerWriter:
    """The result writer's DICOM sink: ``results/dicom/<stem>.sr.dcm`` and ``.sc.dcm`` for every analysed DICOM
    scan, and a copy of each into the outbox when answers are forwarded."""

    def __init__(self, results: Path, identity: ModelIdentity, outbox: Outbox | None = None) -> None:
        self.folder = results / ANSWER_FOLDER
        self.identity = identity
        self.outbox = outbox

    def answer(self, record: ScanRecord, analysis: Analysis, source: Path) -> None:
        data = source.read_bytes()
        if not is_dicom(data):
            return
        assert record.result_stem is not None, "the result stem is reserved before writing"
        try:
            copied = answer_source(read_header(data))
        except MissingIdentityError as exc:
            log.warning("%s: no DICOM answer (its result JSON stands): %s", record.scan_id, exc)
            return
        changed = copied.note()
        if changed is not None:
            log.warning("%s: the DICOM answer %s", record.scan_id, changed)
        try:
            answer = build_answer(data, record.scan_id, analysis, self.identity, copied)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:  # highdicom's refusals of a header value
            # The message may quote a header value (a name, a date): only its kind is logged.
            log.warning(
                "%s: no DICOM answer (its result JSON stands): a header value it must copy is not valid DICOM (%s)",
                record.scan_id,
                type(exc).__name__,
            )
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        for suffix, instance in ((SR_SUFFIX, answer.report), (SC_SUFFIX, answer.capture)):
            encoded = _encoded(instance)
            atomic_write(self.folder / f"{record.result_stem}{suffix}", encoded)
            if self.outbox is not None:
                self.outbox.put(f"{instance.SOPInstanceUID}.dcm", encoded)
