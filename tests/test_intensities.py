"""The grey values a reader windows in the marking view (`decode_intensities`, `Intensities.windowed`): the same
decoders as the model's picture, each container's nominal range and default window, LINEAR windowing, and what the
marking view may show of a film's header (`edge_app.web.films.recognisable`)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from dicomfiles import dicom_bytes, encode, mammogram

from edge_app.decode import decode_intensities
from edge_app.errors import InputImageError
from edge_app.web.films import FilmReader, recognisable

RAMP12 = np.arange(0, 4096, 16, dtype=np.uint16).reshape(16, 16)


def _png(pixels: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", pixels)
    assert ok
    return encoded.tobytes()


def test_an_8bit_raster_spans_0_to_255_with_the_middle_window() -> None:
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    found = decode_intensities(_png(pixels))
    assert (found.low, found.high, found.centre, found.width, found.invert) == (0.0, 255.0, 127.5, 255.0, False)
    np.testing.assert_array_equal(found.values, pixels.astype(np.float32))
    assert found.values.dtype == np.float32


def test_a_16bit_raster_spans_its_whole_range() -> None:
    pixels = (np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)
    found = decode_intensities(_png(pixels))
    assert (found.low, found.high, found.centre, found.width, found.invert) == (0.0, 65535.0, 32767.5, 65535.0, False)
    np.testing.assert_array_equal(found.values, pixels.astype(np.float32))


def test_a_32bit_integer_tiff_is_read_on_the_16bit_scale_and_a_raster_it_cannot_read_is_named() -> None:
    import io

    from PIL import Image

    pixels = (np.arange(16, dtype=np.int32) * 4000).reshape(4, 4)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "I").save(buffer, "TIFF")
    found = decode_intensities(buffer.getvalue())
    assert (found.low, found.high) == (0.0, 65535.0)
    np.testing.assert_array_equal(found.values, pixels.astype(np.float32))
    with pytest.raises(InputImageError, match=r"^the PNG data is incomplete or corrupted"):
        decode_intensities(_png(pixels.astype(np.uint8))[:60])
    floats = io.BytesIO()
    Image.fromarray(pixels.astype(np.float32), "F").save(floats, "TIFF")
    with pytest.raises(InputImageError, match=r"^TIFF pixel mode 'F' is not supported$"):
        decode_intensities(floats.getvalue())


def test_a_colour_raster_is_read_as_its_luma() -> None:
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[..., 2] = 200  # red, in OpenCV's BGR
    found = decode_intensities(_png(colour))
    assert (found.high, found.width) == (255.0, 255.0) and found.values[0, 0] == pytest.approx(round(0.299 * 200))


def test_a_dicom_without_a_window_spans_what_bits_stored_allows() -> None:
    found = decode_intensities(encode(mammogram(RAMP12)))
    assert (found.low, found.high, found.centre, found.width, found.invert) == (0.0, 4095.0, 2047.5, 4095.0, False)
    np.testing.assert_array_equal(found.values, RAMP12.astype(np.float32))


def test_a_dicom_window_and_rescale_are_the_default_and_the_values_are_after_the_modality_lut() -> None:
    dataset = mammogram(RAMP12, WindowCenter=[1000, 300], WindowWidth=[500, 100], RescaleSlope=2, RescaleIntercept=-10)
    found = decode_intensities(encode(dataset))
    assert (found.centre, found.width) == (1000.0, 500.0)  # the first of several
    assert found.values[0, 1] == 2 * 16 - 10 and found.values[15, 15] == 2 * 4080 - 10
    assert (found.low, found.high) == (-10.0, 2 * 4095 - 10.0)


def test_a_window_of_no_width_is_ignored_and_monochrome1_is_inverted() -> None:
    dataset = mammogram(RAMP12, WindowCenter=1000, WindowWidth=0, PhotometricInterpretation="MONOCHROME1")
    found = decode_intensities(encode(dataset))
    assert (found.centre, found.width, found.invert) == (2047.5, 4095.0, True)
    picture = found.windowed(2047.5, 4095.0)
    assert picture[0, 0] == 255 and picture[15, 15] == 1  # low values bright, as the film shows them


def test_a_colour_dicom_is_read_as_its_luma() -> None:
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[..., 0] = 200  # red, RGB
    found = decode_intensities(dicom_bytes(colour, PhotometricInterpretation="RGB"))
    assert (found.low, found.high, found.invert) == (0.0, 255.0, False)
    assert found.values[0, 0] == pytest.approx(round(0.299 * 200))


def test_windowing_is_linear_between_the_window_edges() -> None:
    found = decode_intensities(encode(mammogram(RAMP12)))
    picture = found.windowed(1024.0, 512.0)  # 768 .. 1280
    assert picture.dtype == np.uint8 and picture.shape == (16, 16)
    assert picture.flat[768 // 16] == 0 and picture.flat[1024 // 16] == 128 and picture.flat[1280 // 16] == 255
    assert picture.flat[0] == 0 and picture.flat[-1] == 255  # clipped outside
    assert picture.flat[(768 + 128) // 16] == round(255 * 0.25)
    for centre, width in ((1.0, 0.0), (1.0, -5.0), (float("nan"), 10.0), (1.0, float("inf"))):
        with pytest.raises(InputImageError, match="a window needs a finite centre and a width > 0"):
            found.windowed(centre, width)


def test_what_the_marking_view_shows_of_a_film_names_no_patient() -> None:
    dataset = mammogram(RAMP12, ImageLaterality="L", ViewPosition="MLO", StudyDate="20261201", AccessionNumber="A-9")
    assert recognisable(encode(dataset)) == {
        "laterality": "L",
        "view": "MLO",
        "study_date": "20261201",
        "accession": "A-9",
    }
    series_level = mammogram(RAMP12, ImageLaterality=None, Laterality="R", ViewPosition=None, AccessionNumber=None)
    assert recognisable(encode(series_level)) == {
        "laterality": "R",
        "view": "",
        "study_date": "20261129",
        "accession": "",
    }
    assert recognisable(_png(RAMP12.astype(np.uint8))) == {}


def test_a_film_without_laterality_or_study_date_shows_them_empty() -> None:
    bare = mammogram(RAMP12, ImageLaterality=None, Laterality=None, StudyDate=None)
    found = recognisable(encode(bare))
    assert (found["laterality"], found["study_date"]) == ("", "")


def test_the_film_reader_decodes_a_film_once_and_again_when_it_changes(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "film.dcm").write_bytes(encode(mammogram(RAMP12)))
    reader = FilmReader(archive)
    first = reader.film("film.dcm")
    assert reader.film("film.dcm") is first  # the marking view asks for it at every window change
    changed = archive / "film.dcm"
    before = changed.stat().st_mtime_ns
    changed.write_bytes(encode(mammogram(RAMP12[::-1].copy())))
    os.utime(changed, ns=(before + 10**9, before + 10**9))  # a file system's clock may not have moved
    again = reader.film("film.dcm")
    assert again is not first and np.array_equal(again.picture, first.picture[::-1])
    (tmp_path / "outside.dcm").write_bytes(b"x")
    (archive / "escape.dcm").symlink_to(tmp_path / "outside.dcm")
    with pytest.raises(InputImageError) as refused:
        reader.film("escape.dcm")
    assert str(refused.value) == "the film's archived name leads outside the archive"


def test_the_film_reader_serves_the_film_or_its_window_as_a_lossless_png(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "film.dcm").write_bytes(encode(mammogram(RAMP12)))
    reader = FilmReader(tmp_path)
    film = reader.film("film.dcm")
    served = cv2.imdecode(np.frombuffer(reader.png("film.dcm", None), np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(served, film.picture)
    windowed = cv2.imdecode(np.frombuffer(reader.png("film.dcm", (1000.0, 500.0)), np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(windowed, film.intensities.windowed(1000.0, 500.0))
    monkeypatch.setattr(cv2, "imencode", lambda *args: (False, None))
    with pytest.raises(InputImageError, match=r"^the film could not be encoded as PNG$"):
        reader.png("film.dcm", None)


def test_a_rescaled_dicom_without_a_window_spans_its_rescaled_range() -> None:
    found = decode_intensities(encode(mammogram(RAMP12, RescaleSlope=2, RescaleIntercept=-10)))
    assert (found.low, found.high, found.centre, found.width) == (-10.0, 8180.0, 4085.0, 8190.0)


def test_a_header_window_one_wide_is_kept_and_monochrome1_inverts_it() -> None:
    dataset = mammogram(RAMP12, WindowCenter=100, WindowWidth=1, PhotometricInterpretation="MONOCHROME1")
    found = decode_intensities(encode(dataset))
    assert (found.centre, found.width, found.invert) == (100.0, 1.0, True)
    assert found.windowed(2047.5, 0.5).shape == (16, 16)  # any width above 0 is a window


def test_the_film_reader_refuses_a_film_over_the_devices_pixel_limit_as_the_decoder_does(tmp_path: Path) -> None:
    from edge_app.errors import TooManyPixelsError

    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "film.dcm").write_bytes(encode(mammogram(RAMP12)))
    height, width = RAMP12.shape
    assert FilmReader(archive, max_pixels=height * width).film("film.dcm").picture.shape == (height, width)
    with pytest.raises(TooManyPixelsError, match=rf"over the limit of {height * width - 1:,}$"):
        FilmReader(archive, max_pixels=height * width - 1).film("film.dcm")
