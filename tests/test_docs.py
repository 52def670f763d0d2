"""Figures the docs quote come from committed result files: a changed result without the docs (or the reverse)
fails here."""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_mutation_figures_in_docs_are_the_committed_ones() -> None:
    result = json.loads((REPO / "benchmarks" / "results" / "mutation.json").read_text())
    text = (REPO / "docs" / "testing.md").read_text()
    row = (
        f"| {result['total']} | {result['killed']} | {result['timeout']} | {result['survived']} "
        f"({result['no_tests']} reached by no test) | {result['score']:.3f} |"
    )
    assert row in text, row
    kinds = result["survivors_by_kind"]
    assert "survivors by kind: " + ", ".join(f"{kind} {count}" for kind, count in kinds.items()) in text
    listed = [int(count) for count in re.findall(r"^\| `[^|]+\| (\d+) \|", text, re.MULTILINE)]
    assert sum(listed) == kinds["other"]  # every "other" survivor is in the table of reasons
    assert sum(kinds.values()) == result["survived"]
    assert result["score"] >= 0.85 and result["total"] >= 300  # the bar this project holds its tests to


def test_the_dicom_intake_figures_in_the_benchmark_guide_are_the_committed_ones() -> None:
    result = json.loads((REPO / "benchmarks" / "results" / "dicom-intake.json").read_text())["dicom"]
    text = " ".join((REPO / "benchmarks" / "README.md").read_text().split())
    quoted = (
        f"{result['instances']} instances of {result['rows']} x {result['columns']} 16-bit pixels "
        f"({result['megabytes']} MB) in one association from {result['sender']}: the listener stores "
        f"{result['listener_images_per_s']} images/s ({result['listener_mb_per_s']} MB/s, "
        f"{result['listener_ms_per_image']} ms per image) against {result['drop_images_per_s']} images/s dropped into "
        f"the inbox the same durable way ({result['drop_ms_per_image']} ms per image): {result['overhead_ratio']}x."
    )
    assert quoted in text, quoted


def test_the_results_page_figures_in_the_benchmark_guide_are_the_committed_ones() -> None:
    result = json.loads((REPO / "benchmarks" / "results" / "results-page.json").read_text())["page"]
    text = " ".join((REPO / "benchmarks" / "README.md").read_text().split())
    quoted = (
        f"with {result['results']} results in the folder, regenerating the page after one more result takes "
        f"{result['update_after_one_result_median_s']} s (median of {result['rounds']}; the newest page holds "
        f"{result['newest_page_rows']} scans, index {result['index_kb']} KB), and Chromium shows it with every "
        f"thumbnail in {result['chromium_load_median_s']} s. Catching up a folder that had no pages took "
        f"{result['catch_up_updates']} updates of at most {result['catch_up_update_max_s']} s each."
    )
    assert quoted in text, quoted
