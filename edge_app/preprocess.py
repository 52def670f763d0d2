"""The one preprocessing path from a scan file to the exact array the model consumes.

Training (`train`) and the device (`edge_app`) both call `preprocess`, and the model bundle's manifest carries the
`PreprocessConfig` used in training, so the device sees exactly what the model was trained on.

Steps, in order: decode to 8-bit grayscale (`edge_app.decode`), pad to a square, resize to the model input, then
optional CLAHE.
- Aspect rule: the shorter side is padded symmetrically with black (0) until the image is square, so a mass is
  never distorted or cut off; odd padding puts the extra pixel at the bottom/right. Mass crops are near-square, so
  the padding is usually a few pixels.
- Resize: `INTER_AREA` when shrinking (no aliasing of fine spicules), `INTER_CUBIC` when enlarging.
- CLAHE runs after the resize, at model resolution, so its tiles cover the same fraction of the image whatever the
  scan's original resolution was, and it costs the same for every input.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_app.decode import DEFAULT_MAX_PIXELS, Gray8, decode_file
from edge_app.errors import ConfigError
from edge_app.strict import checked_fields


@dataclass(frozen=True)
class PreprocessConfig:
    """Everything that decides the model input; stored in the manifest and checked by the device."""

    input_size: int = 224
    clahe: bool = False
    clahe_clip_limit: float = 2.0
    clahe_tile_grid: int = 8
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        if not 16 <= self.input_size <= 2048:
            raise ConfigError(f"input_size must be 16..2048, got {self.input_size}")
        if self.clahe_clip_limit <= 0:
            raise ConfigError(f"clahe_clip_limit must be > 0, got {self.clahe_clip_limit}")
        if not 1 <= self.clahe_tile_grid <= self.input_size:
            raise ConfigError(f"clahe_tile_grid must be 1..input_size, got {self.clahe_tile_grid}")
        if self.max_pixels < 1:
            raise ConfigError(f"max_pixels must be positive, got {self.max_pixels}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PreprocessConfig:
        return cls(**checked_fields(cls, values, "preprocessing", ConfigError))


def pad_to_square(gray: Gray8) -> Gray8:
    """Pad the shorter side with black, symmetrically (extra pixel bottom/right)."""
    height, width = gray.shape
    side = max(height, width)
    top = (side - height) // 2
    left = (side - width) // 2
    padded = cv2.copyMakeBorder(gray, top, side - height - top, left, side - width - left, cv2.BORDER_CONSTANT, value=0)
    return np.asarray(padded, dtype=np.uint8)


def to_model_input(gray: Gray8, config: PreprocessConfig) -> Gray8:
    """Turn a decoded grayscale image into the model input: `(size, size, 1)` uint8, raw 0-255 pixels."""
    square = pad_to_square(gray)
    size = config.input_size
    interpolation = cv2.INTER_AREA if square.shape[0] >= size else cv2.INTER_CUBIC
    resized = cv2.resize(square, (size, size), interpolation=interpolation)
    if config.clahe:
        clahe = cv2.createCLAHE(
            clipLimit=config.clahe_clip_limit, tileGridSize=(config.clahe_tile_grid, config.clahe_tile_grid)
        )
        resized = clahe.apply(resized)
    return np.ascontiguousarray(resized, dtype=np.uint8)[:, :, np.newaxis]


def preprocess(path: Path, config: PreprocessConfig) -> Gray8:
    """Decode `path` and return the exact array the model consumes (see module docstring)."""
    return to_model_input(decode_file(path, config.max_pixels).pixels, config)
