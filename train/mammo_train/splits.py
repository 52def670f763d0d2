"""Grouped, stratified, deterministic train/validation/test splits, and the ``splits.csv`` file.

All images of one group (an original mass with its augmented copies, or a patient) land in one split: splitting
augmented images at random is how papers report AUC near 1.0. Groups are stratified by source and class (a group
holding both classes, like MIAS mdb144's patient, forms a "mixed" stratum), and each stratum gives
``n * test`` groups (rounded half up) to test and ``n * val`` to validation, keeping at least one for training.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_app.errors import DataError, MissingInputError
from edge_app.fsutil import sha256_of
from mammo_train.layout import ImageRecord

SPLITS = ("train", "val", "test")
SPLIT_FIELDS = ("path", "label", "source", "group", "split", "sha256")


@dataclass(frozen=True)
class SplitRow:
    path: Path
    label: int
    source: str
    group: str
    split: str
    sha256: str


def assign_groups(strata: dict[str, str], val: float, test: float, seed: int) -> dict[str, str]:
    """Map each group to a split. `strata` maps group -> stratum; the result depends only on its contents."""
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise DataError(f"val ({val}) and test ({test}) must be fractions with val + test < 1")
    by_stratum: dict[str, list[str]] = defaultdict(list)
    for group, stratum in strata.items():
        by_stratum[stratum].append(group)
    rng = np.random.default_rng(seed)
    assignment: dict[str, str] = {}
    for stratum in sorted(by_stratum):
        groups = sorted(by_stratum[stratum])
        order = [groups[i] for i in rng.permutation(len(groups))]
        n_test = int(len(groups) * test + 0.5)
        n_val = int(len(groups) * val + 0.5)
        while n_test + n_val >= len(groups) and n_test + n_val > 0:
            if n_val >= n_test and n_val > 0:
                n_val -= 1
            else:
                n_test -= 1
        for position, group in enumerate(order):
            split = "test" if position < n_test else "val" if position < n_test + n_val else "train"
            assignment[group] = split
    return assignment


def group_strata(records: Sequence[ImageRecord], by: str) -> dict[str, str]:
    """Group -> ``source/class`` stratum (``source/mixed`` for a group with both classes)."""
    labels: dict[str, set[int]] = defaultdict(set)
    sources: dict[str, str] = {}
    for record in records:
        group = record.group(by)
        labels[group].add(record.label)
        sources[group] = record.source
    return {
        group: f"{sources[group]}/" + ("mixed" if len(found) > 1 else str(next(iter(found))))
        for group, found in labels.items()
    }


def make_split(records: Sequence[ImageRecord], val: float, test: float, seed: int, by: str) -> list[SplitRow]:
    """One `SplitRow` per image, sorted by path."""
    assignment = assign_groups(group_strata(records, by), val, test, seed)
    return [
        SplitRow(
            record.path,
            record.label,
            record.source,
            record.group(by),
            assignment[record.group(by)],
            sha256_of(record.path),
        )
        for record in sorted(records, key=lambda record: str(record.path))
    ]


def assign_folds(strata: dict[str, str], folds: int, seed: int) -> dict[str, int]:
    """Map each group to one of `folds` folds, dealing each stratum's shuffled groups round-robin (so every fold gets
    its share of each source and class, and fold sizes differ by at most one group per stratum)."""
    if folds < 2:
        raise DataError(f"cross-validation needs at least 2 folds, got {folds}")
    by_stratum: dict[str, list[str]] = defaultdict(list)
    for group, stratum in strata.items():
        by_stratum[stratum].append(group)
    if len(strata) < folds:
        raise DataError(f"{len(strata)} groups cannot fill {folds} folds")
    rng = np.random.default_rng(seed)
    assignment: dict[str, int] = {}
    offset = 0
    for stratum in sorted(by_stratum):
        groups = sorted(by_stratum[stratum])
        for position, index in enumerate(rng.permutation(len(groups))):
            assignment[groups[index]] = (offset + position) % folds
        offset += len(groups)  # the next stratum starts where this one stopped: folds stay balanced
    return assignment


def fold_splits(records: Sequence[ImageRecord], folds: int, seed: int, by: str) -> list[list[SplitRow]]:
    """K grouped folds: in split k, fold k is the test set, fold k+1 validation, the rest training."""
    assignment = assign_folds(group_strata(records, by), folds, seed)
    ordered = sorted(records, key=lambda record: str(record.path))
    hashes = {record.path: sha256_of(record.path) for record in ordered}
    splits = []
    for fold in range(folds):
        names = {fold: "test", (fold + 1) % folds: "val"}
        splits.append(
            [
                SplitRow(
                    record.path,
                    record.label,
                    record.source,
                    record.group(by),
                    names.get(assignment[record.group(by)], "train"),
                    hashes[record.path],
                )
                for record in ordered
            ]
        )
    return splits


def crossing_groups(rows: Sequence[SplitRow]) -> dict[str, set[str]]:
    """Groups found in more than one split (must be empty)."""
    seen: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        seen[row.group].add(row.split)
    return {group: splits for group, splits in seen.items() if len(splits) > 1}


def write_splits(rows: Sequence[SplitRow], out: Path) -> None:
    """Write ``splits.csv``; paths are stored relative to the file's folder so the pair can move together."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    base = out.parent.resolve()
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(SPLIT_FIELDS)
        for row in rows:
            path = Path(row.path).resolve()
            stored = path.relative_to(base) if path.is_relative_to(base) else path
            writer.writerow([stored.as_posix(), row.label, row.source, row.group, row.split, row.sha256])


def read_splits(path: Path) -> list[SplitRow]:
    """Read ``splits.csv``, resolving relative paths against its folder; rejects a malformed file by name."""
    path = Path(path)
    base = path.parent
    if not path.is_file():
        raise MissingInputError(f"split file {path} not found (make one with `mammo-data split`)")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = set(SPLIT_FIELDS) - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"{path} lacks column(s) {', '.join(sorted(missing))}")
        rows = []
        for line, row in enumerate(reader, start=2):
            if row["split"] not in SPLITS or row["label"] not in ("0", "1"):
                raise DataError(f"{path}:{line}: split must be one of {SPLITS} and label 0 or 1")
            rows.append(
                SplitRow(
                    base / row["path"], int(row["label"]), row["source"], row["group"], row["split"], row["sha256"]
                )
            )
    return rows
