"""The models the test session trains and converts, each built by this script in a child process of its own.

``python tests/modelbuild.py run NAME OUT`` trains recipe NAME into ``OUT/run`` (its synthetic data in ``OUT/data``,
its split in ``OUT/splits.csv``); ``python tests/modelbuild.py bundle NAME OUT`` converts ``OUT/run`` into
``OUT/bundle``. The session fixtures (tests/conftest.py) run it under a time budget of its own, so building a model
is never charged to the test that happened to ask for it first, and TensorFlow's process-wide settings (op
determinism) never leak into the test worker.

The recipes:
- ``learning``: the learning check, a model that actually learns (96 px, 4 epochs); its int8 goes through the
  product's unchanged gate, recalibration included.
- ``shuffled``: the same with labels shuffled between groups: it must not learn.
- ``plumbing``: a model for the tests that need a bundle, not a good model (the daemon, the benchmarks, deployment,
  the conversion's interface): the whole training path on 64 px patches in 2 epochs, eagerly (tracing the training
  step would cost more than the training), converted without the repair search. Its 2x2 feature maps still give
  every region a heatmap. Its conversion also writes the int8 study (``OUT/int8-study.json``: every recipe through
  the gate, from the one calibration), which the conversion's tests read instead of converting again.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mammo_train.layout import scan_dataset
from mammo_train.splits import make_split, write_splits
from mammo_train.synth import SynthSpec, generate


@dataclass(frozen=True)
class Recipe:
    """Synthetic data, how it is split (by original mass) and how the hybrid is trained and converted."""

    per_class: int
    size: int
    epochs: int
    batch_size: int
    seed: int
    data_seed: int
    calibration: int
    convert: tuple[str, ...]  # the rest of the `mammo-convert` arguments
    shuffle_labels: bool = False
    eager: bool = False  # `mammo-train --eager`: no traced training step (faster on a tiny dataset)
    copies: int = 1
    int8_study: bool = False  # `mammo-convert --int8-study OUT/int8-study.json`
    signed: bool = False  # `mammo-convert --sign OUT/vendor-key` (made by `mammo-convert keygen`; OUT/vendor-key.pub)
    val: float = 0.2
    test: float = 0.25

    def train_arguments(self, split: Path, out: Path) -> list[str]:
        """`mammo-train`'s arguments for this recipe (deterministic: the same weights every run on one machine)."""
        return [
            "--split",
            str(split),
            "--out",
            str(out),
            "--arch",
            "hybrid",
            "--input-size",
            str(self.size),
            "--weights",
            "none",
            "--epochs",
            str(self.epochs),
            "--batch-size",
            str(self.batch_size),
            "--lr",
            "1e-3",
            "--seed",
            str(self.seed),
            "--deterministic",
            "--quiet",
            *(["--eager"] if self.eager else []),
        ]


LEARNING = Recipe(
    per_class=80,
    size=96,
    epochs=4,
    batch_size=16,
    seed=0,
    data_seed=0,
    calibration=96,
    # The default gate; its repair stops after recalibrating (no layer in float): the selective repair's attempts
    # would double the suite's time, and its reach over many seeds is what `mammo-bench gate --recipe suite` measures
    # (benchmarks/results/gate-stability.json).
    convert=("--float-budget", "0"),
)
RECIPES = {
    "learning": LEARNING,
    "shuffled": replace(LEARNING, shuffle_labels=True),
    "plumbing": Recipe(
        per_class=24,
        size=64,
        epochs=2,
        batch_size=8,
        seed=3,
        data_seed=5,
        calibration=32,
        convert=("--no-repair",),
        eager=True,
        int8_study=True,
        signed=True,
    ),
}


def tool(name: str) -> str:
    """A console script of this environment (the one running this script)."""
    return str(Path(sys.executable).with_name(name))


def make_data(recipe: Recipe, out: Path) -> Path:
    """The recipe's synthetic patches and split (by original mass; labels shuffled between groups if asked)."""
    spec = SynthSpec(per_class=recipe.per_class, size=recipe.size, seed=recipe.data_seed, copies=recipe.copies)
    generate(out / "data", spec)
    rows = make_split(scan_dataset(out / "data"), recipe.val, recipe.test, 0, "mass")
    if recipe.shuffle_labels:  # copies still share their label: there is nothing left to learn
        groups = sorted({row.group for row in rows})
        label_of = {row.group: row.label for row in rows}
        permuted = np.random.default_rng(0).permutation([label_of[group] for group in groups])
        shuffled = dict(zip(groups, permuted, strict=True))
        rows = [replace(row, label=int(shuffled[row.group])) for row in rows]
    write_splits(rows, out / "splits.csv")
    return out / "splits.csv"


def train(recipe: Recipe, out: Path) -> Path:
    split = make_data(recipe, out)
    subprocess.run([tool("mammo-train"), *recipe.train_arguments(split, out / "run")], check=True)
    return out / "run"


def convert(recipe: Recipe, out: Path) -> Path:
    """`mammo-convert` of ``OUT/run`` (int8 and float32), verified in the tflite-runtime venv when there is one."""
    checked = os.environ.get("MAMMO_TEST_TFLITE_PYTHON")
    arguments = [str(out / "run"), "--out", str(out / "bundle"), "--variants", "int8,float32"]
    arguments += ["--calibration", str(recipe.calibration), *recipe.convert]
    arguments += ["--check-python", checked] if checked else []
    arguments += ["--int8-study", str(out / "int8-study.json")] if recipe.int8_study else []
    if recipe.signed:
        key = out / "vendor-key"
        if not key.exists():
            subprocess.run([tool("mammo-convert"), "keygen", str(key)], check=True)
        arguments += ["--sign", str(key)]
    subprocess.run([tool("mammo-convert"), *arguments], check=True)
    return out / "bundle"


def main(argv: list[str]) -> int:
    what, name, out = argv
    recipe = RECIPES[name]
    (train if what == "run" else convert)(recipe, Path(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
