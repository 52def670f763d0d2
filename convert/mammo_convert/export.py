"""Keras -> TFLite: the classifier variants and the closed-form Grad-CAM head.

Design (measured, see the closing note of the conversion issue): the classifier outputs its malignant logit *and*
each backbone's last-conv-block feature maps; a tiny float32 ``gradcam_head`` model turns those maps into Grad-CAM
maps. For a global-average-pooled head ``logit = w2 . relu(W1 f + b1) + b2`` with ``f`` the pooled maps, the
Grad-CAM channel weights are exact without any gradient op:
``d logit / d A_k(i, j) = (W1^T (w2 * [W1 f + b1 > 0]))_k / (h * w)``. So the device runs no Flex op and no second
pass through the backbones: "probability + heatmap" costs one classifier invoke plus a head of a few thousand
multiply-adds, and one float head serves every classifier variant (int8 included).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops
from numpy.typing import NDArray

from edge_app.errors import DataError
from mammo_train.models import backbone_names, build_explainer

RepresentativeData = Callable[[], Iterator[list[NDArray[np.float32]]]]


def calibration_runs(
    calibrated: bytes, representative: RepresentativeData, limit: int | None = None
) -> Iterator[tf.lite.Interpreter]:
    """The calibrated (still float) model run on each calibration image in turn (the first `limit`), every tensor
    kept: yielded after each run, for what the int8 refinements measure inside the network."""
    interpreter = tf.lite.Interpreter(model_content=calibrated, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    (entry,) = interpreter.get_input_details()
    for count, batch in enumerate(representative()):
        if count == limit:
            return
        interpreter.set_tensor(entry["index"], batch[0])
        interpreter.invoke()
        yield interpreter


class GradCamHead(keras.layers.Layer):  # type: ignore[misc]
    """Closed-form Grad-CAM maps from feature maps, for a pooled + dense(relu) + dense(1) head (see module doc)."""

    def __init__(self, kernel: NDArray[Any], bias: NDArray[Any], logit_kernel: NDArray[Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._kernel = np.asarray(kernel, np.float32)
        self._bias = np.asarray(bias, np.float32)
        self._logit_row = np.asarray(logit_kernel, np.float32)[:, 0]

    def call(self, maps: list[Any]) -> list[Any]:
        pooled = [ops.mean(feature_map, axis=(1, 2)) for feature_map in maps]
        features = pooled[0] if len(pooled) == 1 else ops.concatenate(pooled, axis=-1)
        pre_activation = ops.matmul(features, self._kernel) + self._bias
        active = ops.cast(ops.greater(pre_activation, 0.0), "float32")
        feature_gradient = ops.matmul(active * self._logit_row, ops.transpose(self._kernel))
        cams, start = [], 0
        for feature_map in maps:
            height, width, channels = feature_map.shape[1:]
            weights = feature_gradient[:, start : start + channels] / float(height * width)
            start += channels
            cams.append(ops.maximum(ops.sum(feature_map * weights[:, None, None, :], axis=-1), 0.0))
        return cams


def classifier_model(model: keras.Model) -> keras.Model:
    """What the device's classifier file holds: pixels -> [logit, feature maps...]."""
    return build_explainer(model)


def gradcam_head_model(model: keras.Model) -> keras.Model:
    """Feature maps (one input per backbone) -> one Grad-CAM map per backbone."""
    maps = [keras.Input(model.get_layer(name).output.shape[1:], name=f"{name}_maps") for name in backbone_names(model)]
    dense, logit = model.get_layer("head_dense"), model.get_layer("logit")
    kernel, bias = (np.asarray(w) for w in dense.get_weights())
    head = GradCamHead(kernel, bias, np.asarray(logit.get_weights()[0]), name="gradcam")
    cams = head(maps)
    outputs = [
        keras.layers.Identity(name=f"{name}_cam")(cam) for name, cam in zip(backbone_names(model), cams, strict=True)
    ]
    return keras.Model(maps, outputs, name="gradcam_head")


def int8_converter(model: keras.Model, representative: RepresentativeData) -> tf.lite.TFLiteConverter:
    """Full-integer int8 (uint8 pixels in, int8 out), builtin ops only, the converter's way end to end (the
    classifier's int8 goes through `mammo_convert.int8` instead, which this reproduces without a technique)."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.int8
    return converter


def to_tflite(model: keras.Model, variant: str, representative: RepresentativeData | None = None) -> bytes:
    """Convert with the builtin op set only (no Flex: the device has no TensorFlow)."""
    if variant == "int8":
        if representative is None:
            raise DataError("full-integer int8 needs a representative dataset")
        return bytes(int8_converter(model, representative).convert())
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if variant == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant != "float32":
        raise DataError(f"unknown variant {variant!r}")
    return bytes(converter.convert())


METADATA_NAME = "mammo_edge"


def embed_metadata(model: bytes, payload: dict[str, Any]) -> bytes:
    """Add a ``mammo_edge`` metadata entry (JSON: labels, preprocessing, where normalisation happens) to a TFLite file.

    Metadata buffers are never read by the interpreter, so this costs nothing at run time; it lets anyone holding
    only the .tflite file see what it expects and what it answers. (tflite-support's standard metadata writer
    predates this TensorFlow, so the entry is a named JSON buffer, readable with `read_metadata`.)
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    graph = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(payload, sort_keys=True).encode(), np.uint8)
    graph.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(graph.buffers) - 1
    graph.metadata = [*(graph.metadata or []), entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(graph))


def read_metadata(model: bytes) -> dict[str, Any]:
    """The ``mammo_edge`` entry written by `embed_metadata`."""
    from tensorflow.lite.tools import flatbuffer_utils

    graph = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    for entry in graph.metadata or []:
        name = entry.name.decode() if isinstance(entry.name, bytes) else entry.name
        if name == METADATA_NAME:
            loaded: dict[str, Any] = json.loads(bytes(graph.buffers[entry.buffer].data).decode())
            return loaded
    raise DataError(f"no {METADATA_NAME} metadata in this model")
