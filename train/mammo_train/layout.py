"""Reading a dataset in the Mendeley "Breast Mammography Images with Masses" layout.

Layout (Lin & Huang 2020): ``ROOT/<source> Dataset/{Benign Masses,Malignant Masses}/NAME[ (n)].png``. Augmented
copies carry a `` (n)`` suffix on their original's name, and the text before it identifies the original mass. Folder
names are matched tolerantly ("INbreast Dataset", "inbreast_dataset", "MIAS", "benign masses", "Malignant_Masses").
The combined folder of the published set ("INbreast+MIAS+DDSM Dataset") repeats the per-source images, so it is
skipped: reading it too would put the same mass in two groups, which is leakage.

Groups, the unit a split never cuts:
- ``mass``: the original mass (``source/original``), so every augmented copy stays with its original;
- ``patient``: the patient from the source folder's ``masses.csv`` (written by ``mammo-data synth`` and
  ``import-mias``), else parsed from DDSM names (``D1_A_1177_1.RIGHT_CC`` -> case ``A_1177``), else the mass.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from edge_app.errors import DataError, MissingInputError
from edge_app.regions import CropRule
from edge_app.scope import TrainingScope

LABEL_NAMES = ("benign", "malignant")
CLASS_FOLDERS = ("Benign Masses", "Malignant Masses")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".pgm", ".ppm", ".dcm"})
SIDECAR = "masses.csv"
SIDECAR_FIELDS = ("file", "original", "label", "patient", "cx", "cy", "radius", "body_radius")
"""Per image: ``cx``, ``cy`` the mass centre and ``radius`` a circle enclosing the abnormality (pixels, MIAS's
definition, spicules included); ``body_radius`` the mass body's circle where known (the synthetic set), else empty."""

_KNOWN_SOURCES = {"inbreast": "INbreast", "mias": "MIAS", "ddsm": "DDSM", "cbis-ddsm": "CBIS-DDSM"}
_COPY_SUFFIX = re.compile(r"^(?P<original>.*?)\s*\(\d+\)$")
_SOURCE_FOLDER = re.compile(r"^(?P<name>.+?)[\s_-]*(dataset)?$", re.IGNORECASE)
_DDSM_CASE = re.compile(r"^[A-Za-z0-9]+_(?P<volume>[A-Za-z])_(?P<case>\d{4})_")


@dataclass(frozen=True)
class ImageRecord:
    """One image file of the layout and what the layout says about it."""

    path: Path
    source: str
    label: int
    original: str
    patient: str | None

    @property
    def label_name(self) -> str:
        return LABEL_NAMES[self.label]

    def group(self, by: str) -> str:
        """The split unit of this image: its original mass, or its patient when known."""
        if by == "patient" and self.patient is not None:
            return f"{self.source}/patient:{self.patient}"
        if by not in ("mass", "patient"):
            raise DataError(f"group by 'mass' or 'patient', not {by!r}")
        return f"{self.source}/{self.original}"


@dataclass(frozen=True)
class SourceFolder:
    name: str
    path: Path


def original_name(stem: str) -> str:
    """``"20586908 (3)"`` -> ``"20586908"``; an original's own stem is returned unchanged."""
    match = _COPY_SUFFIX.match(stem)
    return match.group("original") if match else stem


def source_name(folder_name: str) -> str:
    """``"INbreast Dataset"`` -> ``"INbreast"``; unknown sources keep their spelling."""
    match = _SOURCE_FOLDER.match(folder_name.strip())
    name = match.group("name") if match else folder_name
    return _KNOWN_SOURCES.get(name.lower(), name)


def class_label(folder_name: str) -> int | None:
    """0 for a benign folder, 1 for a malignant one, None for anything else."""
    lowered = folder_name.lower()
    benign, malignant = "benign" in lowered, "malignant" in lowered
    if benign == malignant:
        return None
    return 1 if malignant else 0


def is_combined(folder_name: str) -> bool:
    """The published set's union folder ("INbreast+MIAS+DDSM Dataset") duplicates the per-source folders."""
    return "+" in folder_name or "combined" in folder_name.lower()


def _has_class_folders(folder: Path) -> bool:
    return any(child.is_dir() and class_label(child.name) is not None for child in folder.iterdir())


