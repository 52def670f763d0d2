"""Reading the Mendeley layout tolerantly."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mammo_train.layout import class_label, ddsm_patient, find_sources, original_name, scan_dataset, source_name


@pytest.mark.parametrize(
    ("stem", "original"),
    [
        ("20586908 (3)", "20586908"),
        ("20586908", "20586908"),
        ("D1_A_1177_1.RIGHT_CC (12)", "D1_A_1177_1.RIGHT_CC"),
        ("mdb005_2", "mdb005_2"),
        ("odd (name) (2)", "odd (name)"),
    ],
)
def test_original_name(stem: str, original: str) -> None:
    assert original_name(stem) == original


@pytest.mark.parametrize(
    ("folder", "source"),
    [
        ("INbreast Dataset", "INbreast"),
        ("inbreast_dataset", "INbreast"),
        ("MIAS", "MIAS"),
        ("DDSM-Dataset", "DDSM"),
        ("SYNTH Dataset", "SYNTH"),
    ],
)
def test_source_name(folder: str, source: str) -> None:
    assert source_name(folder) == source


@pytest.mark.parametrize(
    ("folder", "label"),
    [("Benign Masses", 0), ("benign_masses", 0), ("MALIGNANT", 1), ("Malignant Masses", 1), ("Normal", None)],
)
def test_class_label(folder: str, label: int | None) -> None:
    assert class_label(folder) == label


def test_ddsm_patient_from_name() -> None:
    assert ddsm_patient("D1_A_1177_1.RIGHT_CC") == "A_1177"
    assert ddsm_patient("20586908") is None


def _touch_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.arange(64, dtype=np.uint8).reshape(8, 8))


def test_scan_skips_the_combined_folder_and_groups_copies(tmp_path: Path) -> None:
    for name in ("D1_A_1177_1.RIGHT_CC.png", "D1_A_1177_1.RIGHT_CC (1).png", "D1_A_1177_2.LEFT_MLO.png"):
        _touch_image(tmp_path / "DDSM Dataset" / "Malignant Masses" / name)
    _touch_image(tmp_path / "inbreast dataset" / "benign masses" / "20586908 (2).png")
    _touch_image(tmp_path / "INbreast+MIAS+DDSM Dataset" / "Benign Masses" / "20586908 (2).png")
    sources, skipped = find_sources(tmp_path)
    assert [source.name for source in sources] == ["DDSM", "INbreast"]
    assert [folder.name for folder in skipped] == ["INbreast+MIAS+DDSM Dataset"]
    records = scan_dataset(tmp_path)
    assert len(records) == 4
    ddsm = [record for record in records if record.source == "DDSM"]
    assert {record.group("mass") for record in ddsm} == {"DDSM/D1_A_1177_1.RIGHT_CC", "DDSM/D1_A_1177_2.LEFT_MLO"}
    assert {record.group("patient") for record in ddsm} == {"DDSM/patient:A_1177"}
    inbreast = next(record for record in records if record.source == "INbreast")
    assert inbreast.group("patient") == "INbreast/20586908"  # no patient known: falls back to the mass


def test_a_single_source_folder_is_a_dataset(tmp_path: Path) -> None:
    _touch_image(tmp_path / "MIAS Dataset" / "Benign Masses" / "mdb001.png")
    records = scan_dataset(tmp_path / "MIAS Dataset")
    assert [(record.source, record.label, record.original) for record in records] == [("MIAS", 0, "mdb001")]
