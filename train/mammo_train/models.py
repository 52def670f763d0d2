"""The hybrid DenseNet121 + ResNet50 classifier and its single-backbone baselines.

Every model takes raw 0-255 grayscale pixels, shape ``(size, size, 1)`` float32 (exactly what
``edge_app.preprocess`` gives, cast), and does the rest inside the graph: gray to three channels, then each
backbone's own ImageNet normalisation (DenseNet: "torch" mode, scale to [0, 1] then mean/std; ResNet50: "caffe"
mode, BGR mean subtraction, which for gray input equals subtracting the BGR means per channel).

Stable layer names other parts rely on:
- ``densenet121`` / ``resnet50``: nested backbone sub-models whose *output is the last convolutional block*
  (DenseNet121's final ``relu``, 1024 channels; ResNet50's ``conv5_block3_out``, 2048 channels). Grad-CAM reads
  these. Nesting also keeps the two backbones' layer names from clashing.
- ``features``: pooled features concatenated; ``head_dense`` (relu), ``head_dropout``; ``logit`` (one unit,
  linear); ``probability`` (sigmoid of the logit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from edge_app.errors import DataError, MammoEdgeError, MissingInputError
from mammo_train.runfiles import ARCHITECTURES

HEAD_UNITS = 256
HEAD_DROPOUT = 0.3
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@dataclass(frozen=True)
class Backbone:
    """A backbone and where its last conv block's cells really look.

    `centre_offset`: input pixels from a cell's nominal centre to its receptive-field centre. Each stride-2 stage
    that samples the top-left of its window (a 7x7/2 stem, a 3x3/2 max-pool, a 1x1/2 shortcut) moves it half a
    stride up-left: ResNet50 0.5 + 1 + 2 + 4 + 8 = 15.5 px, DenseNet121 (2x2 average-pool transitions, centred)
    0.5 + 1 = 1.5 px. Measured by input gradients at 224 px: 15.4 and 1.2 px.
    """

    name: str
    factory: Callable[..., keras.Model]
    feature_layer: str
    channels: int
    centre_offset: float


BACKBONES = {
    "densenet121": Backbone("densenet121", keras.applications.DenseNet121, "relu", 1024, -1.5),
    "resnet50": Backbone("resnet50", keras.applications.ResNet50, "conv5_block3_out", 2048, -15.5),
}


class WeightsUnavailableError(MammoEdgeError, RuntimeError):
    """ImageNet weights could not be fetched; the message names the alternatives."""


def backbones_of(arch: str) -> tuple[str, ...]:
    if arch == "hybrid":
        return ("densenet121", "resnet50")
    if arch in BACKBONES:
        return (arch,)
    raise DataError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHITECTURES)}")


def normalisation(backbone: str) -> tuple[list[float], list[float]]:
    """Each backbone's own ImageNet normalisation of 0-255 RGB input, as per-channel (mean, variance)."""
    if backbone == "densenet121":
        return [255.0 * m for m in IMAGENET_MEAN_RGB], [(255.0 * s) ** 2 for s in IMAGENET_STD_RGB]
    return list(CAFFE_MEAN_BGR), [1.0, 1.0, 1.0]


def _normaliser(backbone: str) -> keras.layers.Layer:
    mean, variance = normalisation(backbone)
    return keras.layers.Normalization(mean=mean, variance=variance, name=f"{backbone}_imagenet_norm")


def _backbone_weights(backbone: str, weights: str) -> str | None:
    """`imagenet` (Keras downloads and caches), `none`, or a local folder holding `<backbone>*.h5` files."""
    if weights == "none":
        return None
    if weights == "imagenet":
        return "imagenet"
    directory = Path(weights)
    if not directory.is_dir():
        raise MissingInputError(f"--weights {weights}: not imagenet, none, or a folder of local weight files")
    candidates = sorted(directory.glob(f"{backbone}*.h5"))
    if not candidates:
        raise MissingInputError(
            f"no weight file for {backbone} in {directory} (expected e.g. {backbone}_notop.weights.h5 "
            "as saved by keras.applications with include_top=False)"
        )
    return str(candidates[0])


