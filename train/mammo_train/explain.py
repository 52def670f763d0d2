"""The Keras Grad-CAM reference (GradientTape), the one the device's heatmaps are checked against.

Per backbone: weights = spatial mean of d(malignant logit)/d(last conv block), map = relu(sum_k weight_k * A_k);
the maps are fused by `edge_app.gradcam.fused_evidence` (with each backbone's receptive-field offset) and normalised,
the rule the device uses too.
Also the model-parameter randomisation sanity check (Adebayo et al. 2018): a heatmap method that gives the same
maps for a randomised model explains the image, not the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import keras
import numpy as np
import tensorflow as tf
from numpy.typing import NDArray

from edge_app.decode import decode_file
from edge_app.gradcam import evidence_peak, fused_evidence, heatmap_correlation, normalise, overlay, peak_location
from edge_app.model import calibrated_probabilities
from edge_app.preprocess import PreprocessConfig
from mammo_train.data import load_arrays
from mammo_train.layout import read_sidecar
from mammo_train.metrics import peak_in_circle
from mammo_train.models import BACKBONES, backbone_names, build_explainer
from mammo_train.runfiles import RunFiles


@dataclass(frozen=True)
class GradCams:
    """Per-image logits, raw per-backbone maps ``(n, h, w)``, fused heatmaps ``(n, size, size)`` and each fused
    map's peak evidence in logit units (what a bundle's heat scale is measured from)."""

    logits: NDArray[np.float32]
    backbone_maps: tuple[NDArray[np.float32], ...]
    fused: NDArray[np.float32]
    peaks: NDArray[np.float32]


def gradcam(model: keras.Model, images: NDArray[np.uint8], batch_size: int = 16) -> GradCams:
    step = _gradcam_step(build_explainer(model))
    size = images.shape[1]
    logits, maps_per_batch = [], []
    for start in range(0, len(images), batch_size):
        logit, cams = step(tf.cast(images[start : start + batch_size], tf.float32))
        logits.append(logit.numpy()[:, 0])
        maps_per_batch.append([cam.numpy() for cam in cams])
    backbone_maps = tuple(np.concatenate(per_backbone) for per_backbone in zip(*maps_per_batch, strict=True))
    offsets = [BACKBONES[name].centre_offset for name in backbone_names(model)]
    evidence = [fused_evidence([m[i] for m in backbone_maps], size, offsets) for i in range(len(images))]
    fused = np.stack([normalise(each) for each in evidence])
    peaks = np.array([evidence_peak(each) for each in evidence], np.float32)
    return GradCams(np.concatenate(logits), backbone_maps, fused, peaks)


def _gradcam_step(explainer: keras.Model) -> Any:
    """One batch's logits and raw per-backbone maps, as one traced graph: run eagerly, the backbones' forward pass
    went op by op, 14 times slower on the 96 px hybrid (17 s against 1.2 for 128 images)."""

    def step(batch: tf.Tensor) -> tuple[tf.Tensor, list[tf.Tensor]]:
        with tf.GradientTape() as tape:
            logit, *feature_maps = explainer(batch, training=False)
            tape.watch(feature_maps)
            score = tf.reduce_sum(logit)
        gradients = tape.gradient(score, feature_maps)
        cams = [
            tf.nn.relu(tf.reduce_sum(fmap * tf.reduce_mean(grad, axis=(1, 2), keepdims=True), axis=-1))
            for fmap, grad in zip(feature_maps, gradients, strict=True)
        ]
        return logit, cams

    return tf.function(step, reduce_retracing=True)


def randomised_copy(model: keras.Model, seed: int = 1) -> keras.Model:
    """The same architecture with every layer freshly initialised (full randomisation, Adebayo et al.)."""
    keras.utils.set_random_seed(seed)
    return keras.models.clone_model(model)


def _mass_truth(path: Path) -> dict[str, str] | None:
    """The image's row in its source folder's ``masses.csv`` (synthetic and MIAS imports have one)."""
    source_dir = path.parent.parent
    return read_sidecar(source_dir).get(path.relative_to(source_dir).as_posix())


def explain_run(run: Path, split: str = "test", samples: int = 12, seed: int = 0) -> dict[str, Any]:
    """Grad-CAM overlays for a sample of `split` and the sanity figures, into ``RUN_DIR/gradcam/``.

    - peak-in-mass rate: for correctly classified malignant images whose mass position is known, how often the
      fused heatmap's peak lies within the circle enclosing the mass (``radius``: MIAS's truth, a circle enclosing
      the whole abnormality, spicules included), beside the rate a randomly placed peak would reach (the circle's
      share of the image); where the truth also gives ``body_radius`` (synthetic set), the same for the circle
      enclosing the mass body alone, the stricter figure;
    - randomisation check: mean correlation between the trained and a randomised model's heatmaps (must be low).
    """
    files = RunFiles(run)
    settings = files.read_settings()
    metrics = files.read_metrics()
    rows = [row for row in files.split_rows(settings) if row.split == split]
    config = PreprocessConfig.from_dict(settings.preprocess)
    data = load_arrays(rows, config, split)
    model = keras.models.load_model(files.model)
    cams = gradcam(model, data.images)
    probabilities = calibrated_probabilities(cams.logits, metrics.temperature)
    out = files.path / "gradcam"
    out.mkdir(exist_ok=True)
    circles: dict[str, list[tuple[float, float]]] = {"radius": [], "body_radius": []}  # (distance, radius) pairs
    for index in np.flatnonzero((data.labels == 1) & (probabilities >= metrics.threshold)):
        truth = _mass_truth(data.rows[index].path)
        if truth is None:
            continue
        height = decode_file(data.rows[index].path).pixels.shape[0]
        scale = config.input_size / height  # crops are square: model pixels = crop pixels x scale
        x, y = peak_location(cams.fused[index])
        distance = float(np.hypot(x - float(truth["cx"]) * scale, y - float(truth["cy"]) * scale))
        for column, pairs in circles.items():
            if truth.get(column):
                pairs.append((distance, float(truth[column]) * scale))
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.permutation(len(data))[:samples])
    randomised = gradcam(randomised_copy(model, seed + 1), data.images[sample]).fused
    correlations = [heatmap_correlation(cams.fused[i], r) for i, r in zip(sample, randomised, strict=True)]
    for i in sample:
        name = f"{data.rows[i].path.stem}.p{probabilities[i]:.2f}.label{data.labels[i]}.png"
        cv2.imwrite(str(out / name), overlay(data.images[i, :, :, 0], cams.fused[i]))
    mass = peak_in_circle(circles["radius"], config.input_size)
    body = peak_in_circle(circles["body_radius"], config.input_size)
    report = {
        "split": split,
        "malignant_correct_with_truth": len(circles["radius"]),
        "peak_in_mass_rate": None if mass is None else mass.rate,
        "chance_rate": None if mass is None else mass.chance,
        "peak_in_mass_p_value": None if mass is None else mass.p_value,
        "malignant_correct_with_body_truth": len(circles["body_radius"]),
        "peak_in_body_rate": None if body is None else body.rate,
        "body_chance_rate": None if body is None else body.chance,
        "peak_in_body_p_value": None if body is None else body.p_value,
        "randomised_heatmap_correlation_mean": float(np.mean(correlations)),
        "overlays": len(sample),
    }
    (out / "gradcam.json").write_text(json.dumps(report, indent=2))
    return report
