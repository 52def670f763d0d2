"""The mass detector: a small fully convolutional network on the detector canvas (`edge_app.detect`) giving a
centre heatmap and a size map, CenterNet-style, trained from scratch on CPU in minutes.

Architecture: five stride-2 stages (a 3x3 convolution and a depthwise-separable one each; 16 to 128 channels, so
the deepest cells see about 200 canvas pixels, 16 cm at 0.8 mm: the largest masses and their surroundings), then a
feature pyramid back to stride 4 (each level upsampled and added to the stage's 1x1 projection), and two 1x1
heads: ``heat`` (sigmoid; its bias starts at a 1% prior so the first steps are not swamped by background) and
``log_radius`` (the mass's radius in canvas pixels, as its log). Plain ReLU and BatchNorm: everything XNNPACK runs
as int8.

Loss: CenterNet's penalty-reduced focal loss on the heatmap (cells near a centre are punished less for firing) and
an L1 loss on the log radius at centre cells, both over the number of masses in the batch (at least one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
from numpy.typing import NDArray

from edge_app.detect import Candidate, DetectorInput, candidates
from edge_app.errors import DataError
from mammo_train.batchnorm import BatchNormReestimator
from mammo_train.detector_data import Canvas, DetectorSettings, augment, targets

PYRAMID_CHANNELS = 64
STAGES = (16, 32, 64, 96, 128)
PRIOR = 0.01
RADIUS_WEIGHT = 0.5
WARMUP_STEPS = 50
CLIP_NORM = 1.0
"""Measured: without warm-up and clipping, one fold in five of the MIAS cross-validation died in its first steps
(every ReLU of the head silent, the heatmap a constant 4e-6, its focal loss 9.2 at the end against 0.9)."""


def _stage(x: keras.KerasTensor, channels: int, name: str) -> keras.KerasTensor:
    x = keras.layers.Conv2D(channels, 3, strides=2, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    x = keras.layers.ReLU(name=f"{name}_relu")(x)
    x = keras.layers.SeparableConv2D(channels, 3, padding="same", use_bias=False, name=f"{name}_sep")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_sep_bn")(x)
    return keras.layers.ReLU(name=f"{name}_sep_relu")(x)


def build_detector(spec: DetectorInput) -> keras.Model:
    """The network for canvases of `spec` (raw 0-255 pixels in, maps at `spec.stride` out)."""
    deepest = 2 ** len(STAGES)
    if spec.stride != 4 or any(side % deepest for side in spec.canvas):
        raise DataError(f"the detector needs stride 4 and a canvas in multiples of {deepest} px, got {spec}")
    inputs = keras.Input((*spec.canvas, 1), name="canvas")
    x = keras.layers.Rescaling(1 / 255, name="scale")(inputs)
    features = []
    for index, channels in enumerate(STAGES, start=1):
        x = _stage(x, channels, f"stage{index}")
        features.append(x)
    top = keras.layers.Conv2D(PYRAMID_CHANNELS, 1, name="lateral5")(features[-1])
    for index in (4, 3, 2):  # back up to stage 2, stride 4
        top = keras.layers.UpSampling2D(2, name=f"up{index}")(top)
        lateral = keras.layers.Conv2D(PYRAMID_CHANNELS, 1, name=f"lateral{index}")(features[index - 1])
        top = keras.layers.Add(name=f"merge{index}")([top, lateral])
    x = keras.layers.Conv2D(PYRAMID_CHANNELS, 3, padding="same", use_bias=False, name="head_conv")(top)
    x = keras.layers.BatchNormalization(name="head_bn")(x)
    x = keras.layers.ReLU(name="head_relu")(x)
    prior = keras.initializers.Constant(-math.log((1 - PRIOR) / PRIOR))
    heat = keras.layers.Conv2D(1, 1, activation="sigmoid", bias_initializer=prior, name="heat")(x)
    log_radius = keras.layers.Conv2D(
        1, 1, bias_initializer=keras.initializers.Constant(math.log(10.0)), name="log_radius"
    )(x)
    return keras.Model(inputs, [heat, log_radius], name="mass_detector")


def detector_loss(
    heat: tf.Tensor, log_radius: tf.Tensor, heat_target: tf.Tensor, radius_target: tf.Tensor, weight: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """(focal, size) losses of one batch; maps are (batch, rows, columns)."""
    heat = tf.clip_by_value(heat, 1e-4, 1 - 1e-4)
    centres = tf.cast(heat_target >= 1.0, tf.float32)
    count = tf.maximum(tf.reduce_sum(centres), 1.0)
    positive = centres * (1 - heat) ** 2 * tf.math.log(heat)
    negative = (1 - centres) * (1 - heat_target) ** 4 * heat**2 * tf.math.log(1 - heat)
    focal = -tf.reduce_sum(positive + negative) / count
    size = tf.reduce_sum(weight * tf.abs(log_radius - radius_target)) / count
    return focal, size


def _batches(
    canvases: Sequence[Canvas], spec: DetectorInput, settings: DetectorSettings, rng: np.random.Generator
) -> list[tuple[NDArray[np.float32], ...]]:
    """One epoch of augmented batches."""
    order = rng.permutation(len(canvases))
    batches = []
    for start in range(0, len(order), settings.batch_size):
        images, heats, radii, weights = [], [], [], []
        for index in order[start : start + settings.batch_size]:
            view, masses = augment(canvases[index], rng)
            heat, radius, weight = targets(masses, spec)
            images.append(view[..., None])
            heats.append(heat)
            radii.append(radius)
            weights.append(weight)
        batches.append(tuple(np.asarray(part, np.float32) for part in (images, heats, radii, weights)))
    return batches


def train_detector(
    canvases: Sequence[Canvas], spec: DetectorInput, settings: DetectorSettings, log: bool = False
) -> tuple[keras.Model, list[dict[str, float]]]:
    """A detector trained on `canvases` (Adam, warmed up, cosine-decayed, its gradients clipped), its BatchNorm
    statistics set on them at the end; and its loss per epoch. A run whose loss did not fall is refused."""
    if not canvases:
        raise DataError("no film to train the detector on")
    keras.utils.set_random_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    model = build_detector(spec)
    steps = settings.epochs * math.ceil(len(canvases) / settings.batch_size)
    warmup = min(WARMUP_STEPS, steps // 2)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, max(1, steps - warmup), warmup_target=settings.learning_rate, warmup_steps=warmup
    )
    optimizer = keras.optimizers.Adam(schedule, global_clipnorm=CLIP_NORM)
    optimizer.build(model.trainable_variables)  # its slots made here: made inside the traced step, it is traced twice

    def eager_step(
        images: tf.Tensor, heat_t: tf.Tensor, radius_t: tf.Tensor, weight: tf.Tensor
    ) -> tuple[tf.Tensor, ...]:
        with tf.GradientTape() as tape:
            heat, log_radius = model(images, training=True)
            focal, size = detector_loss(heat[..., 0], log_radius[..., 0], heat_t, radius_t, weight)
            total = focal + RADIUS_WEIGHT * size
        gradients = tape.gradient(total, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return focal, size

    step = tf.function(eager_step, reduce_retracing=True)
    history = []
    for epoch in range(settings.epochs):
        losses = [step(*batch) for batch in _batches(canvases, spec, settings, rng)]
        focal = float(np.mean([float(loss[0]) for loss in losses]))
        size = float(np.mean([float(loss[1]) for loss in losses]))
        history.append({"epoch": epoch, "focal": focal, "size": size})
        if log:
            print(f"epoch {epoch + 1}/{settings.epochs}: focal {focal:.3f}, size {size:.3f}", flush=True)
    if history[-1]["focal"] >= history[0]["focal"]:
        raise DataError(
            f"the detector did not learn: its focal loss went from {history[0]['focal']:.3f} to "
            f"{history[-1]['focal']:.3f} in {settings.epochs} epochs (try a lower --lr)"
        )
    BatchNormReestimator(model, batch_size=settings.batch_size)(_images(canvases))
    return model, history


def _images(canvases: Sequence[Canvas]) -> NDArray[np.uint8]:
    """The canvases as one batch (n, height, width, 1)."""
    return np.stack([canvas.pixels[..., None] for canvas in canvases])


def detect(
    model: keras.Model, canvases: Sequence[Canvas], spec: DetectorInput, max_candidates: int, min_score: float
) -> list[list[Candidate]]:
    """Each canvas's candidates on its film, as the device reads them (`edge_app.detect.candidates`)."""
    if not canvases:
        return []
    heat, log_radius = model.predict(_images(canvases).astype(np.float32), batch_size=8, verbose=0)
    return [
        candidates(heat[i, ..., 0], np.exp(log_radius[i, ..., 0]), canvas.frame, spec, max_candidates, min_score)
        for i, canvas in enumerate(canvases)
    ]
