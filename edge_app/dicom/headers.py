"""What the device's DICOM answers copy from a scan's header, made valid without inventing anything.

Archives ship headers that are not valid DICOM: a public screening archive's films are Secondary Capture objects
with Modality MG, a Patient Orientation of one value where two are required (``CC``), no laterality and no pixel
spacing; other sources write dates as ``2020-01-31`` or leave type 2 attributes out altogether. An answer still
goes to every analysed scan whose identity is there (`IDENTITY`: which patient, study, series and image it
answers); the rest is copied only where it is valid. An invalid value is left out (never copied, never corrected:
a guess would put a wrong fact in the patient's record), a type 2 attribute the answers carry (`TYPE2`) that is
absent or invalid is written empty, and the keywords are named, never their values.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass

from pydicom import config
from pydicom.datadict import dictionary_VM
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import validate_value

IDENTITY = ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "PatientID")
"""Without these (present, non-empty and valid) there is nothing to answer: no answer, only its result JSON."""
TYPE2 = (
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ReferringPhysicianName",
)
"""The patient and study attributes every answer carries (type 2 in the patient and general study modules): the
scan's own value when valid, empty otherwise."""
ENUMERATED = {"PatientSex": ("M", "F", "O"), "ImageLaterality": ("R", "L", "U", "B"), "Laterality": ("R", "L")}
"""The values the standard enumerates for attributes the answers copy (highdicom refuses any other)."""


class MissingIdentityError(ValueError):
    """The scan lacks (or has no valid) identity attribute an answer must name."""

    def __init__(self, keywords: list[str]) -> None:
        super().__init__(f"the scan lacks a valid {', '.join(keywords)}, which an answer must copy")
        self.keywords = keywords


@dataclass(frozen=True)
class AnswerSource:
    """A scan's header as its answers copy it, and what was changed on the way (keywords only)."""

    header: Dataset
    left_out: tuple[str, ...]  # invalid values, not copied
    written_empty: tuple[str, ...]  # type 2 attributes absent or invalid in the scan

    def note(self) -> str | None:
        """One sentence for the log naming what was left out or written empty; None when the header was valid."""
        parts = []
        if self.left_out:
            parts.append(f"left out {', '.join(self.left_out)} (not valid DICOM)")
        if self.written_empty:
            parts.append(f"wrote {', '.join(self.written_empty)} empty (type 2, absent or not valid in the scan)")
        return "; ".join(parts) or None


def answer_source(header: Dataset) -> AnswerSource:
    """A copy of `header` (read without its pixels) with every invalid top-level value removed and `TYPE2` present;
    raises `MissingIdentityError` when an `IDENTITY` attribute is absent, empty or invalid."""
    copy = deepcopy(header)  # a header without its pixels: small
    invalid = [element.keyword for element in header if element.VR != "SQ" and not _valid(element)]
    missing = [keyword for keyword in IDENTITY if keyword in invalid or not header.get(keyword)]
    if missing:
        raise MissingIdentityError(missing)
    for keyword in invalid:
        delattr(copy, keyword)
    written_empty = [keyword for keyword in TYPE2 if keyword not in copy]
    for keyword in written_empty:
        setattr(copy, keyword, "")
    left_out = tuple(keyword for keyword in invalid if keyword not in TYPE2)
    return AnswerSource(copy, left_out, tuple(written_empty))


def _valid(element: DataElement) -> bool:
    """Whether the element's value is one its VR, its dictionary multiplicity and (where the standard enumerates
    them) its values allow; an empty value always is. Private and unknown elements count as valid: nothing copies
    them."""
    if not element.keyword or element.is_empty:
        return True
    values = list(element.value) if isinstance(element.value, MultiValue) else [element.value]
    if not _multiplicity_allowed(dictionary_VM(element.tag), len(values)):
        return False
    allowed = ENUMERATED.get(element.keyword)
    if allowed is not None and any(value not in allowed for value in values):
        return False
    try:
        for value in values:  # numbers in strings are checked as the strings they were read from
            validate_value(element.VR, str(value) if element.VR in ("DS", "IS") else value, config.RAISE)
    except ValueError:
        return False
    return True


def _multiplicity_allowed(spec: str, count: int) -> bool:
    """Whether `count` values fit the dictionary's value multiplicity `spec` (``1``, ``2``, ``1-3``, ``1-n``,
    ``2-2n``)."""
    low, _, high = spec.partition("-")
    if not high:
        return count == int(low)
    if high.endswith("n"):
        step = int(high[:-1] or 1)
        return count >= int(low) and count % step == 0
    return int(low) <= count <= int(high)
