"""Training one architecture into a run directory.

Phases: (1) backbones frozen, head trained (only with pretrained weights: frozen random features teach nothing);
(2) fine-tuning: with pretrained weights the top block (``conv5``) of each backbone at a lower rate, BatchNorm kept
frozen; from scratch, everything at the base rate. Validation AUC (scikit-learn, on the whole validation split,
after re-estimating BatchNorm statistics) drives early stopping and the best checkpoint.
"""

from __future__ import annotations

import platform
from dataclasses import replace
from pathlib import Path
from typing import Any

import keras
import numpy as np
import sklearn
import tensorflow as tf
from sklearn.metrics import roc_auc_score
from sklearn.utils.class_weight import compute_class_weight

from edge_app.errors import DataError, MissingInputError
from edge_app.fsutil import sha256_of
from edge_app.preprocess import PreprocessConfig
from mammo_train.batchnorm import BatchNormReestimator
from mammo_train.data import ArraySet, float_batches, load_arrays, training_dataset
from mammo_train.layout import training_scope
from mammo_train.models import build_model, set_backbones_trainable
from mammo_train.plots import plot_learning_curve
from mammo_train.runfiles import RunFiles, RunSettings, select_sources
from mammo_train.splits import read_splits, write_splits


class ValidationAUC(keras.callbacks.Callback):  # type: ignore[misc]
    """Fix BatchNorm statistics, then put the validation split's ROC AUC into the epoch logs as ``val_auc``."""

    def __init__(self, train: ArraySet, val: ArraySet, bn_images: int, batch_size: int, seed: int) -> None:
        super().__init__()
        rng = np.random.default_rng(seed)
        chosen = rng.permutation(len(train))[:bn_images]
        self._bn_images = train.images[np.sort(chosen)]
        self._val = val
        self._batch_size = batch_size
        self._reestimate: BatchNormReestimator | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._reestimate is None:
            self._reestimate = BatchNormReestimator(self.model)
        self._reestimate(self._bn_images)
        scores = self.model.predict(float_batches(self._val.images, self._batch_size), verbose=0)[:, 0]
        auc = roc_auc_score(self._val.labels, scores) if len(set(self._val.labels)) == 2 else 0.5
        if logs is not None:
            logs["val_auc"] = float(auc)


def choose_strategy(name: str) -> tf.distribute.Strategy:
    """`auto`: MirroredStrategy on several GPUs, else the default; or `mirrored`, `default` explicitly."""
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    if name in ("auto", "default"):
        return tf.distribute.get_strategy()
    raise DataError(f"unknown strategy {name!r}: use auto, default or mirrored")


def tool_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
    }


def warm_start(model: keras.Model, run: Path) -> None:
    """Start from another run's weights (same architecture, any input size: progressive resizing).

    Convolutions, BatchNorm and the head after global pooling do not depend on the input size, so a model trained
    quickly at 96 px can be fine-tuned at 224 px instead of starting from scratch at 7.6 s per step.
    """
    previous = RunFiles(run)
    if not previous.model.is_file():
        raise MissingInputError(f"--init-from {run}: no model.keras there (not a finished training run)")
    source = keras.models.load_model(previous.model)
    if source.name != model.name:
        raise DataError(f"--init-from {run}: it holds a {source.name} model, this run trains {model.name}")
    model.set_weights(source.get_weights())


def _fit_phase(
    model: keras.Model,
    train: ArraySet,
    settings: RunSettings,
    learning_rate: float,
    epochs: tuple[int, int],
    callbacks: list[keras.callbacks.Callback],
    verbose: int,
) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.AUC(name="auc")],
        run_eagerly=settings.eager,  # tracing the two backbones' training step costs minutes, whatever the data
    )
    # Adam's slots made now, not inside the first traced step: variables created there make TensorFlow trace the
    # step a second time (the hybrid's 1156 slots: 34 s of a 75 s first epoch at 64 px).
    model.optimizer.build(model.trainable_variables)
    weights = compute_class_weight("balanced", classes=np.array([0, 1]), y=train.labels)
    model.fit(
        training_dataset(train, settings.batch_size, settings.seed, deterministic=settings.deterministic),
        epochs=epochs[1],
        initial_epoch=epochs[0],
        class_weight={0: float(weights[0]), 1: float(weights[1])},
        callbacks=callbacks,
        verbose=verbose,
    )


def train_run(
    split_file: Path, out: Path, settings: RunSettings, verbose: int = 1
) -> tuple[RunFiles, dict[str, ArraySet]]:
    """Train `settings.arch` on `split_file` into `out`; returns the run and the loaded arrays (for evaluation)."""
    files = RunFiles(Path(out))
    files.path.mkdir(parents=True, exist_ok=True)
    if files.history.exists():
        files.history.unlink()
    config = PreprocessConfig.from_dict(settings.preprocess) if settings.preprocess else PreprocessConfig()
    config = replace(config, input_size=settings.input_size)
    rows = read_splits(split_file)
    selected = select_sources(rows, settings.train_sources, settings.test_sources)
    scope = training_scope(row.path for row in selected if row.split == "train")
    settings = replace(settings, preprocess=config.to_dict(), scope=scope.to_dict(), split_sha256=sha256_of(split_file))
    write_splits(rows, files.splits)
    files.write_settings(settings, tool_versions())
    keras.utils.set_random_seed(settings.seed)
    if settings.deterministic:
        tf.config.experimental.enable_op_determinism()  # process-wide; TensorFlow offers no way back
    pretrained = settings.weights != "none"
    strategy = choose_strategy(settings.strategy)
    with strategy.scope():  # built first: a missing weight file or download fails before data is loaded
        model = build_model(
            settings.arch,
            settings.input_size,
            settings.weights,
            None if pretrained else settings.bn_momentum,
            settings.seed,
        )
    if settings.init_from:
        warm_start(model, Path(settings.init_from))
    arrays = {
        name: load_arrays([row for row in selected if row.split == name], config, name) for name in ("train", "val")
    }
    for name, data in arrays.items():
        if len(set(data.labels.tolist())) < 2:
            raise DataError(f"the {name} split needs both classes (has {len(data)} images)")
    train, val = arrays["train"], arrays["val"]
    # One set of callbacks across both phases, so the best checkpoint is the best of the whole run.
    callbacks = [
        ValidationAUC(train, val, settings.bn_images, settings.batch_size, settings.seed),
        keras.callbacks.ModelCheckpoint(files.model, monitor="val_auc", mode="max", save_best_only=True),
        keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=settings.patience),
        keras.callbacks.CSVLogger(files.history, append=True),
    ]
    with strategy.scope():
        frozen = settings.frozen_epochs if pretrained else 0
        if frozen:
            set_backbones_trainable(model, False)
            _fit_phase(model, train, settings, settings.learning_rate, (0, frozen), callbacks, verbose)
            set_backbones_trainable(model, True, top_prefix="conv5")
            rate = settings.fine_tune_learning_rate
        else:
            rate = settings.learning_rate
        _fit_phase(model, train, settings, rate, (frozen, frozen + settings.epochs), callbacks, verbose)
    plot_learning_curve(files.history, files.path / "learning_curve.png")
    return files, arrays
