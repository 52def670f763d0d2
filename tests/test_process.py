"""The service's process settings: OpenCV left on one thread."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import pytest

from edge_app.service import process


@pytest.fixture
def opencv_threads() -> Iterator[None]:
    before = cv2.getNumThreads()
    yield
    cv2.setNumThreads(before)


@pytest.mark.usefixtures("opencv_threads")
def test_the_lanes_settings_apply() -> None:
    cv2.setNumThreads(2)
    process.for_lanes()
    assert cv2.getNumThreads() == 1
