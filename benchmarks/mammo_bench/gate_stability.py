"""``mammo-bench gate``: how often a small model's quantised variants ship, over K training seeds of one recipe.

One synthetic dataset and split; per seed, `mammo-train --deterministic` then `mammo-convert` with the default
gate, each run as the user runs it (a subprocess of this environment's console scripts: this module imports neither
training nor conversion code). Training is deterministic, so a seed whose run already finished under `work` (its
``metrics.json`` exists) is not trained again; every seed is converted again. Per seed and variant: whether it
passed first time, after repair, or was rejected; agreement and heatmap Pearson on the fidelity set; the AUC drop on
the test split; the layers left in float. The result file keeps one entry per recipe (`record_recipe`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import median
from typing import Any

from edge_app.errors import MeasurementError
from edge_app.manifest import load_manifest


@dataclass(frozen=True)
class GateRecipe:
    """The synthetic data, its split, the training and the conversion of one seed's model."""

    split_by: str
    val: float
    test: float
    convert: tuple[str, ...] = ()  # `mammo-convert` arguments beyond the calibration
    per_class: int = 80
    copies: int = 1
    size: int = 96
    epochs: int = 4
    batch_size: int = 16
    lr: float = 1e-3
    calibration: int = 96


RECIPES = {
    "demo": GateRecipe(split_by="patient", val=0.15, test=0.15),
    # tests/modelbuild.py's learning check: split by mass, and the repair stops before any layer stays in float.
    "suite": GateRecipe(split_by="mass", val=0.2, test=0.25, convert=("--float-budget", "0")),
}


def _tool(name: str, *arguments: str) -> float:
    """Run a console script of this environment; its seconds, or the error with its last line."""
    started = time.monotonic()
    command = [str(Path(sys.executable).parent / name), *arguments]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        last = (completed.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise MeasurementError(f"{' '.join(command[:2])} ... exited {completed.returncode}: {last}")
    return round(time.monotonic() - started, 1)


def _variant_rows(bundle: Path) -> dict[str, dict[str, Any]]:
    report = json.loads((bundle / "report.json").read_text())
    manifest = load_manifest(bundle)
    rows = {}
    for variant, result in report["variants"].items():
        shipped = next((entry for entry in manifest.files.values() if entry.variant == variant), None)
        kept = shipped is not None and result["status"] != "rejected"
        rows[variant] = {
            "status": result["status"],
            "agreement": round(result["agreement"], 4),
            "agreement_ci": [round(bound, 4) for bound in result["agreement_ci"]],
            "heatmap_pearson": round(result["heatmap_pearson"], 4),
            "heatmap_pearson_ci": [round(bound, 4) for bound in result["heatmap_pearson_ci"]],
            "auc_drop": result["auc_drop"],
            "float_layers": len(shipped.float_layers) if kept and shipped else None,
            "float_macs_share": shipped.float_macs_share if kept and shipped else None,
            "failures_first_time": result.get("first_failures", result["failures"]),
        }
    return rows


def measure_gate_stability(work: Path, recipe: GateRecipe, seeds: list[int]) -> dict[str, Any]:
    """Train and convert one model per seed of `recipe` under `work`; the per-seed table and its summary."""
    data, split = work / "data", work / "splits.csv"
    if not split.is_file():
        _tool("mammo-data", "synth", str(data), "--per-class", str(recipe.per_class), "--size", str(recipe.size),
              "--copies", str(recipe.copies), "--seed", "0")  # fmt: skip
        _tool("mammo-data", "split", str(data), "--out", str(split), "--by", recipe.split_by, "--val",
              str(recipe.val), "--test", str(recipe.test), "--seed", "0")  # fmt: skip
    entries = []
    for seed in seeds:
        run, bundle = work / f"seed{seed}" / "run", work / f"seed{seed}" / "bundle"
        train_s = None  # reused: a finished deterministic run is the run training would make again
        if not (run / "metrics.json").is_file():
            train_s = _tool(
                "mammo-train", "--split", str(split), "--out", str(run), "--arch", "hybrid", "--input-size",
                str(recipe.size), "--weights", "none", "--epochs", str(recipe.epochs), "--lr", str(recipe.lr),
                "--batch-size", str(recipe.batch_size), "--seed", str(seed), "--deterministic", "--quiet",
            )  # fmt: skip
        convert_s = _tool(
            "mammo-convert", str(run), "--out", str(bundle), "--calibration", str(recipe.calibration), *recipe.convert
        )
        metrics = json.loads((run / "metrics.json").read_text())
        entries.append(
            {
                "seed": seed,
                "test_auc": metrics["test"]["overall"]["roc_auc"],
                "train_s": train_s,
                "convert_s": convert_s,
                **_variant_rows(bundle),
            }
        )
        print(json.dumps(entries[-1]))
    int8 = [entry["int8"] for entry in entries]
    shipped = [row for row in int8 if row["status"] != "rejected"]
    bar = json.loads((work / f"seed{seeds[0]}" / "bundle" / "report.json").read_text())["thresholds"]["min_agreement"]
    return {
        "recipe": asdict(recipe),
        "seeds": entries,
        "summary": {
            "k": len(entries),
            "int8_first": sum(row["status"] == "first" for row in int8),
            "int8_repaired": sum(row["status"] == "repaired" for row in int8),
            "int8_rejected": len(int8) - len(shipped),
            "median_float_macs_share": median(row["float_macs_share"] for row in shipped) if shipped else None,
            "min_agreement": min(row["agreement"] for row in shipped) if shipped else None,
            "median_agreement_margin": round(median(row["agreement"] - bar for row in shipped), 4) if shipped else None,
            "min_heatmap_pearson": min(row["heatmap_pearson"] for row in shipped) if shipped else None,
        },
    }


def record_recipe(out: Path, name: str, figures: dict[str, Any]) -> dict[str, Any]:
    """`out`'s recipes with `name`'s replaced by `figures` (the others, measured in earlier runs, kept as they are)."""
    document: dict[str, Any] = json.loads(out.read_text()) if out.is_file() else {}
    recipes = {**document.get("recipes", {}), name: figures}
    return {
        "what": "mammo-bench gate: per recipe, K training seeds each converted through the default gate; how often "
        "each variant ships, first time or after repair",
        "tool": "mammo-bench gate",
        "recipes": dict(sorted(recipes.items())),
    }
