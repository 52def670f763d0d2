"""``mammo-train`` and ``mammo-eval``.

``mammo-train detector ...`` trains and measures the mass detector instead (`mammo_train.detector_cli`).

``mammo-train --split splits.csv --out RUN_DIR`` trains one architecture into RUN_DIR and evaluates it;
``--arch hybrid,densenet121,resnet50`` trains each into ``RUN_DIR/<arch>`` on the same split and writes
``RUN_DIR/comparison.{md,json}``. ``--data ROOT`` instead of ``--split`` splits a Mendeley-layout folder on the fly
with the grouped splitter (written to ``RUN_DIR/splits.csv``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter, before it is imported

from edge_app.errors import DataError, run_main
from edge_app.preprocess import PreprocessConfig
from mammo_train.extra import require_train_extra
from mammo_train.layout import scan_dataset
from mammo_train.runfiles import ARCHITECTURES, RunSettings
from mammo_train.splits import make_split, write_splits


def _sources(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def build_train_parser() -> argparse.ArgumentParser:
    defaults = RunSettings()
    parser = argparse.ArgumentParser(prog="mammo-train", description=__doc__)
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument("--split", type=Path, help="splits.csv from `mammo-data split`")
    given.add_argument("--data", type=Path, help="a Mendeley-layout folder, split on the fly by patient")
    parser.add_argument("--out", type=Path, required=True, help="run directory")
    parser.add_argument("--arch", default=defaults.arch, help=f"one or a comma list of {', '.join(ARCHITECTURES)}")
    parser.add_argument("--input-size", type=int, default=defaults.input_size)
    parser.add_argument("--weights", default=defaults.weights, help="imagenet | none | folder of local .h5 files")
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help="fine-tuning epochs (phase 2)")
    parser.add_argument("--frozen-epochs", type=int, default=defaults.frozen_epochs, help="phase 1 (pretrained)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.learning_rate)
    parser.add_argument("--fine-tune-lr", type=float, default=defaults.fine_tune_learning_rate)
    parser.add_argument("--bn-momentum", type=float, default=defaults.bn_momentum, help="from scratch only")
    parser.add_argument("--patience", type=int, default=defaults.patience)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--deterministic",
        action="store_true",
        help="same data, split and seed give the same weights (op determinism, sequential input pipeline; slower)",
    )
    parser.add_argument(
        "--eager",
        action="store_true",
        help="run each training step op by op instead of tracing a graph: the trace costs minutes whatever the data, "
        "so this is faster for a tiny dataset (a smoke run) and slower for a real one",
    )
    parser.add_argument("--target-sensitivity", type=float, default=defaults.target_sensitivity)
    parser.add_argument("--strategy", default=defaults.strategy, choices=("auto", "default", "mirrored"))
    parser.add_argument("--train-sources", type=_sources, default=(), help="comma list; default all")
    parser.add_argument("--test-sources", type=_sources, default=(), help="comma list: test on other sources")
    parser.add_argument("--clahe", action="store_true", help="CLAHE in preprocessing (stored for the device)")
    parser.add_argument("--val", type=float, default=0.15, help="with --data: validation fraction")
    parser.add_argument("--test", type=float, default=0.15, help="with --data: test fraction")
    parser.add_argument(
        "--init-from", type=Path, default=None, help="start from this run's weights (e.g. trained at a smaller size)"
    )
    parser.add_argument("--cv", type=int, default=0, metavar="K", help="with --data: grouped K-fold cross-validation")
    parser.add_argument("--by", default="patient", choices=("patient", "mass"), help="with --data: the split unit")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _train_one(split: Path, out: Path, settings: RunSettings, verbose: int) -> dict[str, Any]:
    from mammo_train.evaluate import evaluate_run, summary_line
    from mammo_train.trainer import train_run

    started = time.monotonic()
    files, arrays = train_run(split, out, settings, verbose)
    metrics = evaluate_run(files.path, "test", arrays=arrays)
    metrics["train_seconds"] = round(time.monotonic() - started, 1)
    files.metrics.write_text(json.dumps(metrics, indent=2))
    print(f"[{settings.arch}] {summary_line(metrics)}; {metrics['train_seconds']} s")
    return metrics


def comparison_table(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| arch | test AUC | 95% CI | sensitivity | specificity | Brier | ECE | train s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for arch, metrics in results.items():
        overall = metrics["test"]["overall"]
        low, high = overall["roc_auc_ci"]
        lines.append(
            f"| {arch} | {overall['roc_auc']:.3f} | {low:.3f}-{high:.3f} | {overall['sensitivity']:.3f} | "
            f"{overall['specificity']:.3f} | {overall['brier']:.3f} | {overall['ece']:.3f} | "
            f"{metrics['train_seconds']} |"
        )
    return "\n".join(lines) + "\n"


def _cross_validate(args: argparse.Namespace, settings: RunSettings, archs: list[str], verbose: int) -> int:
    from mammo_train.crossval import cross_validate, cv_table

    if args.data is None:
        raise DataError("--cv needs --data (the folds are made from the dataset's groups)")
    summary = cross_validate(
        scan_dataset(args.data),
        args.out,
        settings,
        archs,
        args.cv,
        args.by,
        lambda split, out, chosen: _train_one(split, out, chosen, verbose),
    )
    print(cv_table(summary))
    return 0


def train_main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    if given[:1] == ["detector"]:
        from mammo_train.detector_cli import main as detector_main

        return detector_main(given[1:])
    args = build_train_parser().parse_args(given)
    return run_main("mammo-train", lambda: _train(args))


def _train(args: argparse.Namespace) -> int:
    require_train_extra()
    archs = [arch.strip() for arch in args.arch.split(",") if arch.strip()]
    unknown = [arch for arch in archs if arch not in ARCHITECTURES]
    if unknown or not archs:
        raise DataError(f"unknown --arch {', '.join(unknown)}; choose from {', '.join(ARCHITECTURES)}")
    settings = RunSettings(
        input_size=args.input_size,
        weights=args.weights,
        epochs=args.epochs,
        frozen_epochs=args.frozen_epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        fine_tune_learning_rate=args.fine_tune_lr,
        bn_momentum=args.bn_momentum,
        patience=args.patience,
        seed=args.seed,
        deterministic=args.deterministic,
        eager=args.eager,
        target_sensitivity=args.target_sensitivity,
        strategy=args.strategy,
        train_sources=args.train_sources,
        test_sources=args.test_sources,
        preprocess=PreprocessConfig(input_size=args.input_size, clahe=args.clahe).to_dict(),
        init_from=str(args.init_from.resolve()) if args.init_from else "",
    )
    verbose = 0 if args.quiet else 1
    if args.cv:
        return _cross_validate(args, settings, archs, verbose)
    split = args.split
    if split is None:
        args.out.mkdir(parents=True, exist_ok=True)
        split = args.out / "splits.csv"
        write_splits(make_split(scan_dataset(args.data), args.val, args.test, args.seed, args.by), split)
    if len(archs) == 1:
        _train_one(split, args.out, replace(settings, arch=archs[0]), verbose)
        return 0
    results = {arch: _train_one(split, args.out / arch, replace(settings, arch=arch), verbose) for arch in archs}
    (args.out / "comparison.json").write_text(json.dumps(results, indent=2))
    table = comparison_table(results)
    (args.out / "comparison.md").write_text(table)
    print(table)
    return 0


def eval_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mammo-eval", description="Evaluate a training run (metrics.json, plots).")
    parser.add_argument("run", type=Path)
    parser.add_argument("--split", default="test", choices=("test", "val", "train"))
    parser.add_argument("--target-sensitivity", type=float, default=None)
    parser.add_argument("--gradcam", type=int, default=12, metavar="N", help="overlays to save (0: no Grad-CAM)")
    args = parser.parse_args(argv)

    def evaluate() -> int:
        require_train_extra()
        from mammo_train.evaluate import evaluate_run, summary_line
        from mammo_train.explain import explain_run

        metrics = evaluate_run(args.run, args.split, args.target_sensitivity)
        print(summary_line(metrics, args.split))
        if args.gradcam:
            report = explain_run(args.run, args.split, args.gradcam)
            print(f"Grad-CAM: {json.dumps(report)}")
        return 0

    return run_main("mammo-eval", evaluate)


if __name__ == "__main__":
    sys.exit(train_main())
