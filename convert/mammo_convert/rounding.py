"""Weights rounded by choice, not to the nearest step: GPTQ (Frantar et al. 2023), layer by layer on calibration
images, onto the converter's own per-channel grid.

The quantiser gives each output channel of a convolution or dense layer the scale ``max|w| / 127`` and rounds every
weight to the nearest step of it. Rounded alone, the errors of one output's weights add up over its inputs; GPTQ
rounds the weights one input at a time and moves the ones not yet rounded to cancel the error made so far, weighted
by how the layer's inputs vary together on the calibration images (``X^T X``, the Hessian of the layer's squared
output error). Each channel keeps its largest weight exactly (so the converter computes the same scale) and every
other weight lands on that scale's grid within -127..127: the quantiser then reproduces the chosen rounding exactly
(`tests/test_int8_convert.py` checks it does).

`docs/int8.md` has what it measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from mammo_convert.export import RepresentativeData, calibration_runs

HESSIAN_IMAGES = 96
"""Calibration images (at most) the layers' input correlations are measured on. On the test suite's 96 px hybrid 16
images (more positions than any of its layers has inputs) left 9 of the 576 fidelity decisions flipped and 96 left 5;
the cost grows with each image and each pixel (the 96 px hybrid: 43 s for 96 images on 2 cores)."""
DAMPING = 0.01
"""Added to the Hessian's diagonal, as a share of its mean (GPTQ's own default): inputs that never vary still give
an invertible matrix."""
BLOCK = 128
"""Inputs rounded before their error is carried to the rest at once (GPTQ's lazy batch update)."""


def channel_scales(flat: NDArray[np.float64]) -> NDArray[np.float64]:
    """Each channel's (row's) step on the quantiser's symmetric int8 grid: its largest magnitude over 127 (1 for an
    all-zero channel, which any step keeps at zero)."""
    scale = np.asarray(np.abs(flat).max(axis=1) / 127.0, np.float64)
    scale[scale == 0] = 1.0
    return scale


def nearest_step(values: NDArray[np.float64], scale: NDArray[np.float64]) -> NDArray[Any]:
    """`values` rounded to the nearest step of `scale` within -127..127 steps: what the quantiser writes."""
    return np.asarray(np.clip(np.rint(values / scale), -127, 127) * scale, np.float64)


def chosen_weights(
    calibrated: bytes, representative: RepresentativeData, graph: Any, ops: Sequence[Any], weights: Sequence[Any]
) -> list[NDArray[np.float64]]:
    """The float `weights` of `ops` (convolutions ``[out, h, w, in]`` and dense layers ``[out, in]`` of `graph`, the
    flatbuffer of `calibrated`) rounded onto their per-channel int8 grid GPTQ's way, each in its own shape."""
    hessians = _hessians(calibrated, representative, graph, ops)
    return [
        gptq(values.reshape(values.shape[0], -1), hessians[int(op.outputs[0])]).reshape(values.shape)
        for op, values in zip(ops, weights, strict=True)
    ]


def gptq(weights: NDArray[Any], hessian: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
    """`weights` ``[channels, inputs]`` on their per-channel int8 grid (scale: each channel's largest magnitude over
    127, that weight kept as it is), rounded input by input with the error carried to the inputs not yet rounded."""
    remaining = weights.astype(np.float64)
    channels, inputs = remaining.shape
    largest = np.abs(remaining).argmax(axis=1)
    kept = remaining[np.arange(channels), largest].copy()
    scale = channel_scales(remaining)
    damped = hessian.astype(np.float64)  # a copy, in float64: the factorisations need it
    unused = np.diag(damped) == 0
    damped[unused, unused] = 1.0
    remaining[:, unused] = 0.0
    damped[np.diag_indices(inputs)] += DAMPING * float(np.mean(np.diag(damped)))
    inverse = _inverse_factor(damped)
    owners = {int(column): np.flatnonzero(largest == column) for column in np.unique(largest)}
    rounded = np.zeros_like(remaining)
    for first in range(0, inputs, BLOCK):
        last = min(first + BLOCK, inputs)
        block = remaining[:, first:last].copy()
        errors = np.zeros_like(block)
        factor = inverse[first:last, first:last]
        for step in range(last - first):
            column = first + step
            chosen = nearest_step(block[:, step], scale)
            if column in owners:
                own = owners[column]
                chosen[own] = kept[own]
            rounded[:, column] = chosen
            errors[:, step] = (block[:, step] - chosen) / factor[step, step]
            block[:, step:] -= errors[:, step, np.newaxis] * factor[step, step:]
        remaining[:, last:] -= errors @ inverse[first:last, last:]
    return rounded


def _inverse_factor(hessian: NDArray[np.float64]) -> NDArray[np.float64]:
    """The upper triangular U with ``U^T U`` the inverse of `hessian`: the reversed matrix's Cholesky factor L gives
    ``H = R R^T`` with R = reversed L (upper), so U is R's inverse, one triangular inversion (a third of the work of
    inverting H and factoring the inverse)."""
    from scipy.linalg import cholesky, lapack

    lower = cholesky(hessian[::-1, ::-1], lower=True, check_finite=False)
    inverse, info = lapack.dtrtri(lower, lower=1)
    if info != 0:
        raise ArithmeticError(f"the damped Hessian's Cholesky factor is singular (LAPACK dtrtri info {info})")
    return np.ascontiguousarray(np.asarray(inverse, np.float64)[::-1, ::-1])


def _hessians(
    calibrated: bytes, representative: RepresentativeData, graph: Any, ops: Sequence[Any]
) -> dict[int, NDArray[np.float32]]:
    """``X^T X`` of each op's inputs as its weights see them (a convolution's: every kernel-sized window), summed over
    the first `HESSIAN_IMAGES` calibration images, keyed by the op's output tensor.

    A layer's windows wait until there are as many as it has inputs, then enter its sum in one product: a deep
    layer sees a few positions per image, and adding its whole Hessian once per image (4608 x 4608 for ResNet50's
    last convolutions) cost more than all the products together."""
    tensors = graph.subgraphs[0].tensors
    sums: dict[int, NDArray[np.float32]] = {}
    waiting: dict[int, list[NDArray[np.float32]]] = {}
    for interpreter in calibration_runs(calibrated, representative, HESSIAN_IMAGES):
        for op in ops:
            shape = tensors[op.inputs[1]].shape
            values = np.asarray(interpreter.get_tensor(op.inputs[0]), np.float32)
            rows = _windows(values[0], op, shape) if len(shape) == 4 else values.reshape(-1, shape[-1])
            key = int(op.outputs[0])
            batch = waiting.setdefault(key, [])
            batch.append(rows)
            if sum(len(part) for part in batch) >= rows.shape[1]:
                _add_products(sums, key, batch)
    for key, batch in waiting.items():
        if batch:
            _add_products(sums, key, batch)
    return sums


def _add_products(sums: dict[int, NDArray[np.float32]], key: int, batch: list[NDArray[np.float32]]) -> None:
    """Add ``X^T X`` of the rows in `batch` to the sum under `key`, and empty `batch`."""
    rows = batch[0] if len(batch) == 1 else np.concatenate(batch)
    product = rows.T @ rows
    if key in sums:
        sums[key] += product
    else:
        sums[key] = product
    batch.clear()


def _windows(image: NDArray[np.float32], op: Any, shape: Sequence[int]) -> NDArray[np.float32]:
    """The convolution's input windows ``[positions, h * w * in]``, in its weights' order (TFLite's SAME padding:
    the odd pixel after)."""
    options = op.builtinOptions
    _, kernel_h, kernel_w, _ = shape
    step_h, step_w = options.strideH, options.strideW
    dilation_h, dilation_w = options.dilationHFactor, options.dilationWFactor
    span_h, span_w = (kernel_h - 1) * dilation_h + 1, (kernel_w - 1) * dilation_w + 1
    height, width, _ = image.shape
    if options.padding == 0:  # SAME
        pad_h = max((-(-height // step_h) - 1) * step_h + span_h - height, 0)
        pad_w = max((-(-width // step_w) - 1) * step_w + span_w - width, 0)
        image = np.pad(image, ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    spans = sliding_window_view(image, (span_h, span_w), axis=(0, 1))  # [rows, columns, in, span_h, span_w]
    windows = spans[::step_h, ::step_w, :, ::dilation_h, ::dilation_w]
    return np.ascontiguousarray(windows.transpose(0, 1, 3, 4, 2)).reshape(-1, kernel_h * kernel_w * image.shape[2])
