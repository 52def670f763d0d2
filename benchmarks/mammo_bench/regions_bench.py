"""``mammo-bench regions``: what a region costs on a full-field film with N marked regions, against the same N
regions sent as N separate patch files.

A film is a 16-bit DICOM mammogram of the device's own test pattern (`edge_app.dicom.sample`, ``--rows`` x
``--columns``) with N synthetic masses on a grid, and its ``.roi.json`` marking them; the patch files are the very
crops the device cuts for those regions (the bundle's crop rule), as PNG. Both go through the daemon's analyse and
write stages (`ModelAnalyser.analyse`, `ResultWriter.write_result`: decode, crop, preprocess, invoke, Grad-CAM,
overlay, result JSON and audit lines), in alternating rounds so drift hits both. Per-region cost is a round's time
over N; the ratio film / patches at each N says whether one film with N regions costs what N patches do.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_app.decode import decode_bytes
from edge_app.dicom.sample import encode, mammogram
from edge_app.errors import MeasurementError
from edge_app.model import EdgeModel
from edge_app.regions import CropRule, Region, crop_region, default_label
from edge_app.samples import render_mass
from edge_app.scope import ScopeLimits
from edge_app.service.analyse import CLASSIFIED, Analyser, ModelAnalyser, Sidecar
from edge_app.service.lifecycle import ScanState, advance, received
from edge_app.service.writer import ResultWriter
from mammo_bench.stats import summarise


def film_with_regions(
    count: int, rows: int, columns: int, patch: int, rule: CropRule, seed: int = 0, **header: Any
) -> tuple[bytes, bytes, list[Region]]:
    """A 16-bit DICOM film with `count` masses on a grid (`header`: attributes over the test pattern's), its
    ``.roi.json`` and the regions it marks (each region's radius such that `rule` cuts exactly the mass's patch)."""
    rng = np.random.default_rng(seed)
    film = cv2.GaussianBlur(rng.standard_normal((rows, columns)).astype(np.float32), (0, 0), 8)
    film = 0.35 + 0.05 * film / (film.std() + 1e-6)
    across = int(np.ceil(np.sqrt(count)))
    step_x, step_y = columns // (across + 1), rows // (across + 1)
    if min(step_x, step_y) < patch:
        raise MeasurementError(f"{count} regions of {patch} px do not fit a {columns} x {rows} film")
    regions = []
    for index in range(count):
        x0 = step_x * (1 + index % across) - patch // 2
        y0 = step_y * (1 + index // across) - patch // 2
        film[y0 : y0 + patch, x0 : x0 + patch] = render_mass(rng, patch, bool(index % 2)).image / 255.0
        regions.append(Region(default_label(index), x0 + patch / 2, y0 + patch / 2, patch / rule.scale))
    pixels = np.rint(np.clip(film, 0, 1) * 4095).astype(np.uint16)
    marks = [{"label": r.label, "x": r.cx, "y": r.cy, "radius": r.radius} for r in regions]
    return encode(mammogram(pixels, **header)), json.dumps({"regions": marks}).encode(), regions


def measure_regions(model: EdgeModel, counts: Sequence[int], rounds: int, rows: int, columns: int) -> dict[str, Any]:
    """Per-region milliseconds for a film with N regions and for N patch files, at each N in `counts`."""
    manifest = model.manifest
    analyser = ModelAnalyser(model, manifest.preprocess.max_pixels, ScopeLimits.resolve(manifest.scope))
    patch = manifest.scope.patch_side_px[1]
    figures = {}
    with tempfile.TemporaryDirectory(prefix="mammo-bench-regions-") as folder:
        writer = ResultWriter(Path(folder), analyser.identity)
        for count in counts:
            film, roi, regions = film_with_regions(count, rows, columns, patch, manifest.scope.crop_rule)
            gray = decode_bytes(film, manifest.preprocess.max_pixels).pixels  # the film as the device sees it
            patches = [_png(crop_region(gray, region, manifest.scope.crop_rule)[0]) for region in regions]
            sidecar = Sidecar("film.roi.json", "roi", roi)
            film_ms, patches_ms = [], []
            analyse_and_write(analyser, writer, film, "film.dcm", sidecar, count)  # warm-up: first touches, caches
            for _ in range(rounds):
                film_ms.append(analyse_and_write(analyser, writer, film, "film.dcm", sidecar, count))
                patches_ms.append(
                    sum(
                        analyse_and_write(analyser, writer, data, f"patch{i}.png", None, 1)
                        for i, data in enumerate(patches)
                    )
                )
            film_stats, patch_stats = summarise(film_ms), summarise(patches_ms)
            figures[str(count)] = {
                "film_ms_per_region": round(film_stats.p50_ms / count, 2),
                "patches_ms_per_region": round(patch_stats.p50_ms / count, 2),
                "ratio": round(film_stats.p50_ms / patch_stats.p50_ms, 3),
                "film_bytes": len(film),
            }
    return {"model": model.identity.stamp(), "rows": rows, "columns": columns, "rounds": rounds, "per_count": figures}


def analyse_and_write(
    analyser: Analyser,
    writer: ResultWriter,
    data: bytes,
    name: str,
    sidecar: Sidecar | None,
    count: int,
    source: Path | None = None,
) -> float:
    """One scan through analyse and write (with the writer's answer sinks when the scan's file, `source`, is given:
    the DICOM report and capture); its milliseconds."""
    started = time.perf_counter()
    analysis = analyser.analyse(data, name, sidecar)
    if analysis.status != CLASSIFIED or len(analysis.regions) != count:
        raise MeasurementError(
            f"{name}: expected {count} classified region(s), got {analysis.status}: {analysis.reason}"
        )
    claimed = advance(received(name), ScanState.CLAIMED)
    writer.write_result(
        advance(claimed, ScanState.ANALYSED, result_stem=f"bench-{name}", status=analysis.status), analysis, source
    )
    return (time.perf_counter() - started) * 1000


def _png(pixels: np.ndarray[Any, Any]) -> bytes:
    ok, encoded = cv2.imencode(".png", pixels)
    if not ok:
        raise MeasurementError("a patch could not be encoded as PNG")
    return encoded.tobytes()
