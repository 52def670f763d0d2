"""Figures the docs quote come from committed result files: a changed result without the docs (or the reverse)
fails here."""

from __future__ import annotations

import json
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
    for kind, count in result["survivors_by_kind"].items():
        assert f"- **{kind}** " in text or kind == "other", kind
        assert count >= 0
    assert result["score"] >= 0.85 and result["total"] >= 300  # the bar this project holds its tests to
