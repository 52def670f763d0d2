"""A run directory: what it holds, and the settings that produced it (``config.json``).

``RUN_DIR/`` holds ``model.keras`` (best checkpoint), ``config.json`` (these settings, tool versions),
``splits.csv`` (a copy of the split used) with its sha256 in the config, ``history.csv``, ``metrics.json`` and plots.
`convert` reads the same files, so this module is the one place that names them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_app.errors import DataError, MissingInputError
from edge_app.strict import checked_fields
from mammo_train.splits import SplitRow, read_splits

ARCHITECTURES = ("hybrid", "densenet121", "resnet50")
"""What `mammo-train --arch` builds (`mammo_train.models`): the hybrid and its single-backbone baselines."""


@dataclass(frozen=True)
class RunSettings:
    """Everything `mammo-train` was asked to do; saved verbatim so a run can be repeated and converted."""

    arch: str = "hybrid"
    input_size: int = 224
    weights: str = "imagenet"
    epochs: int = 30
    frozen_epochs: int = 3
    batch_size: int = 16
    learning_rate: float = 3e-4
    fine_tune_learning_rate: float = 3e-5
    bn_momentum: float = 0.9
    patience: int = 8
    seed: int = 0
    target_sensitivity: float = 0.90
    strategy: str = "auto"
    train_sources: tuple[str, ...] = ()
    test_sources: tuple[str, ...] = ()
    bn_images: int = 256
    init_from: str = ""
    deterministic: bool = False  # op determinism + a sequential input pipeline: same inputs, same weights
    eager: bool = False  # each step op by op, no traced graph: faster on a tiny dataset, slower on a real one
    preprocess: dict[str, Any] = field(default_factory=dict)
    scope: dict[str, Any] = field(default_factory=dict)  # the training patches' crop rule and sizes (TrainingScope)
    split_sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunSettings:
        values = checked_fields(cls, values, "run settings", DataError)
        for key in ("train_sources", "test_sources"):
            values[key] = tuple(values.get(key, ()))
        return cls(**values)


def select_sources(
    rows: list[SplitRow], train_sources: tuple[str, ...], test_sources: tuple[str, ...]
) -> list[SplitRow]:
    """Cross-source rows: train/val from `train_sources`, test = every image of `test_sources`.

    Without `test_sources` the split is kept as it is (restricted to `train_sources` when given).
    """
    if not train_sources and not test_sources:
        return rows
    known = {row.source for row in rows}
    for source in (*train_sources, *test_sources):
        if source not in known:
            raise DataError(f"source {source!r} is not in the split (found: {', '.join(sorted(known))})")
    overlap = set(train_sources) & set(test_sources)
    if overlap:
        raise DataError(f"source(s) {', '.join(sorted(overlap))} cannot be both trained and tested on")
    trained = set(train_sources) or known - set(test_sources)
    if not test_sources:
        return [row for row in rows if row.source in trained]
    selected = [row for row in rows if row.source in trained and row.split != "test"]
    selected += [
        SplitRow(row.path, row.label, row.source, row.group, "test", row.sha256)
        for row in rows
        if row.source in test_sources
    ]
    return selected


@dataclass(frozen=True)
class RunMetrics:
    """What ``metrics.json`` promises the tools that read it (`mammo-convert`, `mammo-eval --gradcam`): the
    calibration and operating point fitted on validation, and the scores of each split evaluated with them."""

    temperature: float
    threshold: float
    target_sensitivity: float
    scores: dict[str, dict[str, Any]]  # split -> {"overall": ..., "per_source": ...}

    @classmethod
    def read(cls, path: Path) -> RunMetrics:
        if not path.is_file():
            raise MissingInputError(f"{path} not found: evaluate the run first (mammo-eval RUN_DIR)")
        values = json.loads(path.read_text())
        try:
            return cls(
                temperature=float(values["temperature"]),
                threshold=float(values["threshold"]),
                target_sensitivity=float(values["target_sensitivity"]),
                scores={split: values[split] for split in ("train", "val", "test") if split in values},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path} is not a mammo-eval metrics file ({type(exc).__name__}: {exc})") from exc

    def split_scores(self, split: str) -> dict[str, Any]:
        """The `split`'s overall and per-source scores, or an error saying how to compute them."""
        if split not in self.scores:
            raise DataError(
                f"metrics.json has no {split!r} evaluation (has: {', '.join(self.scores) or 'none'}); "
                f"run `mammo-eval RUN_DIR --split {split}`"
            )
        return self.scores[split]


@dataclass(frozen=True)
class RunFiles:
    path: Path

    @property
    def model(self) -> Path:
        return self.path / "model.keras"

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def splits(self) -> Path:
        return self.path / "splits.csv"

    @property
    def history(self) -> Path:
        return self.path / "history.csv"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    def read_metrics(self) -> RunMetrics:
        return RunMetrics.read(self.metrics)

    def read_settings(self) -> RunSettings:
        if not self.config.is_file():
            raise MissingInputError(f"{self.path} is not a training run (no config.json)")
        return RunSettings.from_dict(json.loads(self.config.read_text())["settings"])

    def write_settings(self, settings: RunSettings, versions: dict[str, str]) -> None:
        self.config.write_text(json.dumps({"settings": settings.to_dict(), "versions": versions}, indent=2))

    def split_rows(self, settings: RunSettings) -> list[SplitRow]:
        return select_sources(read_splits(self.splits), settings.train_sources, settings.test_sources)
