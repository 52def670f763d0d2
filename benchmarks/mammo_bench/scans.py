"""Scans to benchmark with: a folder the user gives, or synthetic mass crops the size of the bundle's largest
training patch (the Mendeley dataset's 227 px for the product's model), so the device classifies them as it would a
clinic's patches instead of answering ``needs_roi``."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_app.decode import SCAN_SUFFIXES
from edge_app.errors import MissingInputError
from edge_app.manifest import load_manifest
from edge_app.samples import render_mass


def scan_files(folder: Path) -> list[Path]:
    """The scans in `folder` (by the daemon's suffixes), sorted; an error if there are none."""
    found = sorted(path for path in Path(folder).iterdir() if path.suffix.lower() in SCAN_SUFFIXES)
    if not found:
        raise MissingInputError(f"no scans ({', '.join(SCAN_SUFFIXES)}) in {folder}")
    return found


def patch_side(bundle: Path) -> int:
    """The side of the synthetic scans for `bundle`: its largest training patch."""
    return load_manifest(bundle, verify_files=False).scope.patch_side_px[1]


def synthetic_scans(folder: Path, count: int, side: int, seed: int = 0) -> list[Path]:
    """`count` PNG mass crops, alternating benign and malignant, written into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        path = folder / f"scan{index:05d}.png"
        cv2.imwrite(str(path), render_mass(rng, side, bool(index % 2)).image)
        paths.append(path)
    return paths
