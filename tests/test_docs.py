"""Figures the docs quote come from committed result files: a changed result without the docs (or the reverse)
fails here."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_the_mutation_figures_in_docs_are_the_committed_ones() -> None:
    result = json.loads((REPO / "benchmarks" / "results" / "mutation.json").read_text())
    text = (REPO / "docs" / "testing.md").read_text()
    row = (
        f"| {result['total']} | {result['killed']} | {result['timeout']} | {result['survived']} "
        f"({result['no_tests']} reached by no test) | {result['not_run']} | {result['score']:.3f} |"
    )
    assert row in text, row
    if result["not_run"]:  # the mutants never run are estimated from a random sample of them, and the docs say so
        sample = result["sample"]
        low, high = sample["score_all_ci"]
        estimate = (
            f"{sample['size']} of the {sample['drawn_from']} mutants never run before, drawn at random (seed "
            f"{sample['seed']}): {sample['survived']} survived, so the whole set's score is estimated at "
            f"{sample['score_all']:.3f} (95% interval {low:.3f} to {high:.3f})"
        )
        assert estimate in " ".join(text.split()), estimate
    kinds = result["survivors_by_kind"]
    assert "survivors by kind: " + ", ".join(f"{kind} {count}" for kind, count in kinds.items()) in text
    listed = [int(count) for count in re.findall(r"^\| `[^|]+\| (\d+) \|", text, re.MULTILINE)]
    assert sum(listed) == kinds["other"]  # every "other" survivor is in the table of reasons
    assert sum(kinds.values()) == result["survived"]
    assert result["score"] >= 0.85 and result["total"] >= 300  # the bar this project holds its tests to


# What benchmarks/README.md says of each committed result, with the result's own figures put in.
QUOTED_RESULTS = {
    ("dicom-intake.json", "dicom"): (
        "{instances} instances of {rows} x {columns} 16-bit pixels ({megabytes} MB) in one association from {sender}: "
        "the listener stores {listener_images_per_s} images/s ({listener_mb_per_s} MB/s, {listener_ms_per_image} ms "
        "per image) against {drop_images_per_s} images/s dropped into the inbox the same durable way "
        "({drop_ms_per_image} ms per image): {overhead_ratio}x."
    ),
    ("results-page.json", "page"): (
        "with {results} results in the folder, regenerating the page after one more result takes "
        "{update_after_one_result_median_s} s (median of {rounds}; the newest page holds {newest_page_rows} scans, "
        "index {index_kb} KB), and Chromium shows it with every thumbnail in {chromium_load_median_s} s. Catching up "
        "a folder that had no pages took {catch_up_updates} updates of at most {catch_up_update_max_s} s each."
    ),
}


@pytest.mark.parametrize(("result", "sentence"), QUOTED_RESULTS.items(), ids=[name for name, _ in QUOTED_RESULTS])
def test_the_benchmark_guide_quotes_the_committed_results(result: tuple[str, str], sentence: str) -> None:
    name, key = result
    figures = json.loads((REPO / "benchmarks" / "results" / name).read_text())[key]
    quoted = sentence.format(**figures)
    assert quoted in " ".join((REPO / "benchmarks" / "README.md").read_text().split()), quoted


def test_the_field_guide_quotes_the_committed_arm_figures() -> None:
    result = json.loads((REPO / "benchmarks" / "results" / "arm64-fidelity.json").read_text())
    int8, float32 = result["variants"]["int8"], result["variants"]["float32"]
    assert result["machine"] == "aarch64" and int8["gate_passed"] and float32["gate_passed"]
    quoted = (
        f"int8 on Arm agreed with Keras float on {int8['agreement']:.3f} of {int8['images']} fidelity images (largest "
        f"probability difference {int8['max_abs_prob_diff']:.3f}; x86: {int8['x86_against_keras']['agreement']:.3f} "
        f"and {int8['x86_against_keras']['max_abs_prob_diff']:.3f}), and with x86 on "
        f"{int8['against_x86']['agreement']:.3f} (largest difference {int8['against_x86']['max_abs_prob_diff']:.3f}): "
        f"Arm's int8 kernels round differently from x86's, and pass the same gate ({result['min_agreement']}). float32 "
        f"on Arm agreed with Keras on {float32['agreement']:.3f} (largest difference "
        f"{float32['max_abs_prob_diff']:.1e}). The offline install took {result['install']['seconds']} s"
    )
    assert quoted in " ".join((REPO / "deploy" / "README.md").read_text().split()), quoted


# What docs/reliability.md says of each committed reliability result, with the result's own figures put in.
RELIABILITY_QUOTES = {
    "sigkill.json": (
        "{scans} scans, {kills} SIGKILLs of the service ({kills_mid_scan} with a scan in processing): {lost} lost, "
        "{duplicated} answered twice."
    ),
    "node-kills.json": (
        "{images} mammograms sent over DICOM while the listener ({kills[dicom-listen]}), the service ({kills[run]}) "
        "and the forwarder ({kills[dicom-forward]}) were killed; the modality re-sent {resends} unacknowledged "
        "images: {lost} lost, {duplicated} answered twice, every SR and Secondary Capture at the PACS."
    ),
    "load.json": (
        "{scans} scans ({at_once} at once, then bursts of {bursts}) with the tracked queue limited to {queue_limit}: "
        "the queue peaked at {peak_queue}, each scan answered once."
    ),
    "load-process.json": (
        "The service process given {scans} scans at once peaked at {peak_rss_mb} MB RSS (its own high-water mark) "
        "and answered each once."
    ),
    "soak.json": (
        "{scans} scans over {simulated_days} simulated days (`--long`): RSS {rss_mb_after_first_quarter} MB after the "
        "first quarter and {rss_mb_at_end} MB at the end, {open_files[0]} open files then {open_files[1]}, the "
        "journal {journal_mb_max_first_half} MB at most in the first half and {journal_mb_at_end} MB at the end "
        "({journal_records_at_end} records kept), the results page updated in {page_update_ms_median_first_quarter} ms "
        "(median) in the first quarter and {page_update_ms_median_last_quarter} ms in the last."
    ),
}


def _reliability_figures(name: str) -> dict[str, object]:
    return json.loads((REPO / "benchmarks" / "results" / "reliability" / name).read_text())


def reliability_table_rows() -> list[str]:
    """The bad-input table of docs/reliability.md, row by row, from the committed result."""
    rows = []
    for outcome in _reliability_figures("bad-inputs.json")["outcomes"]:  # type: ignore[union-attr]
        kind = outcome["kind"].replace("\n", "\\n")
        kind = f"n x {len(kind)}" if set(kind) == {"n"} else kind
        detail = outcome.get("reason") or outcome.get("why") or f"archived as `{outcome['file']}`"
        stage = outcome.get("stage", "")
        rows.append(f"| `{kind}` | {outcome['outcome']} | {stage} | {detail.replace('|', '/')} |")
    return rows


@pytest.mark.parametrize(("name", "sentence"), RELIABILITY_QUOTES.items(), ids=list(RELIABILITY_QUOTES))
def test_the_reliability_guide_quotes_the_committed_results(name: str, sentence: str) -> None:
    quoted = sentence.format(**_reliability_figures(name))
    assert quoted in " ".join((REPO / "docs" / "reliability.md").read_text().split()), quoted


def test_the_reliability_guide_lists_every_bad_input_as_the_suite_found_it() -> None:
    figures = _reliability_figures("bad-inputs.json")
    rows = reliability_table_rows()
    assert figures["kinds"] == len(rows) >= 40 and (figures["crashes"], figures["lost"], figures["duplicated"]) == (
        0,
        0,
        0,
    )
    text = (REPO / "docs" / "reliability.md").read_text()
    assert all(row in text for row in rows), [row for row in rows if row not in text][:3]


def test_every_generated_figure_in_the_docs_is_the_committed_results() -> None:
    """`mammo-bench docs --check`: the READMEs' figure blocks (benchmarks, peers, regions, MIAS nulls, the demo's and
    the tests' times) are exactly what the committed result files render to."""
    from mammo_bench.cli import main as bench_main
    from mammo_bench.docs import render, stale

    assert stale(REPO) == []
    assert bench_main(["docs", "--check", "--repo", str(REPO)]) == 0
    assert {"README.md", "benchmarks/README.md", "benchmarks/results/training.md", "docs/testing.md"} <= set(
        render(REPO)
    )
