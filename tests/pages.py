"""A results folder holding every kind of scan (classified with regions, needs a region, refused), made by the real
pipeline and writer with the fake analyser (real overlay pictures), and its results page."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from fakes import FAKE_IDENTITY, FakeAnalyser

from edge_app.config import Config, IngestSection, LogSection, PathsSection
from edge_app.report.page import PageContext, ResultsPage
from edge_app.service.analyse import Analyser, Analysis, Overlay, Sidecar
from edge_app.service.daemon import build_pipeline
from edge_app.service.journal import Journal

FOLDERS = ("inbox", "results", "archive", "quarantine", "state", "outbox")
OPERATING_POINT = "on the held-out test split (48 images) this threshold gave sensitivity 0.95 and specificity 0.81"
# name -> (content, sidecar): classified (one region, then three), a full-field film, a refused file
SCANS = {
    "patch <b>one & more.png": (b"patch one", None),
    "film two.dcm": (b"film two", b"A\nB\nC"),
    "film three.dcm": (b"FULL film three", None),
    "broken four.png": (b"BAD four", None),
    "patch five.png": (b"patch five", None),
}


class PictureAnalyser(FakeAnalyser):
    """The fake analyser with a real overlay picture (the page makes thumbnails of it)."""

    def analyse(self, data: bytes, name: str, sidecar: Sidecar | None = None) -> Analysis:
        analysis = super().analyse(data, name, sidecar)
        if analysis.overlay_jpeg is None:
            return analysis
        picture = np.full((120, 200, 3), (40, 90, 160), np.uint8)
        ok, jpeg = cv2.imencode(".jpg", picture)
        assert ok
        return replace(analysis, overlay=Overlay.encoded(jpeg.tobytes()))


def page_for(root: Path, card: Path | None = None, page_size: int = 50) -> ResultsPage:
    return ResultsPage(root / "results", PageContext(FAKE_IDENTITY, OPERATING_POINT, card), page_size)


def results_with_every_status(
    root: Path,
    card: Path | None = None,
    page_size: int = 50,
    copies: int = 1,
    analyser: Analyser | None = None,
    scans: dict[str, tuple[bytes, bytes | None]] = SCANS,
    log: LogSection | None = None,
) -> Config:
    """Process `scans` (`copies` times over) through the pipeline with `analyser` (default `PictureAnalyser`), the
    page regenerated after each one."""
    config = Config(
        paths=PathsSection(**{name: root / name for name in FOLDERS}),
        ingest=IngestSection(settle_seconds=0.0, sidecar_wait=0.0),
        log=log or LogSection(),
    )
    page = page_for(root, card, page_size)
    journal = Journal(config.paths.state / "journal.sqlite3")
    pipeline = build_pipeline(config, journal, analyser or PictureAnalyser(), after_write=(page.update,))
    for copy in range(copies):
        for name, (content, regions) in scans.items():
            scan_name = name if copy == 0 else f"{copy} {name}"
            scan = config.paths.inbox / scan_name
            scan.write_bytes(content + str(copy).encode() * copy)
            sidecar = None
            if regions is not None:
                sidecar = scan.with_name(f"{Path(scan_name).stem}.roi.json")
                sidecar.write_bytes(regions)
            pipeline.take(scan, sidecar)
    journal.close()
    return config
