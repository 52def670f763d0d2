"""What a dataset in the Mendeley layout holds, and the duplicates that would leak across a split.

Duplicates are found on decoded pixels (not file bytes), so a re-encoded copy of the same image is caught. A
duplicate inside one group is harmless (an augmented copy equal to its original); across groups it lets a model
see a test image in training, and across classes it is a labelling error.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edge_app.decode import decode_file
from edge_app.errors import InputImageError
from mammo_train.layout import LABEL_NAMES, ImageRecord


@dataclass
class AuditReport:
    images: dict[tuple[str, str], int] = field(default_factory=dict)
    originals: dict[tuple[str, str], int] = field(default_factory=dict)
    cross_class: list[list[Path]] = field(default_factory=list)
    cross_group: list[list[Path]] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.cross_class or self.cross_group or self.unreadable)

    def table(self) -> str:
        lines = [f"{'source':<12} {'class':<10} {'images':>8} {'originals':>10}"]
        for key in sorted(self.images):
            lines.append(f"{key[0]:<12} {key[1]:<10} {self.images[key]:>8} {self.originals[key]:>10}")
        lines.append(f"{'total':<12} {'':<10} {sum(self.images.values()):>8} {sum(self.originals.values()):>10}")
        return "\n".join(lines)


def pixel_digest(path: Path) -> str:
    pixels = decode_file(path).pixels
    return hashlib.sha256(repr(pixels.shape).encode() + pixels.tobytes()).hexdigest()


def audit(records: Sequence[ImageRecord], by: str = "mass") -> AuditReport:
    report = AuditReport()
    originals: dict[tuple[str, str], set[str]] = defaultdict(set)
    by_digest: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in records:
        key = (record.source, LABEL_NAMES[record.label])
        report.images[key] = report.images.get(key, 0) + 1
        originals[key].add(record.original)
        try:
            by_digest[pixel_digest(record.path)].append(record)
        except InputImageError as exc:
            report.unreadable.append((record.path, str(exc)))
    report.originals = {key: len(names) for key, names in originals.items()}
    for same in by_digest.values():
        if len({record.label for record in same}) > 1:
            report.cross_class.append([record.path for record in same])
        elif len({record.group(by) for record in same}) > 1:
            report.cross_group.append([record.path for record in same])
    return report
