"""Multiply-accumulate count of a TFLite model, read from its own graph (not typed in).

Counted: CONV_2D (output elements x kernel height x kernel width x input channels), DEPTHWISE_CONV_2D (output
elements x kernel area), FULLY_CONNECTED (output elements x input features), TRANSPOSE_CONV and BATCH_MATMUL. Adds,
pools and activations are a rounding error beside them (under 1% for DenseNet/ResNet) and are left out, as the
usual "MACs" of a CNN do. Benchmarks report the total; the conversion weighs what it keeps in float by each op's
share.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _elements(shape: Any) -> int:
    return int(np.prod([int(v) for v in shape])) if len(shape) else 1


def macs_per_op(interpreter: Any) -> dict[str, int]:
    """Each counted op's MACs, keyed by the name of the tensor it writes (an allocated interpreter)."""
    details = interpreter.get_tensor_details()
    shapes = {detail["index"]: detail["shape"] for detail in details}
    names = {detail["index"]: detail["name"] for detail in details}
    found: dict[str, int] = {}
    for op in interpreter._get_ops_details():
        name = op["op_name"]
        inputs = [int(i) for i in op["inputs"]]
        outputs = [int(i) for i in op["outputs"]]
        if not outputs or outputs[0] not in shapes:
            continue
        out = shapes[outputs[0]]
        if name in ("CONV_2D", "TRANSPOSE_CONV"):
            weights = shapes[inputs[1]]  # (out_channels, kh, kw, in_channels)
            macs = _elements(out) * int(np.prod(weights[1:]))
        elif name == "DEPTHWISE_CONV_2D":
            weights = shapes[inputs[1]]  # (1, kh, kw, channels)
            macs = _elements(out) * int(weights[1]) * int(weights[2])
        elif name == "FULLY_CONNECTED":
            weights = shapes[inputs[1]]  # (units, features)
            macs = _elements(out) * int(weights[-1])
        elif name == "BATCH_MATMUL":
            macs = _elements(out) * int(shapes[inputs[0]][-1])
        else:
            continue
        found[names[outputs[0]]] = macs
    return found


def count_macs(interpreter: Any) -> int:
    """MACs of one invoke of an allocated interpreter (LiteRT or tflite-runtime)."""
    return sum(macs_per_op(interpreter).values())
