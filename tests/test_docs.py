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
