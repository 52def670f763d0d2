"""When an int8 file misses the fidelity gate: find the layers whose quantisation strays most, and re-convert with
them left in float (selective quantisation), within a budget of the model's MACs.

A layer's error is TFLite's quantisation debugger's per-tensor comparison with float on the same images: the RMSE
of the quantised output against the float one, in units of its quantisation step. Plain rounding gives about 0.29
(the RMSE of a uniform error over one step); a layer well above that lost range or resolution. The ranking and the
MACs each layer costs are written into the conversion report, and the layers kept in float into the manifest.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from numpy.typing import NDArray

from mammo_convert.export import RepresentativeData, int8_converter


@dataclass(frozen=True)
class LayerError:
    tensor: str  # the tensor the op writes (what the debugger's denylist names)
    op: str
    steps_rmse: float  # RMSE against float, in quantisation steps
    macs: int

    def to_dict(self, total_macs: int) -> dict[str, object]:
        return {
            "tensor": self.tensor,
            "op": self.op,
            "steps_rmse": round(self.steps_rmse, 4),
            "macs_share": round(self.macs / total_macs, 6) if total_macs else 0.0,
        }


def _debug_images(images: NDArray[np.uint8]) -> Callable[[], Iterator[list[NDArray[np.float32]]]]:
    def generate() -> Iterator[list[NDArray[np.float32]]]:
        for image in images:
            yield [image[np.newaxis].astype(np.float32)]

    return generate


def layer_errors(
    classifier: keras.Model,
    representative: RepresentativeData,
    debug_images: NDArray[np.uint8],
    macs: dict[str, int],
) -> list[LayerError]:
    """Every quantised tensor's error on `debug_images`, worst first."""
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=int8_converter(classifier, representative), debug_dataset=_debug_images(debug_images)
    )
    debugger.run()
    buffer = io.StringIO()
    debugger.layer_statistics_dump(buffer)
    errors = []
    for row in csv.DictReader(io.StringIO(buffer.getvalue())):
        scale = float(row["scale"])
        if scale > 0:
            steps = float(np.sqrt(float(row["mean_squared_error"]))) / scale
            errors.append(LayerError(row["tensor_name"], row["op_name"], steps, macs.get(row["tensor_name"], 0)))
    return sorted(errors, key=lambda error: -error.steps_rmse)


def selective_int8(
    classifier: keras.Model,
    representative: RepresentativeData,
    debug_images: NDArray[np.uint8],
    float_tensors: Sequence[str],
) -> bytes:
    """int8 with the ops writing `float_tensors` left in float (their inputs and outputs float too)."""
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(float_tensors))
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=int8_converter(classifier, representative),
        debug_dataset=_debug_images(debug_images[:1]),
        debug_options=options,
    )
    return bytes(debugger.get_nondebug_quantized_model())


def repair_plan(errors: Sequence[LayerError], total_macs: int, budget: float) -> list[list[LayerError]]:
    """The denylists to try, one step at a time: the worst 1, 2, 4, 8... layers, and last the longest run of worst
    layers whose MACs stay within `budget` (a share of the model's); nothing beyond it."""
    spent = np.cumsum([error.macs for error in errors])
    longest = int(np.searchsorted(spent, budget * total_macs, side="right"))
    sizes = [2**power for power in range(longest.bit_length()) if 2**power <= longest]
    if longest and sizes[-1] != longest:
        sizes.append(longest)
    return [list(errors[:size]) for size in sizes]
