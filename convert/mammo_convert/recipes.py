"""The int8 recipes `mammo-convert` chooses among: how activation ranges are estimated, which bias correction is
applied, whether the logit's layer stays in float (`mammo_convert.int8` does these) and how weights are rounded
(`mammo_convert.rounding`). No TensorFlow here: the command line reads these before the train extra is checked.

The default and the repair order come from measurement (`benchmarks/results/int8-study-96.json`, written by
``mammo-convert --int8-study`` on the test suite's 96 px model; `docs/int8.md` reads it): the logit's dense layer in
float takes that model over the gate at no cost (agreement 0.9722 -> 0.9878 with the converter's ranges), and MSE
ranges with it keep the heatmaps closest (Pearson 0.972 against 0.947) at 0.9861. Correcting the logit's error alone
hurt there (0.9618 with MSE ranges and an int8 logit): with the logit's layer in int8, its error on the training
images that calibrate does not carry over to the images it is judged on. The mean of per-image
extremes moved the heatmaps away. GPTQ rounding with the converter's ranges passes too (0.9722 -> 0.9913 with an int8
logit), so the repair tries it first; it is not the default because it costs a pass over the calibration images and
a factorisation per layer (43 s on the 96 px hybrid) where the default's cheaper file passes already. The weights'
bias correction helps the converter's ranges (0.9878 -> 0.9896 with the float logit, AUC drop 0.0088 -> 0.0056), so
the repair tries it next, but not MSE's (0.9861 -> 0.9826).

The README's 224 px hybrid is where the default falls short (0.967). Measured there (its 576 fidelity images): its
weights alone in int8 keep agreement 0.998, so the error is in the activations, and of those quantised one part at a
time in an otherwise float network, the dense head over the two backbones' pooled features adds noise (agreement
0.981, mean absolute error 0.012 in probability), and ResNet's last two stages and the ops outside the backbones'
blocks (stems, pooling, the feature outputs) add shifts that partly cancel (-0.012, -0.026, +0.040; docs/int8.md).
With the head in float the whole file reaches 0.979 and what is left is a shift (mean error +0.019, mean absolute
0.019), which the output correction by the median takes to 0.983 (by the mean, 0.823: a few training images' far
logits dominate it). So the repair tries that recipe first: it costs one more quantisation and 0.8 M multiply-adds
in float. On the 96 px model it is better than the default on every column too (0.9896 against 0.9861, AUC drop
0.0000 against 0.0025, mean absolute error 0.0051 against 0.0092); it is not the default yet because the gate's
stability over 8 + 8 trained seeds (`gate-stability.json`) was measured with the current one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge_app.errors import DataError

RANGE_METHODS = ("minmax", "mean", "percentile", "mse")
BIAS_CORRECTIONS = ("off", "weights", "output")
ROUNDINGS = ("nearest", "gptq")
LOGIT_PRECISIONS = ("float", "int8", "head")


@dataclass(frozen=True)
class Int8Recipe:
    """How an int8 file is made: the activation ranges' estimator, the bias correction, how weights are rounded and
    whether the logit, or the whole dense head, is computed in float (`mammo_convert.int8.quantise`)."""

    ranges: str = "mse"
    bias: str = "off"
    percentile: float = 99.99
    rounding: str = "nearest"
    logit: str = "float"

    def __post_init__(self) -> None:
        if self.ranges not in RANGE_METHODS:
            raise DataError(f"unknown range method {self.ranges!r}; choose from {', '.join(RANGE_METHODS)}")
        if self.bias not in BIAS_CORRECTIONS:
            raise DataError(f"unknown bias correction {self.bias!r}; choose from {', '.join(BIAS_CORRECTIONS)}")
        if self.rounding not in ROUNDINGS:
            raise DataError(f"unknown weight rounding {self.rounding!r}; choose from {', '.join(ROUNDINGS)}")
        if self.logit not in LOGIT_PRECISIONS:
            raise DataError(f"unknown logit precision {self.logit!r}; choose from {', '.join(LOGIT_PRECISIONS)}")
        if not 50.0 < self.percentile <= 100.0:
            raise DataError(f"the range percentile must be in (50, 100], not {self.percentile}")

    @property
    def label(self) -> str:
        ranges = f"percentile {self.percentile:g}" if self.ranges == "percentile" else self.ranges
        rounding = ", GPTQ rounding" if self.rounding == "gptq" else ""
        logit = {"float": ", logit in float", "head": ", dense head in float"}.get(self.logit, "")
        return f"ranges {ranges}, bias correction {self.bias}{rounding}{logit}"

    def to_dict(self) -> dict[str, Any]:
        figures: dict[str, Any] = {"ranges": self.ranges, "bias": self.bias}
        if self.ranges == "percentile":
            figures["percentile"] = self.percentile
        if self.rounding != "nearest":  # the results written before rounding could be chosen read as nearest
            figures["rounding"] = self.rounding
        if self.logit != "int8":  # and those written before the logit could stay in float, as int8
            figures["logit"] = self.logit
        return figures


DEFAULT_RECIPE = Int8Recipe()
CONVERTERS_OWN = Int8Recipe("minmax", "off", logit="int8")
STUDY_RECIPES = (
    CONVERTERS_OWN,
    Int8Recipe("mean", "off", logit="int8"),
    Int8Recipe("percentile", "off", logit="int8"),
    Int8Recipe("mse", "off", logit="int8"),
    Int8Recipe("minmax", "weights", logit="int8"),
    Int8Recipe("minmax", "output", logit="int8"),
    Int8Recipe("mse", "output", logit="int8"),
    Int8Recipe("minmax", "off", rounding="gptq", logit="int8"),
    Int8Recipe("minmax", "off"),
    Int8Recipe("mse", "off"),
    Int8Recipe("minmax", "weights"),
    Int8Recipe("mse", "weights"),
    Int8Recipe("mse", "off", logit="head"),
    Int8Recipe("mse", "output", logit="head"),
)
"""Each technique alone against the converter's own, then MSE ranges with the output correction, then with the logit
in float (the default), then the weights' bias correction with it, then the whole dense head in float, alone and with
the output correction."""
REPAIR_ORDER = (
    Int8Recipe("mse", "output", logit="head"),
    Int8Recipe("minmax", "off", rounding="gptq"),
    Int8Recipe("minmax", "weights"),
    Int8Recipe("minmax", "off"),
    Int8Recipe("mse", "off"),
    Int8Recipe("mse", "output"),
    Int8Recipe("minmax", "output"),
    CONVERTERS_OWN,
)
"""What the repair tries after the recipe asked for fails, before any layer stays in float: best measured first."""


def repair_recipes(tried: Int8Recipe) -> list[Int8Recipe]:
    """The recipes the repair tries after `tried` failed the gate, in `REPAIR_ORDER`."""
    return [recipe for recipe in REPAIR_ORDER if recipe != tried]
