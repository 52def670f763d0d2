"""When an int8 file misses the fidelity gate: find the layers whose quantisation strays most, and re-convert with
them left in float (selective quantisation), within a budget of the model's MACs.

A layer's error is TFLite's quantisation debugger's per-tensor comparison with float on the same images (each
quantised op fed the same inputs as its float twin). Layers are ranked by noise-to-signal ratio: the power of the
quantisation error against the power of the float activation. The RMSE in quantisation steps is reported beside
it; plain rounding gives about 0.29 (a uniform error over one step), so a value well above that means clipping, but
every layer rounds, and what hurts the answer is rounding that is large against the signal (an activation whose
range is set by rare outliers). The ranking and the MACs each layer costs are written into the conversion report,
and the layers kept in float into the manifest.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from numpy.typing import NDArray


@dataclass(frozen=True)
class LayerError:
    tensor: str  # the tensor the op writes (what the debugger's denylist names)
    op: str
    noise_to_signal: float  # mean squared error against float / mean square of the float activation
    steps_rmse: float  # RMSE against float, in quantisation steps
    macs: int

    def to_dict(self, total_macs: int) -> dict[str, object]:
        return {
            "tensor": self.tensor,
            "op": self.op,
            "noise_to_signal": round(self.noise_to_signal, 6),
            "steps_rmse": round(self.steps_rmse, 4),
            "macs_share": round(self.macs / total_macs, 6) if total_macs else 0.0,
        }


def _noise_to_signal(
    float_values: NDArray[np.float32], quantised: NDArray[np.int8], scale: float, zero_point: int
) -> float:
    """The debugger's per-layer callback: error power over signal power for one image (NaN where the float value is
    not finite; the debugger averages with nanmean)."""
    values = np.asarray(float_values, np.float64)
    if not np.isfinite(values).all():
        return float("nan")
    dequantised = (np.asarray(quantised, np.int32) - zero_point) * scale
    signal = float(np.mean(np.square(values)))
    return float(np.mean(np.square(dequantised - values))) / signal if signal > 0 else 0.0


def _debug_images(images: NDArray[np.uint8]) -> Callable[[], Iterator[list[NDArray[np.float32]]]]:
    def generate() -> Iterator[list[NDArray[np.float32]]]:
        for image in images:
            yield [image[np.newaxis].astype(np.float32)]

    return generate


def layer_errors(calibrated: bytes, debug_images: NDArray[np.uint8], macs: dict[str, int]) -> list[LayerError]:
    """Every quantised tensor's error on `debug_images`, the worst noise-to-signal ratio first. `calibrated` is the
    classifier calibrated and refined as the int8 recipe says (`mammo_convert.int8`), so the layers are ranked under
    the ranges the int8 file has, and no Keras graph is converted again for it."""
    from tensorflow.lite.python import convert

    options = tf.lite.experimental.QuantizationDebugOptions(
        layer_direct_compare_metrics={"noise_to_signal": _noise_to_signal}
    )
    debugger = tf.lite.experimental.QuantizationDebugger(
        quant_debug_model_content=bytes(convert.mlir_quantize(calibrated, enable_numeric_verify=True)),
        debug_dataset=_debug_images(debug_images),
        debug_options=options,
    )
    debugger.run()
    buffer = io.StringIO()
    debugger.layer_statistics_dump(buffer)
    errors = []
    for row in csv.DictReader(io.StringIO(buffer.getvalue())):
        scale = float(row["scale"])
        if scale > 0:
            steps = float(np.sqrt(float(row["mean_squared_error"]))) / scale
            ratio = float(row["noise_to_signal"])
            name = row["tensor_name"]
            errors.append(LayerError(name, row["op_name"], ratio, steps, macs.get(name, 0)))
    return sorted(errors, key=lambda error: -error.noise_to_signal)


def repair_plan(errors: Sequence[LayerError], total_macs: int, budget: float) -> list[list[LayerError]]:
    """The denylists to try, one step at a time: the worst 1, 2, 4, 8... layers, and last the longest run of worst
    layers whose MACs stay within `budget` (a share of the model's); nothing beyond it."""
    spent = np.cumsum([error.macs for error in errors])
    longest = int(np.searchsorted(spent, budget * total_macs, side="right"))
    sizes = [2**power for power in range(longest.bit_length()) if 2**power <= longest]
    if longest and sizes[-1] != longest:
        sizes.append(longest)
    return [list(errors[:size]) for size in sizes]
