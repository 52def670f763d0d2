"""Full-integer int8 through the TFLite converter's own two halves, with what it leaves out put in between.

The converter calibrates (runs the float graph on the representative images and records each activation's minimum
and maximum over all of them) and then quantises (the MLIR quantiser turns every recorded range into a scale and
zero point, and every weight into per-channel int8). Between the two, this module can:

- **choose each activation's range** from statistics of its own (`recipes.RANGE_METHODS`): the converter's global
  minimum and maximum (one bright image widens every step for all the others), the mean of the per-image minima and
  maxima (what OpenVINO's NNCF does), a percentile of all values, or the range that minimises the expected squared
  quantisation error (rounding inside, clipping outside), from a histogram of each activation;
- **correct biases** (`recipes.BIAS_CORRECTIONS`), folding an error measured on the calibration images into a float
  bias, which the quantiser then carries into int8: ``weights``, for every layer, the shift ``(W_q - W) . E[x]`` its
  weights' rounding alone causes (each input channel's mean measured; Nagel et al. 2019); ``output``, at the layer that
  writes the logit, the median difference between the int8 and the float logit, which is where the errors of the whole
  network add up (rounding noise through a ReLU does not average out: its mean is positive);
- **keep the logit, or the whole dense head, in float** (`recipes.LOGIT_PRECISIONS`): the quantiser leaves the dense
  layer that writes the logit (or every dense layer) in float and dequantises the outputs, so the answer is not
  rounded to the int8 logit's step, nor the two backbones' features to one shared scale (`quantise`).

The pixels and everything computed from them before the first weighted layer (grey to RGB, the backbones'
normalisation, padding) and the model's outputs keep the converter's ranges: a narrower range there would clip
bright pixels or the logit, not only round them (the input's scale stays exactly 1). Nothing else of the converter
changes: with no technique the model answers exactly as the converter's (`tests/test_int8_convert.py`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import flatbuffers
import numpy as np
import tensorflow as tf
from numpy.typing import NDArray

from edge_app.model import get_output, set_input
from mammo_convert.export import RepresentativeData, calibration_runs
from mammo_convert.ranges import TensorStatistics, estimate_range
from mammo_convert.recipes import Int8Recipe
from mammo_convert.rounding import channel_scales, chosen_weights, nearest_step

WEIGHT_OPS = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 0}
"""The ops whose weights the quantiser makes per-channel int8 (symmetric, -127..127), with the weights' channel
axis: their biases are the ones corrected."""


def calibrated_model(float_model: bytes, representative: RepresentativeData) -> bytes:
    """The converter's calibration alone, run over the float32 file (`to_tflite`'s) already converted: the float graph
    with each activation's global min/max over `representative`'s images recorded. The converter's own calibrate-only
    conversion of the Keras model records the same graph and ranges (`tests/test_int8_convert.py`), after converting
    the whole Keras graph again (45 s for the test suite's 64 px hybrid, against 2 s for this), so every
    calibration of one `mammo-convert` run, the repair's included, starts from its one float32 conversion."""
    from tensorflow.lite.python.optimize import calibrator

    return _marked_full_integer(bytes(calibrator.Calibrator(float_model).calibrate(representative)))


def quantise(calibrated: bytes, float_tensors: Sequence[str] = (), logit: str = "int8") -> bytes:
    """The converter's second half on a calibrated model: full-integer int8, uint8 pixels in and int8 out, with the
    ops writing `float_tensors` left in float (the repair's selective quantisation).

    `logit` (`recipes.LOGIT_PRECISIONS`): ``float``, the layer writing the logit stays in float too, and every output
    is float32 (the feature maps dequantised as the device would). An int8 logit has one step over the whole range
    calibration saw, where a trained model's training images reach large logits: 0.27 logit on the test suite's 96 px
    hybrid, 0.03 in probability near its threshold, so an image that close to it could flip on the rounding of the
    last value alone. In float, the layer costs a few hundred multiply-adds and the pixels still go in as uint8.
    ``head``: every dense layer stays in float (`_dense_writers`: the head over the pooled features). The hybrid's
    head reads both backbones' pooled features through one int8 scale, where their ranges differ; on the 224 px
    hybrid that head alone, quantised in an otherwise float network, moved its answers by 0.012 in probability on
    average (agreement 0.981), and leaving it in float took the whole int8 file from 0.967 to 0.979. It costs 0.8 M
    multiply-adds in float against the backbones' 6.7 G."""
    from tensorflow.lite.python import convert

    denylisted = [*float_tensors]
    if logit != "int8":
        graph = _graph(calibrated)
        writers = _logit_writers(graph) if logit == "float" else _dense_writers(graph)
        denylisted += [graph.subgraphs[0].tensors[index].name.decode() for index in writers]
    quantised = convert.mlir_quantize(  # as `TFLiteConverter.convert` calls it, then its buffer deduplication
        calibrated,
        input_data_type=tf.uint8,
        output_data_type=tf.int8 if logit == "int8" else tf.float32,
        denylisted_nodes=denylisted or None,
    )
    return bytes(convert.deduplicate_readonly_buffers(quantised))


def _graph(model: bytes) -> Any:
    """`model`'s flatbuffer as objects (what `refine` and the corrections edit)."""
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils.convert_bytearray_to_object(bytearray(model))


def _logit_writers(graph: Any) -> dict[int, Any]:
    """The weighted ops that write a model output of one value per image (the logit's dense layer), by the output
    tensor's index; not the feature maps, which a convolution may write too."""
    tensors = graph.subgraphs[0].tensors
    outputs = {int(i) for i in graph.subgraphs[0].outputs if int(np.prod(tensors[i].shape[1:])) == 1}
    return {int(op.outputs[0]): op for op, _ in _weighted_ops(graph) if int(op.outputs[0]) in outputs}


def _dense_writers(graph: Any) -> dict[int, Any]:
    """Every dense layer (``FULLY_CONNECTED``) by its output tensor's index: the models' head over the pooled features,
    the logit's layer included (the backbones are convolutions)."""
    codes = graph.operatorCodes
    return {
        int(op.outputs[0]): op for op, _ in _weighted_ops(graph) if _op_name(codes[op.opcodeIndex]) == "FULLY_CONNECTED"
    }


def _marked_full_integer(model: bytes) -> bytes:
    """`model` with its conversion metadata saying full-integer post-training quantisation, as the converter's own
    calibrated and int8 files say (the float32 file it was calibrated from says no optimisation); marked once per
    calibration, as rewriting the flatbuffer costs seconds for the hybrid, and carried through to every int8 file."""
    from tensorflow.lite.python import conversion_metadata_schema_py_generated as conversion
    from tensorflow.lite.tools import flatbuffer_utils

    graph = _graph(model)
    (entry,) = (entry for entry in graph.metadata if entry.name == b"CONVERSION_METADATA")
    buffer = graph.buffers[entry.buffer]
    about = conversion.ConversionMetadataT.InitFromPackedBuf(bytes(buffer.data), 0)
    about.options.modelOptimizationModes = [conversion.ModelOptimizationMode.PTQ_FULL_INTEGER]
    builder = flatbuffers.Builder(0)
    builder.Finish(about.Pack(builder))
    buffer.data = np.frombuffer(bytes(builder.Output()), np.uint8)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(graph))


