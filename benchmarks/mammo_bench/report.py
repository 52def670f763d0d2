"""Writing benchmark results: the printed table, JSON (with machine info), CSV, and the latency plot."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

COLUMNS = (
    ("runtime", "{:<15}"),
    ("model", "{:<32}"),
    ("variant", "{:<13}"),
    ("threads", "{:>3}"),
    ("size_mb", "{:>7}"),
    ("init_ms", "{:>8}"),
    ("first_ms", "{:>8}"),
    ("p50_ms", "{:>8}"),
    ("mean_ms", "{:>8}"),
    ("std_ms", "{:>7}"),
    ("p90_ms", "{:>8}"),
    ("p99_ms", "{:>8}"),
    ("min_ms", "{:>8}"),
    ("max_ms", "{:>8}"),
    ("runs", "{:>4}"),
    ("peak_rss_mb", "{:>7}"),
    ("gmac_per_s", "{:>7}"),
)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value.split()[0]  # a runtime's name without its version (the JSON has both)
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 100 else f"{value:.2f}"
    return str(value)


def latency_table(rows: Sequence[dict[str, Any]]) -> str:
    header = " ".join(fmt.format(name.removesuffix("_ms").removesuffix("_mb")) for name, fmt in COLUMNS)
    lines = [header]
    for row in rows:
        lines.append(" ".join(fmt.format(_cell(row.get(name))) for name, fmt in COLUMNS))
    return "\n".join(lines)


def document(command: str, machine: dict[str, Any], settings: dict[str, Any], **content: Any) -> dict[str, Any]:
    return {
        "tool": f"mammo-bench {command}",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "settings": settings,
        **content,
    }


def write_outputs(out: Path, content: dict[str, Any]) -> list[Path]:
    """`out` (JSON); for a latency document also `out`.csv and `out`.png (if matplotlib is installed)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(content, indent=2) + "\n")
    written = [out]
    rows = content.get("results")
    if rows:
        csv_path = out.with_suffix(".csv")
        names = list(dict.fromkeys(key for row in rows for key in row if key != "samples_ms"))
        with csv_path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=names, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        written.append(csv_path)
        plot = plot_latency(rows, out.with_suffix(".png"))
        if plot is not None:
            written.append(plot)
    return written


SHORT_RUNTIMES = {"ai_edge_litert": "LiteRT", "tflite_runtime": "tflite-rt", "onnxruntime": "ORT", "openvino": "OV"}


def _short(runtime: str) -> str:
    """A runtime's name short enough for a plot's tick label."""
    name = runtime.split(maxsplit=1)[0]
    return SHORT_RUNTIMES.get(name, name)


def plot_latency(rows: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """Box plots of each row's samples (model, variant, threads); None without matplotlib or samples."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot skipped: matplotlib is not installed (pip install 'mammo-edge[bench]')")
        return None
    sampled = [row for row in rows if row.get("samples_ms")]
    if not sampled:
        return None
    figure, axis = plt.subplots(figsize=(max(6.0, 0.7 * len(sampled)), 4.5))
    axis.boxplot([row["samples_ms"] for row in sampled], showfliers=True)
    axis.set_xticks(
        range(1, len(sampled) + 1),
        [f"{_short(row['runtime'])}\n{row['variant']}\n{row['role'][:4]} t{row['threads']}" for row in sampled],
        fontsize=7,
    )
    axis.set_ylabel("invoke latency (ms)")
    axis.set_yscale("log")
    axis.set_title("mammo-bench latency: steady-state invokes per model, variant and threads")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
