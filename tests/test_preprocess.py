"""The model-input path shared by training and the device."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.errors import ConfigError
from edge_app.preprocess import PreprocessConfig, pad_to_square, preprocess, to_model_input


def test_output_is_the_model_input(tmp_path: Path) -> None:
    image = np.random.default_rng(1).integers(0, 256, (300, 200), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), image)
    result = preprocess(tmp_path / "a.png", PreprocessConfig(input_size=64))
    assert result.shape == (64, 64, 1)
    assert result.dtype == np.uint8
    assert result.flags.c_contiguous


def test_pad_rule_keeps_aspect_and_centres() -> None:
    tall = np.full((10, 4), 200, np.uint8)
    square = pad_to_square(tall)
    assert square.shape == (10, 10)
    assert square[:, :3].max() == 0 and square[:, 7:].max() == 0  # 3 left, 3 right
    assert square[:, 3:7].min() == 200
    wide = np.full((3, 8), 9, np.uint8)
    padded = pad_to_square(wide)
    assert padded.shape == (8, 8) and padded[:2].max() == 0 and padded[5:].max() == 0  # extra row at the bottom


def test_clahe_changes_contrast_deterministically() -> None:
    image = (np.add.outer(np.arange(64), np.arange(64)) // 4 + 60).astype(np.uint8)
    plain = to_model_input(image, PreprocessConfig(input_size=64))
    enhanced = to_model_input(image, PreprocessConfig(input_size=64, clahe=True, clahe_clip_limit=3.0))
    assert not np.array_equal(plain, enhanced)
    assert enhanced.std() > plain.std()
    np.testing.assert_array_equal(
        enhanced, to_model_input(image, PreprocessConfig(input_size=64, clahe=True, clahe_clip_limit=3.0))
    )


@pytest.mark.parametrize(
    ("field", "value"), [("input_size", 8), ("clahe_clip_limit", 0.0), ("clahe_tile_grid", 0), ("max_pixels", 0)]
)
def test_invalid_config_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        PreprocessConfig(**{field: value})  # type: ignore[arg-type]


def test_config_round_trip_rejects_unknown_keys() -> None:
    config = PreprocessConfig(input_size=96, clahe=True)
    assert PreprocessConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="gamma"):
        PreprocessConfig.from_dict({**config.to_dict(), "gamma": 2.0})


@pytest.mark.parametrize(
    ("values", "accepted"),
    [
        ({"input_size": 16}, True),
        ({"input_size": 15}, False),
        ({"input_size": 2048}, True),
        ({"input_size": 2049}, False),
        ({"input_size": 16, "clahe_tile_grid": 16}, True),
        ({"input_size": 16, "clahe_tile_grid": 17}, False),
        ({"clahe_tile_grid": 1}, True),
        ({"clahe_clip_limit": 0.01}, True),
        ({"max_pixels": 1}, True),
    ],
)
def test_each_preprocessing_limit_at_its_edge(values: dict[str, object], accepted: bool) -> None:
    if accepted:
        assert PreprocessConfig(**values)  # type: ignore[arg-type]
    else:
        with pytest.raises(ConfigError):
            PreprocessConfig(**values)  # type: ignore[arg-type]


def test_preprocessing_refuses_a_file_over_its_pixel_limit(tmp_path: Path) -> None:
    from edge_app.errors import TooManyPixelsError

    path = tmp_path / "big.png"
    cv2.imwrite(str(path), (np.arange(40 * 40) % 251).astype(np.uint8).reshape(40, 40))
    assert preprocess(path, PreprocessConfig(input_size=32)).shape == (32, 32, 1)
    with pytest.raises(TooManyPixelsError, match=r"40x40 = 1,600 pixels, over the limit of 1,599"):
        preprocess(path, PreprocessConfig(input_size=32, max_pixels=1599))


@pytest.mark.parametrize(("side", "interpolation"), [(64, cv2.INTER_AREA), (32, cv2.INTER_AREA), (20, cv2.INTER_CUBIC)])
def test_shrinking_averages_and_enlarging_interpolates_smoothly(side: int, interpolation: int) -> None:
    """INTER_AREA when the square is at least the input size (no aliasing), INTER_CUBIC when it is smaller."""
    gray = ((np.add.outer(np.arange(side) * 7, np.arange(side) * 3)) % 256).astype(np.uint8)
    expected = cv2.resize(gray, (32, 32), interpolation=interpolation)
    np.testing.assert_array_equal(to_model_input(gray, PreprocessConfig(input_size=32))[:, :, 0], expected)


def test_the_pixel_limit_is_inclusive_and_a_one_pixel_wide_image_is_an_image() -> None:
    from edge_app.decode import decode_bytes
    from edge_app.errors import TooManyPixelsError

    column = cv2.imencode(".png", np.arange(5, dtype=np.uint8).reshape(5, 1) * 50)[1].tobytes()
    assert decode_bytes(column, max_pixels=5).pixels.shape == (5, 1)
    with pytest.raises(TooManyPixelsError, match=r"^the image is 1x5 = 5 pixels, over the limit of 4$"):
        decode_bytes(column, max_pixels=4)
    row = cv2.imencode(".png", np.arange(5, dtype=np.uint8).reshape(1, 5) * 50)[1].tobytes()
    assert decode_bytes(row).pixels.tolist() == [[0, 50, 100, 150, 200]]
