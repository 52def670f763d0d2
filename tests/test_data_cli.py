"""`mammo-data` end to end: synth -> audit -> split, and audit catching leaks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mammo_train.data_cli import main
from mammo_train.splits import crossing_groups, read_splits


def test_synth_audit_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "data"
    assert main(["synth", str(root), "--per-class", "10", "--size", "64", "--copies", "2", "--seed", "1"]) == 0
    assert main(["audit", str(root)]) == 0
    out = capsys.readouterr().out
    assert "SYNTH        benign           30         10" in out
    assert "audit: clean" in out
    splits = tmp_path / "splits.csv"
    assert main(["split", str(root), "--out", str(splits), "--val", "0.2", "--test", "0.2", "--by", "patient"]) == 0
    out = capsys.readouterr().out
    assert "groups crossing splits (checked in the written file): 0" in out
    rows = read_splits(splits)
    assert len(rows) == 60 and not crossing_groups(rows)
    assert all(row.group.startswith("SYNTH/patient:") for row in rows)


def test_split_is_deterministic(synth_root: Path, tmp_path: Path) -> None:
    for name in ("a.csv", "b.csv"):
        assert main(["split", str(synth_root), "--out", str(tmp_path / name), "--seed", "4"]) == 0
    a = [(row.path.name, row.split) for row in read_splits(tmp_path / "a.csv")]
    b = [(row.path.name, row.split) for row in read_splits(tmp_path / "b.csv")]
    assert a == b


def test_audit_flags_duplicates_across_classes_and_groups(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "data"
    main(["synth", str(root), "--per-class", "3", "--size", "64", "--copies", "0"])
    source = root / "SYNTH Dataset"
    benign = sorted((source / "Benign Masses").glob("*.png"))
    shutil.copy(benign[0], source / "Malignant Masses" / "leak.png")
    shutil.copy(benign[1], source / "Benign Masses" / "other-mass.png")
    assert main(["audit", str(root)]) == 1
    out = capsys.readouterr().out
    assert "DUPLICATE ACROSS CLASSES" in out and "leak.png" in out
    assert "DUPLICATE ACROSS MASS GROUPS" in out and "other-mass.png" in out


def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["import-mias", str(tmp_path), str(tmp_path / "out")]) == 2
    assert "Info.txt" in capsys.readouterr().err


def test_import_mias_cli(mias_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import-mias", str(mias_dir), str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "mass crops: 58 (38 benign, 20 malignant)" in out
    assert "films used: 55; patient groups: 53" in out
    assert "rows without coordinates (skipped): mdb059" in out
    assert "absent (skipped)" in out