def int8_model(
    refined: bytes, representative: RepresentativeData, recipe: Int8Recipe, float_tensors: Sequence[str] = ()
) -> bytes:
    """A `calibrated_model` of `representative`'s images, `refine`d as `recipe` says, in full-integer int8, with the
    ops writing `float_tensors` left in float. Refining reads every calibration image again, so every recipe and
    repair attempt on the same images starts from one calibration and one refinement."""
    quantised = quantise(refined, float_tensors, recipe.logit)
    if recipe.bias != "output":
        return quantised
    return quantise(_correct_output_bias(refined, quantised, representative), float_tensors, recipe.logit)


def refine(calibrated: bytes, representative: RepresentativeData, recipe: Int8Recipe) -> bytes:
    """The calibrated model with its ranges re-estimated, its weights rounded (`mammo_convert.rounding`) and its
    biases corrected for weight rounding, as `recipe` says (the output correction needs the quantised model:
    `int8_model` applies it)."""
    if recipe.ranges == "minmax" and recipe.bias != "weights" and recipe.rounding == "nearest":
        return calibrated
    from tensorflow.lite.tools import flatbuffer_utils

    graph = _graph(calibrated)
    subgraph = graph.subgraphs[0]
    activations = _activation_tensors(graph) if recipe.ranges != "minmax" else []
    weighted = _weighted_ops(graph) if recipe.bias == "weights" else []
    means_of = {int(op.inputs[0]) for op, _ in weighted}
    statistics = (
        _statistics(calibrated, representative, activations, means_of, recipe.ranges in ("percentile", "mse"), graph)
        if activations or means_of
        else {}
    )
    if recipe.rounding == "gptq":  # first: weights already on their grid leave weight rounding no error to correct
        _round_weights(graph, calibrated, representative)
    for index in activations:
        low, high = estimate_range(statistics[index], recipe)
        quantization = subgraph.tensors[index].quantization
        quantization.min, quantization.max = np.array([low], np.float32), np.array([high], np.float32)
    for op, axis in weighted:
        _correct_weight_rounding(graph, op, axis, statistics[int(op.inputs[0])].channel_means())
    return bytes(flatbuffer_utils.convert_object_to_bytearray(graph))


