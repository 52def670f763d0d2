"""``mammo-bench compare``: a result against a device's reference file, like pycoral's per-device references.

Rows match on (model file, architecture, input size, variant, threads, runtime name): a 96 px bundle is never
compared with a 224 px reference. A row regresses when its p50 exceeds the reference's by more
than `tolerance` (0.3: 30% slower). Exit codes: 0 no regression, 1 regression, 2 nothing comparable (never a
silent pass).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Key = tuple[str, str, int, str, int, str]


@dataclass(frozen=True)
class Comparison:
    key: Key
    result_p50_ms: float
    reference_p50_ms: float

    @property
    def ratio(self) -> float:
        return self.result_p50_ms / self.reference_p50_ms

    def regressed(self, tolerance: float) -> bool:
        return self.ratio > 1 + tolerance


def _key(row: dict[str, Any]) -> Key:
    runtime = str(row.get("runtime", "")).split(" ")[0]
    return (
        str(row["model"]),
        str(row.get("architecture", "")),
        int(row.get("input_size", 0)),
        str(row["variant"]),
        int(row["threads"]),
        runtime,
    )


def compare_results(result: dict[str, Any], reference: dict[str, Any]) -> list[Comparison]:
    """Every row present in both files, in the result's order."""
    references = {_key(row): row for row in reference.get("results", [])}
    return [
        Comparison(_key(row), float(row["p50_ms"]), float(references[_key(row)]["p50_ms"]))
        for row in result.get("results", [])
        if _key(row) in references
    ]


def comparison_table(comparisons: list[Comparison], tolerance: float) -> str:
    lines = [f"{'model':<28} {'variant':<14} {'thr':>3} {'p50 ms':>9} {'ref ms':>9} {'ratio':>6}  verdict"]
    for item in comparisons:
        model, _, _, variant, threads, _ = item.key
        verdict = "REGRESSION" if item.regressed(tolerance) else "ok"
        lines.append(
            f"{model:<28} {variant:<14} {threads:>3} {item.result_p50_ms:>9.2f} {item.reference_p50_ms:>9.2f} "
            f"{item.ratio:>6.2f}  {verdict}"
        )
    return "\n".join(lines)


def exit_code(comparisons: list[Comparison], tolerance: float) -> int:
    if not comparisons:
        return 2
    return 1 if any(item.regressed(tolerance) for item in comparisons) else 0
