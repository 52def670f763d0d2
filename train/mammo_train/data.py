"""From a ``splits.csv`` to arrays and ``tf.data`` pipelines, through the shared ``edge_app`` preprocessing.

Images are preprocessed once (the exact device path) and kept in memory as uint8: the Mendeley set at 224 px is
about 1.2 GB, and decoding PNGs every epoch would cost more than the training step on a small machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from numpy.typing import NDArray
from tqdm import tqdm

from edge_app.preprocess import PreprocessConfig, preprocess
from mammo_train.splits import SplitRow


@dataclass(frozen=True)
class ArraySet:
    """Preprocessed images ``(n, size, size, 1)`` uint8 with labels and the rows they came from."""

    images: NDArray[np.uint8]
    labels: NDArray[np.int32]
    rows: tuple[SplitRow, ...]

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def groups(self) -> list[str]:
        return [row.group for row in self.rows]

    @property
    def sources(self) -> list[str]:
        return [row.source for row in self.rows]


def load_arrays(rows: Sequence[SplitRow], config: PreprocessConfig, desc: str = "images") -> ArraySet:
    size = config.input_size
    images = np.empty((len(rows), size, size, 1), np.uint8)
    for index, row in enumerate(tqdm(rows, desc=f"preprocess {desc}", unit="img", leave=False, disable=None)):
        images[index] = preprocess(row.path, config)
    labels = np.array([row.label for row in rows], np.int32)
    return ArraySet(images, labels, tuple(rows))


def augmenter(seed: int) -> keras.Sequential:
    """Flips, small rotations and zoom, contrast: what a mass crop can look like, nothing it cannot."""
    layers = keras.layers
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal_and_vertical", seed=seed),
            layers.RandomRotation(0.04, fill_mode="reflect", seed=seed + 1),
            layers.RandomZoom((-0.1, 0.1), fill_mode="reflect", seed=seed + 2),
            layers.RandomContrast(0.2, seed=seed + 3),
        ],
        name="augment",
    )


def training_dataset(
    data: ArraySet, batch_size: int, seed: int, augment: bool = True, deterministic: bool = False
) -> tf.data.Dataset:
    """Shuffled (seeded), augmented batches. `deterministic`: the augmentation map runs in order on one thread, so
    its random layers draw their numbers for the same batches every run (in parallel, batches race for them)."""
    parallel = None if deterministic else tf.data.AUTOTUNE
    dataset = tf.data.Dataset.from_tensor_slices((data.images, data.labels.astype(np.float32)))
    dataset = dataset.shuffle(len(data), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=parallel)
    dataset = dataset.batch(batch_size)
    if augment:
        pipeline = augmenter(seed)
        dataset = dataset.map(
            lambda x, y: (tf.clip_by_value(pipeline(x, training=True), 0.0, 255.0), y),
            num_parallel_calls=parallel,
        )
    return dataset.prefetch(tf.data.AUTOTUNE)


def float_batches(images: NDArray[np.uint8], batch_size: int) -> tf.data.Dataset:
    """Images in order, as the model's float32 input, for prediction."""
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(batch_size)
    return dataset.map(lambda x: tf.cast(x, tf.float32)).prefetch(tf.data.AUTOTUNE)
