"""``mammo-convert RUN_DIR --out BUNDLE``: quantise, export, verify, and only then write the bundle.

The bundle is assembled in a staging folder beside BUNDLE and moved into place with every variant that passed the
fidelity gate; float32 is always made. An int8 file that misses the gate is diagnosed layer by layer and re-converted
with its worst layers in float (within ``--float-budget`` of the MACs) before it is rejected; a rejected variant is
left out and listed in the manifest with its reasons. Only when float32 itself fails is no bundle written (exit 1,
``BUNDLE.rejected-report.json``), so a device can never pick up an unverified model. ``--sign KEY`` signs the
manifest last. ``mammo-convert keygen OUT`` and ``mammo-convert sign BUNDLE --key OUT``: `mammo_convert.signing`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from edge_app.errors import run_main
from edge_app.manifest import VARIANTS
from mammo_convert.recipes import BIAS_CORRECTIONS, DEFAULT_RECIPE, LOGIT_PRECISIONS, RANGE_METHODS, ROUNDINGS
from mammo_train.extra import require_train_extra


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mammo-convert", description=__doc__)
    parser.add_argument("run", type=Path, help="training run directory (mammo-train --out)")
    parser.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    parser.add_argument("--variants", default="int8", help=f"comma list of {', '.join(VARIANTS)} (int8 always made)")
    parser.add_argument("--calibration", type=int, default=300, help="representative images for int8")
    parser.add_argument("--max-auc-drop", type=float, default=None, help="default: the gate's own (convert/gate.py)")
    parser.add_argument("--min-agreement", type=float, default=None, help="default: the gate's own")
    parser.add_argument("--min-heatmap-pearson", type=float, default=None, help="default: the gate's own")
    parser.add_argument(
        "--float-budget",
        type=float,
        default=0.10,
        help="int8 repair: the largest share of the model's MACs that may stay in float (default 0.10; 0: recalibrate "
        "only, no layer in float)",
    )
    parser.add_argument(
        "--int8-ranges",
        choices=RANGE_METHODS,
        default=DEFAULT_RECIPE.ranges,
        help=f"int8: how each activation's range is estimated (default {DEFAULT_RECIPE.ranges}; "
        "convert/mammo_convert/int8.py)",
    )
    parser.add_argument(
        "--int8-bias",
        choices=BIAS_CORRECTIONS,
        default=DEFAULT_RECIPE.bias,
        help=f"int8: bias correction (default {DEFAULT_RECIPE.bias}): weights (each layer's weight rounding), output "
        "(the logit's median error), off",
    )
    parser.add_argument(
        "--int8-percentile",
        type=float,
        default=DEFAULT_RECIPE.percentile,
        help="int8: the percentile of --int8-ranges percentile",
    )
    parser.add_argument(
        "--int8-rounding",
        choices=ROUNDINGS,
        default=DEFAULT_RECIPE.rounding,
        help=f"int8: how weights are rounded to their grid (default {DEFAULT_RECIPE.rounding}): nearest, or gptq "
        "(layer by layer on calibration images; convert/mammo_convert/rounding.py)",
    )
    parser.add_argument(
        "--int8-logit",
        choices=LOGIT_PRECISIONS,
        default=DEFAULT_RECIPE.logit,
        help=f"int8: the layer writing the logit in float or int8, or every dense layer (the head) in float (default "
        f"{DEFAULT_RECIPE.logit}; an int8 logit has one step over its whole calibrated range: "
        "convert/mammo_convert/int8.py)",
    )
    parser.add_argument(
        "--int8-study",
        type=Path,
        metavar="JSON",
        help="also measure every int8 technique alone and together through the gate, and write the table here",
    )
    parser.add_argument(
        "--debug-images", type=int, default=32, help="int8 repair: fidelity images the per-layer diagnosis runs on"
    )
    parser.add_argument(
        "--no-repair",
        action="store_true",
        help="leave an int8 that misses the gate out at once, without the repair search (a quick conversion)",
    )
    parser.add_argument(
        "--force", action="store_true", help="keep variants that fail the gate, unrepaired (the manifest says forced)"
    )
    parser.add_argument(
        "--detector", type=Path, help="a mass detector's run (mammo-train detector --out) to add to the bundle"
    )
    parser.add_argument(
        "--detector-films",
        type=Path,
        help="synthetic films (mammo-data synth --films) to calibrate the detector's int8 and check it on",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model-name", default="mammo-edge")
    parser.add_argument("--model-version", default=None, help="default: the creation time")
    parser.add_argument("--sign", type=Path, metavar="KEY", help="sign the manifest with this key (from keygen)")
    parser.add_argument(
        "--check-python",
        action="append",
        default=[],
        metavar="PYTHON",
        help="another Python (e.g. a tflite-runtime venv) to verify the files with; repeatable",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] in (["keygen"], ["sign"]):  # no TensorFlow needed to make keys or sign a bundle
        from mammo_convert.signing import key_command

        return run_main(f"mammo-convert {arguments[0]}", lambda: key_command(arguments))
    parser = build_parser()
    args = parser.parse_args(arguments)
    if (args.detector is None) != (args.detector_films is None):
        parser.error("--detector and --detector-films go together: the films calibrate and check the detector")

    def convert() -> int:
        require_train_extra()
        from mammo_convert.build import convert_run

        return convert_run(args)

    return run_main("mammo-convert", convert)


if __name__ == "__main__":
    sys.exit(main())
