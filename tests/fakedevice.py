"""The device's own analyser, journal and pipeline over a fake model bundle (tests/fakemodel.py), with the web app
on: for tests of what the web app and the daemon do with a film and a reader's marks, without a trained model. The
fake runtime must be in place (the `fake_runtime` fixture)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from fakemodel import write_fake_bundle

from edge_app.config import Config, IngestSection, ModelSection, PathsSection, WebSection
from edge_app.model import EdgeModel
from edge_app.proposals import FilmDetector
from edge_app.scope import ScopeLimits
from edge_app.service.analyse import ModelAnalyser
from edge_app.service.daemon import build_pipeline, journal_path
from edge_app.service.journal import Journal
from edge_app.service.lifecycle import ScanRecord
from edge_app.service.pipeline import ScanPipeline

FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)  # Argon2id, cheap enough for tests


@dataclass
class FakeDevice:
    config: Config
    analyser: ModelAnalyser
    journal: Journal
    pipeline: ScanPipeline

    def answer(self, name: str, data: bytes) -> ScanRecord:
        """`data` dropped into the inbox as `name` and taken through the pipeline, as the daemon takes a file."""
        (self.config.paths.inbox / name).write_bytes(data)
        return self.pipeline.take(self.config.paths.inbox / name)


def fake_device(root: Path, detector: bool = False) -> FakeDevice:
    """A device under `root`: the fake bundle (with the fake detector when asked), float32, one thread, no settling."""
    bundle = write_fake_bundle(root / "bundle", patch_side_px=(48, 64), detector=detector)
    paths = PathsSection(*(root / name for name in ("inbox", "results", "archive", "quarantine", "state", "out")))
    config = Config(
        model=ModelSection(bundle=bundle, threads=1),
        paths=paths,
        ingest=IngestSection(settle_seconds=0.0, sidecar_wait=0.0),
        web=WebSection(enabled=True),
    )
    model = EdgeModel.load(bundle, "float32", "auto", 1)
    proposer = FilmDetector.load(bundle, model.manifest, model.runtime, 1)
    analyser = ModelAnalyser(model, config.ingest.max_pixels, ScopeLimits.resolve(model.manifest.scope), proposer)
    journal = Journal(journal_path(config))
    return FakeDevice(config, analyser, journal, build_pipeline(config, journal, analyser))
