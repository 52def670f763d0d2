"""Pictures pinned to the byte: the synthetic masses every demo, benchmark and CI model is made from, and the overlay a
clinician opens. Any change to how they are drawn changes these digests; when a change is meant, check the new
picture by eye (`docs/full-field-overlay.png` is one) and update the digest here in the same commit.

The masses come out the same under every NumPy and OpenCV this project runs with (checked: NumPy 1.26 with OpenCV
4.11, NumPy 2.4 with OpenCV 5.0). The overlay's text and cubic resizing are drawn differently by other OpenCV
releases, so, as matplotlib does with its FreeType-pinned images, its digests hold for the OpenCV they were taken
with and the test says so when another one is installed. (The heat blend became OpenCV's `blendLinear`, nine times
faster: the digests moved by rounding, no pixel by more than one level. Heat on a picture smaller than the view is
blended at the picture's own size, then enlarged: the digests moved again, mean change 0.04 levels, 12 at most.)"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest

from edge_app.gradcam import overlay
from edge_app.overlay import RegionView, render
from edge_app.regions import Box
from edge_app.samples import render_mass


def _digest(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(str(array.shape).encode() + str(array.dtype).encode() + np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


SAMPLE_DIGESTS = {  # (seed, malignant): eight seeds, so a change that some seeds happen not to show, others do
    (0, False): "1fbb880afd108239",
    (0, True): "340565b54cbb3000",
    (1, False): "1562e0d11e2b9597",
    (1, True): "ca9d37d984c4ac2b",
    (2, False): "cee7f49d68517b6f",
    (2, True): "2702daf12e5bc5dc",
    (3, False): "942ef17a060157fa",
    (3, True): "2bfa417cd928d662",
    (4, False): "027c403e6019d5b9",
    (4, True): "c3c275a524dad69b",
    (5, False): "09649e2630615dd5",
    (5, True): "8cea0104400e3b54",
    (6, False): "41b1f2696732c3db",
    (6, True): "8bfd4a9e421d54e8",
    (7, False): "1ff21be3f6b22092",
    (7, True): "0f48fb07818c8b20",
}


def test_the_synthetic_masses_are_exactly_reproducible() -> None:
    found = {}
    for seed, malignant in SAMPLE_DIGESTS:
        mass = render_mass(np.random.default_rng(seed), 96, malignant)
        assert mass.body.sum() > 0 and (mass.lesion >= mass.body).all()  # the body lies inside the lesion
        found[seed, malignant] = _digest(mass.image, mass.body, mass.lesion)
    assert found == SAMPLE_DIGESTS


def _heat(side: int, peak: tuple[int, int]) -> np.ndarray:
    rows, columns = np.mgrid[0:side, 0:side]
    return np.exp(-((columns - peak[0]) ** 2 + (rows - peak[1]) ** 2) / (2 * (side / 6) ** 2)).astype(np.float32)


def _film() -> np.ndarray:
    rows, columns = np.mgrid[0:300, 0:420]
    return ((rows * 3 + columns * 2) % 200 + 30).astype(np.uint8)


OVERLAY_OPENCV = "5.0.0"


def test_the_overlay_is_exactly_reproducible() -> None:
    if cv2.__version__ != OVERLAY_OPENCV:
        pytest.skip(f"overlay digests were taken with OpenCV {OVERLAY_OPENCV}; this is {cv2.__version__}")
    film = _film()
    circle = RegionView(
        "A",
        "A  p=0.912  malignant",
        Box(80, 90, 140, 150),
        (110.0, 120.0, 30.0),
        Box(50, 60, 170, 180),
        film[60:180, 50:170],
        _heat(120, (70, 40)),
    )
    box = RegionView(
        "B",
        "B  p=0.103  benign",
        Box(330, -10, 430, 60),
        None,
        Box(310, -40, 450, 100),
        np.zeros((140, 140), np.uint8),
        _heat(140, (20, 100)),
    )
    unexplained = RegionView(
        "C", "C  p=0.500  benign", Box(10, 250, 40, 290), None, Box(0, 240, 50, 290), film[240:290, 0:50], None
    )
    picture = render(film, [circle, box, unexplained])
    assert picture.dtype == np.uint8 and picture.shape[2] == 3
    assert _digest(picture) == "0e4b7f8ac77c0e57"  # an older bundle: each region's heat to its own peak
    scaled = render(film, [circle, box, unexplained], heat_scale=1.25)
    assert _digest(scaled) == "9e10be92ae21ad8d" and not np.array_equal(scaled, picture)  # the legend says 1.25 logit
    assert _digest(render(film[:60, :60], [])) == "54ddb67f930e047d"  # a small patch, enlarged, with nothing marked
    assert _digest(overlay(film[:64, :64], _heat(8, (2, 5)))) == "53b226efb2237a94"


def test_many_regions_fill_columns_beside_a_tall_film() -> None:
    if cv2.__version__ != OVERLAY_OPENCV:
        pytest.skip(f"overlay digests were taken with OpenCV {OVERLAY_OPENCV}; this is {cv2.__version__}")
    rows, columns = np.mgrid[0:1200, 0:500]
    film = ((rows + 2 * columns) % 180 + 40).astype(np.uint8)  # tall: scaled to 1024 rows, three zooms a column
    views = []
    for index in range(7):
        x, y = 40 + 60 * index, 100 + 150 * index
        window = Box(x - 40, y - 40, x + 40, y + 40)
        views.append(
            RegionView(
                f"R{index}",
                f"R{index}  p=0.{index}00  benign",
                Box(x - 20, y - 20, x + 20, y + 20),
                (x, y, 20.0) if index % 2 else None,
                window,
                film[y - 40 : y + 40, x - 40 : x + 40],
                _heat(80, (10 * index, 70 - 10 * index)),
            )
        )
    edge = RegionView(
        "E",
        "E  p=0.990  malignant",
        Box(470, 1180, 500, 1200),
        None,
        Box(460, 1170, 520, 1230),
        np.zeros((60, 60), np.uint8),
        _heat(60, (30, 30)),
    )  # its window reaches past the corner
    picture = render(film, [*views, edge])
    assert picture.shape == (1024 + 22, 427 + 3 * (256 + 12) + 12, 3)
    assert _digest(picture) == "0818634170a4da9d"