def find_sources(root: Path) -> tuple[list[SourceFolder], list[Path]]:
    """Source folders under `root` (or `root` itself if it holds class folders) and the skipped combined ones."""
    root = Path(root)
    if not root.is_dir():
        raise MissingInputError(f"dataset root {root} is not a folder")
    if _has_class_folders(root):
        return [SourceFolder(source_name(root.resolve().name), root)], []
    sources: list[SourceFolder] = []
    skipped: list[Path] = []
    for child in sorted(root.iterdir()):
        if not child.is_dir() or child.name.startswith(".") or not _has_class_folders(child):
            continue
        if is_combined(child.name):
            skipped.append(child)
        else:
            sources.append(SourceFolder(source_name(child.name), child))
    names = [source.name for source in sources]
    clashes = sorted({name for name in names if names.count(name) > 1})
    if clashes:
        raise DataError(f"several folders map to the same source name: {', '.join(clashes)}")
    return sources, skipped


def read_sidecar(source_dir: Path) -> dict[str, dict[str, str]]:
    """``masses.csv`` rows keyed by file path relative to the source folder (POSIX form); empty if absent."""
    sidecar = source_dir / SIDECAR
    if not sidecar.is_file():
        return {}
    with sidecar.open(newline="") as handle:
        return {row["file"]: row for row in csv.DictReader(handle)}


def write_sidecar(source_dir: Path, rows: Iterable[dict[str, object]]) -> None:
    with (source_dir / SIDECAR).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SIDECAR_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


CROP_FILE = "crop.json"
"""Per source folder: the crop rule its patches were cut with (``crop_scale``, ``crop_min_side``) and, where known,
``pixel_spacing_mm``. Written by ``mammo-data synth`` and ``import-mias``; a folder without it (the published
Mendeley set) was cut by the default rule, about twice the radius and at least 64 px, and its spacing is unknown."""


def write_crop_rule(source_dir: Path, rule: CropRule, pixel_spacing_mm: float | None) -> None:
    document = {"crop_scale": rule.scale, "crop_min_side": rule.min_side, "pixel_spacing_mm": pixel_spacing_mm}
    (source_dir / CROP_FILE).write_text(json.dumps(document, indent=2) + "\n")


def _crop_rule_of(source_dir: Path) -> tuple[CropRule, float | None]:
    path = source_dir / CROP_FILE
    if not path.is_file():
        return CropRule(), None
    try:
        values = json.loads(path.read_text())
        return CropRule(float(values["crop_scale"]), int(values["crop_min_side"])), values.get("pixel_spacing_mm")
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path} is not a crop rule: {exc}") from exc


def training_scope(images: Iterable[Path]) -> TrainingScope:
    """What the device needs to know of the training patches: their crop rule (one for all sources) and the range of
    their sides, in pixels and, when every source knows its pixel spacing, in millimetres."""
    rules: dict[Path, tuple[CropRule, float | None]] = {}
    sides_px: list[int] = []
    sides_mm: list[float | None] = []
    for path in images:
        source_dir = Path(path).parent.parent
        if source_dir not in rules:
            rules[source_dir] = _crop_rule_of(source_dir)
        with Image.open(path) as image:
            side = max(image.size)
        spacing = rules[source_dir][1]
        sides_px.append(side)
        sides_mm.append(None if spacing is None else side * float(spacing))
    if not sides_px:
        raise DataError("no training images to take the model's scope from")
    distinct = {rule for rule, _ in rules.values()}
    if len(distinct) > 1:
        listed = "; ".join(f"{folder.name}: {rule}" for folder, (rule, _) in sorted(rules.items()))
        raise DataError(f"the training sources were cut by different crop rules ({listed}); train on one rule")
    rule = distinct.pop()
    known_mm = [side for side in sides_mm if side is not None]
    return TrainingScope(
        crop_scale=rule.scale,
        crop_min_side=rule.min_side,
        patch_side_px=(min(sides_px), max(sides_px)),
        patch_side_mm=(round(min(known_mm), 1), round(max(known_mm), 1)) if len(known_mm) == len(sides_mm) else None,
    )


def ddsm_patient(original: str) -> str | None:
    match = _DDSM_CASE.match(original)
    return f"{match.group('volume').upper()}_{match.group('case')}" if match else None


def scan_dataset(root: Path) -> list[ImageRecord]:
    """Every image of every source under `root`, sorted by path."""
    sources, _ = find_sources(root)
    records: list[ImageRecord] = []
    for source in sources:
        sidecar = read_sidecar(source.path)
        for class_dir in sorted(source.path.iterdir()):
            label = class_label(class_dir.name) if class_dir.is_dir() else None
            if label is None:
                continue
            for path in sorted(class_dir.iterdir()):
                if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
                    continue
                original = original_name(path.stem)
                row = sidecar.get(path.relative_to(source.path).as_posix())
                patient = row["patient"] if row and row.get("patient") else ddsm_patient(original)
                records.append(ImageRecord(path, source.name, label, original, patient))
    return records
