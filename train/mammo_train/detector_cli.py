"""``mammo-train detector``: measure the mass detector by patient-grouped cross-validation on real films, then train
the one that ships on every film and measure it on the held-out synthetic films.

Writes into ``--out``: ``froc-mias.json`` and ``.png`` (the cross-validation; ``--report`` copies them where the
README quotes them), ``froc-synthetic.json`` and ``.png`` (the shipped detector on the synthetic test films, when
``--films`` is given), ``detector.keras`` and ``detector.json`` (its input, settings, scope and data).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from edge_app.detect import DetectorInput
from edge_app.errors import DataError, run_main
from mammo_train.detector_data import DetectorSettings
from mammo_train.extra import require_train_extra

SYNTHETIC_TEST_SHARE = 0.25


def _canvas(text: str) -> tuple[int, int]:
    try:
        height, width = (int(side) for side in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--canvas is HEIGHTxWIDTH, e.g. 320x256, got {text!r}") from exc
    return height, width


def build_parser() -> argparse.ArgumentParser:
    defaults, spec = DetectorSettings(), DetectorInput()
    parser = argparse.ArgumentParser(prog="mammo-train detector", description=__doc__)
    parser.add_argument("--mias", type=Path, help="MIAS films with Info.txt: cross-validated by patient")
    parser.add_argument(
        "--films", type=Path, help="synthetic films (mammo-data synth --films): training and a test split"
    )
    parser.add_argument("--out", type=Path, required=True, help="run directory")
    parser.add_argument("--folds", type=int, default=5, help="patient-grouped folds on --mias (0: no cross-validation)")
    parser.add_argument("--report", type=Path, help="also copy froc-mias.json and its plot into this folder")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.learning_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--spacing-mm", type=float, default=spec.spacing_mm, help="the canvas's pixel spacing")
    parser.add_argument("--canvas", type=_canvas, default=spec.canvas, help="HEIGHTxWIDTH in canvas pixels")
    parser.add_argument("--quiet", action="store_true")
    return parser


def _command(argv: Sequence[str]) -> str:
    return " ".join(["mammo-train", "detector", *argv])


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    require_train_extra()
    from mammo_train.detector import detect, train_detector
    from mammo_train.detector_cv import cross_validate, outcome, report, write_report
    from mammo_train.detector_data import describe, load_canvas, mias_films, synthetic_films
    from mammo_train.froc import FP_RATES, HIT_RULE, froc_points

    if args.mias is None and args.films is None:
        raise DataError("give --mias (real films) or --films (synthetic films), or both")
    spec = DetectorInput(args.spacing_mm, args.canvas)
    settings = DetectorSettings(args.epochs, args.batch_size, args.lr, args.seed)
    real, left_out = mias_films(args.mias) if args.mias else ([], {})
    synthetic = synthetic_films(args.films) if args.films else []
    held_out = synthetic[: round(len(synthetic) * SYNTHETIC_TEST_SHARE)] if len(synthetic) > 1 else []
    synthetic_train = synthetic[len(held_out) :]
    args.out.mkdir(parents=True, exist_ok=True)
    command = _command(argv)
    if real and args.folds:
        outcomes, folds, fold_of = cross_validate(real, synthetic_train, spec, settings, args.folds, not args.quiet)
        values = report(outcomes, real, left_out, folds, fold_of, spec, settings, command)
        title = f"Mass detector on MIAS, {args.folds}-fold cross-validation by patient"
        write_report(values, outcomes, args.out / "froc-mias.json", title)
        print("MIAS by patient: " + _points_line(values["points"]))
        if args.report is not None:
            args.report.mkdir(parents=True, exist_ok=True)
            for name in ("froc-mias.json", "froc-mias.png"):
                shutil.copy2(args.out / name, args.report / name)
    training = [load_canvas(film, spec) for film in [*real, *synthetic_train]]
    model, history = train_detector(training, spec, settings, log=not args.quiet)
    model.save(args.out / "detector.keras")
    if held_out:
        canvases = [load_canvas(film, spec) for film in held_out]
        found = detect(model, canvases, spec, settings.max_candidates, settings.min_score)
        outcomes = [outcome(canvas, candidates) for canvas, candidates in zip(canvases, found, strict=True)]
        points = froc_points(outcomes, FP_RATES, seed=settings.seed)
        values = {
            "data": describe(held_out, {}),
            "grouped_by": "film (each synthetic film its own patient)",
            "hit_rule": HIT_RULE,
            "points": [point.to_json() for point in points],
            "command": command,
        }
        write_report(values, outcomes, args.out / "froc-synthetic.json", "Shipped detector on held-out synthetic films")
        print("synthetic test films: " + _points_line(values["points"]))
    films = [*real, *synthetic_train]
    spacings = sorted({film.spacing_mm for film in films})
    detector = {
        "input": spec.to_dict(),
        "settings": settings.to_dict(),
        "scope": {"film_spacing_mm": [spacings[0], spacings[-1]]},
        "data": describe(films, left_out),
        "history": history,
        "command": command,
    }
    (args.out / "detector.json").write_text(json.dumps(detector, indent=1) + "\n")
    print(f"detector written to {args.out / 'detector.keras'}")
    return 0


def _points_line(points: Sequence[dict[str, object]]) -> str:
    return ", ".join(f"{point['sensitivity']:.2f} at {point['fp_per_film']:g} FP/film" for point in points)


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    return run_main("mammo-train detector", lambda: run(args, argv))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