def _round_weights(graph: Any, calibrated: bytes, representative: RepresentativeData) -> None:
    """Every convolution's and dense layer's weights onto their int8 grid as `chosen_weights` rounds them (a depthwise
    convolution's channels each see one input: nothing to choose between, none in these backbones)."""
    ops = [op for op, axis in _weighted_ops(graph) if axis == 0]
    weights = [_constant(graph, op.inputs[1]) for op in ops]
    rounded = chosen_weights(calibrated, representative, graph, ops, weights)
    for op, values in zip(ops, rounded, strict=True):
        _set_input_constant(graph, op, 1, values)


def _activation_tensors(graph: Any) -> list[int]:
    """The tensors whose range the quantiser will read and `refine` may change: every op output with a recorded
    range, less the model's outputs and the pixels' own tensors (`_pixel_tensors`)."""
    subgraph = graph.subgraphs[0]
    kept = _pixel_tensors(graph) | {int(i) for i in subgraph.outputs}
    outputs = {int(i) for op in subgraph.operators for i in op.outputs}
    chosen = []
    for index in sorted(outputs - kept):
        quantization = subgraph.tensors[index].quantization
        if quantization is not None and quantization.min is not None and len(quantization.min) == 1:
            chosen.append(index)
    return chosen


def _pixel_tensors(graph: Any) -> set[int]:
    """The model's inputs and every tensor computed from them before any weighted op (grey to RGB, normalisation,
    padding): affine images of the pixels, whose range is the pixels' own."""
    subgraph, codes = graph.subgraphs[0], graph.operatorCodes
    pixels = {int(i) for i in subgraph.inputs}
    for op in subgraph.operators:  # the operators are stored in execution order
        if _op_name(codes[op.opcodeIndex]) not in WEIGHT_OPS and any(int(i) in pixels for i in op.inputs):
            pixels.update(int(i) for i in op.outputs)
    return pixels


def _weighted_ops(graph: Any) -> list[tuple[Any, int]]:
    """(op, its weights' channel axis) for each op the quantiser gives per-channel int8 weights and a bias."""
    subgraph, codes = graph.subgraphs[0], graph.operatorCodes
    chosen = []
    for op in subgraph.operators:
        name = _op_name(codes[op.opcodeIndex])
        has_bias = len(op.inputs) > 2 and op.inputs[2] >= 0
        if name in WEIGHT_OPS and has_bias and _constant(graph, op.inputs[1]) is not None:
            chosen.append((op, WEIGHT_OPS[name]))
    return chosen


def _op_name(code: Any) -> str:
    from tensorflow.lite.python import schema_py_generated as schema

    builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
    names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    return str(names.get(builtin, builtin))


def _constant(graph: Any, index: int) -> NDArray[np.float32] | None:
    tensor = graph.subgraphs[0].tensors[index]
    data = graph.buffers[tensor.buffer].data
    if data is None or len(data) == 0:
        return None
    return np.frombuffer(np.asarray(data, np.uint8).tobytes(), np.float32).reshape(tensor.shape)


def _correct_weight_rounding(graph: Any, op: Any, axis: int, input_means: NDArray[np.float64]) -> None:
    """Subtract from `op`'s float bias the mean shift that rounding its weights to per-channel int8 causes."""
    weights = _constant(graph, op.inputs[1])
    bias = _constant(graph, op.inputs[2])
    assert weights is not None and bias is not None, "a weighted op has constant weights and bias"
    moved = np.moveaxis(weights.astype(np.float64), axis, 0)  # channels first
    flat = moved.reshape(moved.shape[0], -1)
    scale = channel_scales(flat)[:, None]
    error: NDArray[np.float64] = (nearest_step(flat, scale) - flat).reshape(moved.shape)
    if axis == 3:  # depthwise [1, h, w, channels]: each channel sees its own input channel
        shift = error.reshape(error.shape[0], -1).sum(axis=1) * input_means[: error.shape[0]]
    else:  # [out, h, w, in] or [out, in]: every input channel, at every kernel position
        shift = error.reshape(error.shape[0], -1, input_means.shape[0]).sum(axis=1) @ input_means
    _set_input_constant(graph, op, 2, bias.astype(np.float64) - shift)


