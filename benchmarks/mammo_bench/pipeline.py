"""``mammo-bench pipeline``: where one scan's time goes in the product path, and what the heatmap costs.

Stages are the ones the daemon runs (`ModelAnalyser.analyse`, then `ResultWriter.write_result`): read, decode,
preprocess, invoke, Grad-CAM (feature maps to fused heatmap), overlay (rendered and encoded by the write stage, in
the daemon's write lane), write (the rest of that stage). Then probability-only and
probability+heatmap calls of `EdgeModel.predict` are timed interleaved on the same preprocessed images.
"""

from __future__ import annotations

import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from edge_app.decode import decode_bytes
from edge_app.errors import MeasurementError
from edge_app.model import EdgeModel
from edge_app.preprocess import to_model_input
from edge_app.scope import ScopeLimits
from edge_app.service.analyse import CLASSIFIED, ModelAnalyser
from edge_app.service.lifecycle import ScanState, advance, received
from edge_app.service.writer import ResultWriter
from mammo_bench.progress import progress
from mammo_bench.stats import summarise

STAGES = ("read_ms", "decode_ms", "preprocess_ms", "invoke_ms", "gradcam_ms", "overlay_ms", "write_ms", "total_ms")


def measure_pipeline(model: EdgeModel, scans: list[Path], rounds: int) -> dict[str, Any]:
    """Stage statistics over `rounds` passes through `scans`, and the heatmap's cost ratio (p50 over p50)."""
    stages: dict[str, list[float]] = defaultdict(list)
    config = model.manifest.preprocess
    analyser = ModelAnalyser(model, config.max_pixels, ScopeLimits.resolve(model.manifest.scope))
    with tempfile.TemporaryDirectory(prefix="mammo-bench-") as folder:
        writer = ResultWriter(Path(folder), analyser.identity)
        for index in progress(range(rounds * len(scans)), rounds * len(scans), "scans"):
            path = scans[index % len(scans)]
            started = time.perf_counter()
            data = path.read_bytes()
            stages["read_ms"].append((time.perf_counter() - started) * 1000)
            analysis = analyser.analyse(data, path.name)
            if analysis.status != CLASSIFIED:
                raise MeasurementError(f"{path.name} was not classified: {analysis.reason}")
            tick = time.perf_counter()
            claimed = advance(received(path.name), ScanState.CLAIMED)
            analysed = advance(claimed, ScanState.ANALYSED, result_stem=f"bench{index}", status=analysis.status)
            writer.write_result(analysed, analysis)  # renders the overlay (its time joins the analysis's timings)
            for stage, value in analysis.timings_ms.items():
                stages[stage].append(value)
            overlay_ms = analysis.timings_ms.get("overlay_ms", 0.0)
            stages["write_ms"].append((time.perf_counter() - tick) * 1000 - overlay_ms)
            stages["total_ms"].append((time.perf_counter() - started) * 1000)
    images = [to_model_input(decode_bytes(path.read_bytes(), config.max_pixels).pixels, config) for path in scans]
    calls: dict[str, list[float]] = {"probability": [], "probability_heatmap": []}
    for index in range(rounds * len(images)):
        pixels = images[index % len(images)]
        for name, heatmap in (("probability", False), ("probability_heatmap", True)):
            tick = time.perf_counter()
            model.predict(pixels, heatmap=heatmap)
            calls[name].append((time.perf_counter() - tick) * 1000)
    only, both = summarise(calls["probability"]), summarise(calls["probability_heatmap"])
    return {
        "model": model.identity.stamp(),
        "scans": len(scans),
        "rounds": rounds,
        "stages": {name: summarise(stages[name]).to_dict() for name in STAGES if stages[name]},
        "probability_only": only.to_dict(),
        "probability_heatmap": both.to_dict(),
        "heatmap_cost_ratio": round(both.p50_ms / only.p50_ms, 3),
    }
