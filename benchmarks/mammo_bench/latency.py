"""``mammo-bench latency``: every model file of a bundle at each thread count, timed interleaved.

Each round invokes every case once (A B C A B C ...), so thermal throttling, frequency scaling and other load hit
all of them equally; a round stops early at ``max_seconds``. Rows follow the interface in ``benchmarks/README.md``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from edge_app.errors import DataError
from edge_app.macs import count_macs
from edge_app.manifest import Manifest
from edge_app.runtime import Runtime, load_runtime, make_interpreter
from mammo_bench.memory import model_peak_rss_mb
from mammo_bench.peers import PeerModel, open_peer, peer_runtime
from mammo_bench.progress import progress
from mammo_bench.runners import Case, TimedInterpreter, start
from mammo_bench.stats import RowIdentity, latency_row


def bundle_cases(manifest: Manifest, variants: Sequence[str], threads: Sequence[int]) -> list[Case]:
    """The classifier of each requested variant the bundle has, and the Grad-CAM head, at each thread count."""
    files = []
    for variant in variants:
        if variant in manifest.variants:
            name, _ = manifest.classifier(variant)
            files.append((name, "classifier", variant))
    if not files:
        raise DataError(f"the bundle has none of the variants {', '.join(variants)} (has {manifest.variants})")
    head = [(name, entry.role, entry.variant) for name, entry in manifest.files.items() if entry.role == "gradcam_head"]
    return [Case(name, role, variant, count) for count in threads for name, role, variant in files + head]


def run_interleaved(
    timed: list[TimedInterpreter], warmup: int, runs: int, max_seconds: float
) -> dict[Case, list[float]]:
    """Warm up, then `runs` rounds of one invoke per case (fewer if `max_seconds` runs out)."""
    for _ in range(warmup):
        for entry in timed:
            entry.invoke()
    samples: dict[Case, list[float]] = {entry.case: [] for entry in timed}
    deadline = time.monotonic() + max_seconds
    for _ in progress(range(runs), runs, "rounds"):
        for entry in timed:
            samples[entry.case].append(entry.invoke())
        if time.monotonic() > deadline:
            break
    return samples


@dataclass(frozen=True)
class Subject:
    """What one row times: a case, the runtime running it, its model file (the memory child opens it) and size."""

    case: Case
    runtime: Runtime
    path: Path
    size_mb: float
    open: Callable[[], Any]
    macs: Callable[[Any], int] = count_macs


def bundle_subjects(bundle: Path, manifest: Manifest, runtime: Runtime, cases: list[Case]) -> list[Subject]:
    """The bundle's own files under a TFLite runtime."""
    return [
        Subject(
            case,
            runtime,
            bundle / case.model,
            manifest.files[case.model].size_bytes / 1e6,
            partial(make_interpreter, runtime, bundle / case.model, case.threads),
        )
        for case in cases
    ]


def peer_subjects(
    bundle: Path, manifest: Manifest, folder: Path, peers: list[PeerModel], threads: Sequence[int]
) -> list[Subject]:
    """Each peer's classifier and its head at each thread count (a head shared by two peer rows is timed once);
    MACs are counted on the TFLite graphs they were exported from."""
    litert = load_runtime("ai_edge_litert")
    counted = {
        role: count_macs(make_interpreter(litert, bundle / name, 1))
        for role, name in (("classifier", manifest.classifier("float32")[0]), ("gradcam_head", _head_name(manifest)))
    }
    subjects, heads = [], set()
    for count in threads:
        for peer in peers:
            runtime = peer_runtime(peer.runtime)
            files = [("classifier", peer.variant, peer.classifier)]
            if (peer.runtime, peer.head, count) not in heads:
                heads.add((peer.runtime, peer.head, count))
                files.append(("gradcam_head", "float32", peer.head))
            for role, variant, name in files:
                subjects.append(
                    Subject(
                        Case(name, role, variant, count),
                        runtime,
                        folder / name,
                        peer.size_mb(folder, name),
                        partial(open_peer, peer.runtime, folder / name, count),
                        partial(_counted, counted[role]),
                    )
                )
    return subjects


def _counted(macs: int, _interpreter: Any) -> int:
    return macs


def _head_name(manifest: Manifest) -> str:
    return next(name for name, entry in manifest.files.items() if entry.role == "gradcam_head")


def row(
    entry: TimedInterpreter, subject: Subject, samples: list[float], manifest: Manifest, rss_mb: float | None
) -> dict[str, Any]:
    identity = RowIdentity(
        model=entry.case.model,
        architecture=manifest.architecture,
        input_size=manifest.preprocess.input_size,
        role=entry.case.role,
        variant=entry.case.variant,
        threads=entry.case.threads,
        runtime=subject.runtime.label,
        size_mb=subject.size_mb,
    )
    return latency_row(identity, entry.init_ms, entry.first_ms, samples, rss_mb, entry.macs / 1e9)


def measure_latency(
    subjects: list[Subject],
    manifest: Manifest,
    warmup: int,
    runs: int,
    max_seconds: float,
    memory: bool = True,
) -> list[dict[str, Any]]:
    """One row per subject, all timed interleaved; `memory` adds each model's own peak RSS from a child process
    (else the row has None)."""
    timed = [start(subject.case, subject.open, subject.macs) for subject in subjects]
    samples = run_interleaved(timed, warmup, runs, max_seconds)
    rows = []
    for entry, subject in zip(timed, subjects, strict=True):
        rss = model_peak_rss_mb(subject.path, entry.case.threads, subject.runtime.name) if memory else None
        rows.append(row(entry, subject, samples[entry.case], manifest, rss))
    return rows