def build_backbone(backbone: str, input_size: int, weights: str = "none") -> Any:
    """A backbone sub-model from normalised RGB input to its last conv block."""
    spec = BACKBONES[backbone]
    source = _backbone_weights(backbone, weights)
    try:
        base = spec.factory(include_top=False, weights=source, input_shape=(input_size, input_size, 3))
    except Exception as exc:  # Keras raises several kinds for an unreachable download
        if source != "imagenet":
            raise
        raise WeightsUnavailableError(
            f"ImageNet weights for {backbone} could not be downloaded ({type(exc).__name__}: {exc}). "
            "Offline, use --weights none (train from scratch) or --weights PATH (a folder with local "
            f"{backbone}*.h5 files)."
        ) from exc
    return keras.Model(base.input, base.get_layer(spec.feature_layer).output, name=backbone)


def build_model(
    arch: str = "hybrid",
    input_size: int = 224,
    weights: str = "none",
    bn_momentum: float | None = None,
    seed: int = 0,
) -> keras.Model:
    """The classifier; `bn_momentum` overrides the backbones' BatchNorm momentum (0.9 suits small batches)."""
    keras.utils.set_random_seed(seed)
    pixels = keras.Input((input_size, input_size, 1), name="pixels")
    rgb = keras.layers.Concatenate(name="gray_to_rgb")([pixels, pixels, pixels])
    pooled = []
    for backbone in backbones_of(arch):
        net = build_backbone(backbone, input_size, weights)
        if bn_momentum is not None:
            for layer in net.layers:
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.momentum = bn_momentum
        feature_map = net(_normaliser(backbone)(rgb))
        pooled.append(keras.layers.GlobalAveragePooling2D(name=f"{backbone}_pool")(feature_map))
    features = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name="features")(pooled)
    hidden = keras.layers.Dense(HEAD_UNITS, activation="relu", name="head_dense")(features)
    hidden = keras.layers.Dropout(HEAD_DROPOUT, name="head_dropout")(hidden)
    logit = keras.layers.Dense(1, name="logit")(hidden)
    probability = keras.layers.Activation("sigmoid", name="probability")(logit)
    return keras.Model(pixels, probability, name=arch)


def backbone_names(model: keras.Model) -> tuple[str, ...]:
    """The backbone sub-models present in `model`, in build order."""
    return tuple(layer.name for layer in model.layers if layer.name in BACKBONES)


def set_backbones_trainable(model: keras.Model, trainable: bool, top_prefix: str | None = None) -> None:
    """Freeze or unfreeze the backbones; with `top_prefix` ("conv5"), only layers from that block are opened.

    BatchNorm layers inside pretrained backbones stay frozen while fine-tuning (inference mode), the usual practice
    that keeps ImageNet statistics from being wrecked by small batches.
    """
    for name in backbone_names(model):
        net = model.get_layer(name)
        net.trainable = True
        for layer in net.layers:
            opened = trainable and (top_prefix is None or layer.name.startswith(top_prefix))
            if top_prefix is not None and isinstance(layer, keras.layers.BatchNormalization):
                opened = False
            layer.trainable = opened


def build_explainer(model: keras.Model) -> keras.Model:
    """The same weights rewired to output ``[logit, feature_map per backbone...]`` (inference: no dropout).

    Grad-CAM needs the last conv block's maps and the logit in one graph; the layers are shared with `model`, so
    nothing is copied and the explainer always matches the classifier.
    """
    pixels = keras.Input(model.input.shape[1:], name="pixels")
    rgb = model.get_layer("gray_to_rgb")([pixels, pixels, pixels])
    names = backbone_names(model)
    maps = [model.get_layer(name)(model.get_layer(f"{name}_imagenet_norm")(rgb)) for name in names]
    pooled = [model.get_layer(f"{name}_pool")(feature_map) for name, feature_map in zip(names, maps, strict=True)]
    features = pooled[0] if len(pooled) == 1 else model.get_layer("features")(pooled)
    logit = model.get_layer("logit")(model.get_layer("head_dense")(features))
    return keras.Model(pixels, [logit, *maps], name=f"{model.name}_explainer")