def _set_input_constant(graph: Any, op: Any, position: int, values: NDArray[np.float64]) -> None:
    """Set the constant `op` reads at input `position` to `values`, for `op` alone. The converter stores equal
    constants once: DenseNet's 58 growth convolutions, bias-free in Keras, all read one tensor of zeros, so a
    correction written into it moved every one of them by the sum of all their shifts. A constant another op or
    tensor reads is first copied into a tensor and buffer of `op`'s own."""
    from tensorflow.lite.python import schema_py_generated as schema

    subgraph = graph.subgraphs[0]
    index = int(op.inputs[position])
    tensor = subgraph.tensors[index]
    readers = sum(int(i) == index for other in subgraph.operators for i in other.inputs)
    same_buffer = sum(other.buffer == tensor.buffer for other in subgraph.tensors)
    if readers > 1 or same_buffer > 1:
        tensor = copy.deepcopy(tensor)
        tensor.name = subgraph.tensors[int(op.outputs[0])].name + b"/input%d" % position
        tensor.buffer = len(graph.buffers)
        graph.buffers.append(schema.BufferT())
        subgraph.tensors.append(tensor)
        op.inputs[position] = len(subgraph.tensors) - 1
    graph.buffers[tensor.buffer].data = np.frombuffer(values.astype(np.float32).tobytes(), np.uint8)


def _correct_output_bias(calibrated: bytes, quantised: bytes, representative: RepresentativeData) -> bytes:
    """`calibrated` with the bias of the layer that writes the logit moved by the median difference between
    `quantised`'s logit and the float one over the calibration images. The median, not the mean: a trained model's
    training images reach logits far from its threshold, where the int8 error is largest and matters least; on the
    224 px hybrid (dense head in float) the mean error was 0.59 logit and the median 0.11, the error of its images
    near the threshold 0.10-0.11, and the mean's correction took agreement from 0.979 to 0.823, the median's to
    0.983."""
    from tensorflow.lite.tools import flatbuffer_utils

    graph = _graph(calibrated)
    subgraph = graph.subgraphs[0]
    writers = _logit_writers(graph)
    if not writers:
        return calibrated
    names = {index: subgraph.tensors[index].name.decode() for index in writers}
    float_values, int8_values = _outputs(calibrated, representative), _outputs(quantised, representative)
    for index, op in writers.items():
        error = np.median(int8_values[names[index]] - float_values[names[index]], axis=0)
        bias = _constant(graph, op.inputs[2])
        assert bias is not None, "a weighted op has a constant bias"
        _set_input_constant(graph, op, 2, bias.astype(np.float64) - error.reshape(-1)[: bias.size])
    return bytes(flatbuffer_utils.convert_object_to_bytearray(graph))


def _outputs(model: bytes, representative: RepresentativeData) -> dict[str, NDArray[np.float64]]:
    """Each output of `model` (by name; dequantised) on every calibration image, one row per image."""
    interpreter = tf.lite.Interpreter(model_content=model)
    interpreter.allocate_tensors()
    names = [detail["name"] for detail in interpreter.get_output_details()]
    rows: dict[str, list[NDArray[np.float64]]] = {name: [] for name in names}
    for batch in representative():
        set_input(interpreter, batch[0])  # the device's own quantising and dequantising
        interpreter.invoke()
        for position, name in enumerate(names):
            rows[name].append(get_output(interpreter, position).astype(np.float64).reshape(-1))
    return {name: np.stack(values) for name, values in rows.items()}


def _statistics(
    calibrated: bytes,
    representative: RepresentativeData,
    activations: Sequence[int],
    means_of: set[int],
    histogram: bool,
    graph: Any,
) -> dict[int, TensorStatistics]:
    """Each tracked tensor's statistics over the calibration images: the calibrated (float) model run with every
    tensor kept."""
    subgraph = graph.subgraphs[0]
    tracked = sorted(set(activations) | means_of)
    statistics = {}
    for index in tracked:
        quantization = subgraph.tensors[index].quantization
        known = quantization is not None and quantization.min is not None and len(quantization.min) == 1
        low, high = (float(quantization.min[0]), float(quantization.max[0])) if known else (0.0, 0.0)
        statistics[index] = TensorStatistics(low, high)
    for interpreter in calibration_runs(calibrated, representative):
        for index in tracked:
            statistics[index].add(
                interpreter.get_tensor(index), histogram and index in activations, channel_mean=index in means_of
            )
    return statistics
