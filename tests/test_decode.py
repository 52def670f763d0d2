"""Decoding: every supported container, the shared intensity rule, and a typed error per failure."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from edge_app.decode import decode_bytes, decode_file, scale_to_uint8
from edge_app.errors import (
    EmptyImageError,
    TooManyPixelsError,
    TruncatedFileError,
    UnsupportedFormatError,
)


@pytest.fixture
def gray8() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (40, 56), dtype=np.uint8)


@pytest.mark.parametrize("extension", [".png", ".jpg", ".pgm", ".tif", ".bmp"])
def test_8bit_raster_formats_decode_to_gray(tmp_path: Path, gray8: np.ndarray, extension: str) -> None:
    path = tmp_path / f"scan{extension}"
    cv2.imwrite(str(path), gray8)
    decoded = decode_file(path)
    assert decoded.pixels.dtype == np.uint8
    assert decoded.pixels.shape == gray8.shape
    if extension == ".jpg":  # lossy: close, not equal
        assert np.abs(decoded.pixels.astype(int) - gray8).mean() < 12
    else:
        np.testing.assert_array_equal(decoded.pixels, gray8)


def test_colour_ppm_and_png_become_luma(tmp_path: Path, gray8: np.ndarray) -> None:
    rgb = np.stack([gray8, np.flipud(gray8), np.fliplr(gray8)], axis=-1)
    Image.fromarray(rgb, "RGB").save(tmp_path / "scan.ppm")
    expected = np.asarray(Image.fromarray(rgb, "RGB").convert("L"))
    assert decode_file(tmp_path / "scan.ppm").format == "PPM"
    np.testing.assert_array_equal(decode_file(tmp_path / "scan.ppm").pixels, expected)


def test_16bit_png_tiff_dicom_give_the_same_array(
    tmp_path: Path, gradient16: np.ndarray, write_dicom: Callable[..., Path]
) -> None:
    cv2.imwrite(str(tmp_path / "scan.png"), gradient16)
    tifffile.imwrite(tmp_path / "scan.tif", gradient16)
    write_dicom(tmp_path / "scan.dcm", gradient16)
    decoded = {name: decode_file(tmp_path / name) for name in ("scan.png", "scan.tif", "scan.dcm")}
    assert [item.format for item in decoded.values()] == ["PNG", "TIFF", "DICOM"]
    expected = np.rint(gradient16 / 65535 * 255).astype(np.uint8)
    for item in decoded.values():
        np.testing.assert_array_equal(item.pixels, expected)


def test_8bit_png_and_dicom_agree(tmp_path: Path, gray8: np.ndarray, write_dicom: Callable[..., Path]) -> None:
    cv2.imwrite(str(tmp_path / "scan.png"), gray8)
    write_dicom(tmp_path / "scan.dcm", gray8)
    np.testing.assert_array_equal(decode_file(tmp_path / "scan.png").pixels, decode_file(tmp_path / "scan.dcm").pixels)


def test_dicom_monochrome1_is_inverted(
    tmp_path: Path, gradient16: np.ndarray, write_dicom: Callable[..., Path]
) -> None:
    mono2 = decode_file(write_dicom(tmp_path / "m2.dcm", gradient16)).pixels
    mono1 = decode_file(write_dicom(tmp_path / "m1.dcm", gradient16, photometric="MONOCHROME1")).pixels
    np.testing.assert_array_equal(mono1, 255 - mono2)


def test_dicom_12bit_uses_bits_stored(tmp_path: Path, write_dicom: Callable[..., Path]) -> None:
    twelve = np.linspace(0, 4095, 64 * 32).reshape(32, 64).astype(np.uint16)
    pixels = decode_file(write_dicom(tmp_path / "d12.dcm", twelve, bits_stored=12)).pixels
    assert pixels.min() == 0 and pixels.max() == 255  # a 12-bit detector fills the 8-bit range
    np.testing.assert_array_equal(pixels, scale_to_uint8(twelve, 0, 4095))


def test_dicom_window_is_applied(tmp_path: Path, write_dicom: Callable[..., Path]) -> None:
    values = np.tile(np.arange(0, 4096, 64, dtype=np.uint16), (8, 1))
    pixels = decode_file(write_dicom(tmp_path / "w.dcm", values, bits_stored=12, window=(2048.0, 1025.0))).pixels
    assert pixels[0, values[0] <= 1535].max() == 0  # below the window: black
    assert pixels[0, values[0] >= 2560].min() == 255  # above the window: white
    inside = pixels[0, (values[0] > 1600) & (values[0] < 2500)]
    assert np.all(np.diff(inside.astype(int)) > 0)  # linear ramp inside


def test_dicom_rescale_slope_intercept(tmp_path: Path, write_dicom: Callable[..., Path]) -> None:
    values = np.linspace(0, 4095, 32 * 32).reshape(32, 32).astype(np.uint16)
    plain = decode_file(write_dicom(tmp_path / "a.dcm", values, bits_stored=12)).pixels
    rescaled = write_dicom(
        tmp_path / "b.dcm", values, bits_stored=12, extra={"RescaleSlope": 2, "RescaleIntercept": -100}
    )
    np.testing.assert_array_equal(decode_file(rescaled).pixels, plain)  # the nominal range is rescaled too


def test_dicom_without_pixels_is_empty(tmp_path: Path, write_dicom: Callable[..., Path], gray8: np.ndarray) -> None:
    import pydicom

    path = write_dicom(tmp_path / "x.dcm", gray8)
    dataset = pydicom.dcmread(path)
    del dataset.PixelData
    dataset.save_as(path)
    with pytest.raises(EmptyImageError, match="no pixel data"):
        decode_file(path)


def test_unknown_bytes_are_unsupported() -> None:
    with pytest.raises(UnsupportedFormatError, match="unrecognised file format"):
        decode_bytes(b"this is a text file, not a scan")


def test_empty_file_is_empty() -> None:
    with pytest.raises(EmptyImageError, match="0 bytes"):
        decode_bytes(b"")


def test_constant_image_is_empty(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "flat.png"), np.full((20, 20), 7, np.uint8))
    with pytest.raises(EmptyImageError, match="constant"):
        decode_file(tmp_path / "flat.png")


@pytest.mark.parametrize("extension", [".png", ".jpg", ".tif", ".pgm"])
def test_truncated_files_are_reported(tmp_path: Path, gray8: np.ndarray, extension: str) -> None:
    path = tmp_path / f"scan{extension}"
    cv2.imwrite(str(path), np.tile(gray8, (4, 4)))
    data = path.read_bytes()
    with pytest.raises(TruncatedFileError):
        decode_bytes(data[: len(data) // 2])


def test_truncated_dicom_is_reported(tmp_path: Path, gradient16: np.ndarray, write_dicom: Callable[..., Path]) -> None:
    data = write_dicom(tmp_path / "t.dcm", gradient16).read_bytes()
    with pytest.raises(TruncatedFileError):
        decode_bytes(data[: len(data) - 500])


def test_too_many_pixels_is_refused_before_decoding(tmp_path: Path, gray8: np.ndarray) -> None:
    cv2.imwrite(str(tmp_path / "big.png"), gray8)
    with pytest.raises(TooManyPixelsError, match="over the limit of 1,000"):
        decode_file(tmp_path / "big.png", max_pixels=1000)


def test_too_many_pixels_dicom(tmp_path: Path, gray8: np.ndarray, write_dicom: Callable[..., Path]) -> None:
    with pytest.raises(TooManyPixelsError):
        decode_file(write_dicom(tmp_path / "big.dcm", gray8), max_pixels=1000)


def test_multiframe_dicom_is_unsupported(tmp_path: Path, write_dicom: Callable[..., Path]) -> None:
    frames = np.zeros((2, 8, 8), np.uint8)
    frames[1] = 255
    path = write_dicom(tmp_path / "mf.dcm", frames.reshape(16, 8), extra={"NumberOfFrames": 2})
    with pytest.raises(UnsupportedFormatError, match="multi-frame"):
        decode_file(path)


def test_format_is_sniffed_not_taken_from_extension(tmp_path: Path, gray8: np.ndarray) -> None:
    cv2.imwrite(str(tmp_path / "scan.png"), gray8)
    renamed = tmp_path / "scan.jpg"
    renamed.write_bytes((tmp_path / "scan.png").read_bytes())
    assert decode_file(renamed).format == "PNG"


def test_32_bit_integer_pixels_are_read_on_the_16_bit_scale_or_refused() -> None:
    import io

    import tifffile

    from edge_app.decode import decode_bytes
    from edge_app.errors import UnsupportedFormatError

    def tiff(values: list[int]) -> bytes:
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, np.array([values], np.int32))
        return buffer.getvalue()

    assert decode_bytes(tiff([0, 32768, 65535])).pixels.tolist() == [[0, 128, 255]]
    for values in ([0, 65536], [-1, 5]):
        with pytest.raises(UnsupportedFormatError, match=r"^TIFF with 32-bit integer pixels outside 0..65535 is not"):
            decode_bytes(tiff(values))


@pytest.mark.parametrize(
    ("mode", "container"),
    [
        ("1", "PNG"),
        ("P", "PNG"),
        ("PA", "TIFF"),
        ("LA", "PNG"),
        ("RGBA", "PNG"),
        ("CMYK", "TIFF"),
        ("YCbCr", "TIFF"),
    ],
)
def test_every_pillow_colour_mode_becomes_its_luma(mode: str, container: str) -> None:
    import io

    from PIL import Image

    from edge_app.decode import decode_bytes

    rgb = Image.fromarray(
        (np.add.outer(np.arange(12) * 20, np.arange(9)[:, None, None] * 0).squeeze() % 256)
        .astype(np.uint8)
        .reshape(9, 12, 1)
        .repeat(3, axis=2)
        * np.array([1, 0, 1], np.uint8)
    )
    image = rgb.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, container)
    decoded = decode_bytes(buffer.getvalue())
    expected = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("L"))
    assert decoded.format == ("TIFF" if container == "TIFF" else "PNG") and decoded.pixels.dtype == np.uint8
    np.testing.assert_array_equal(decoded.pixels, expected)


def test_a_float_raster_and_unknown_bytes_are_refused_by_name() -> None:
    import io

    from PIL import Image

    from edge_app.decode import decode_bytes
    from edge_app.errors import UnsupportedFormatError

    buffer = io.BytesIO()
    Image.fromarray(np.arange(12, dtype=np.float32).reshape(3, 4)).save(buffer, "TIFF")
    with pytest.raises(UnsupportedFormatError, match=r"^TIFF pixel mode 'F' is not supported$"):
        decode_bytes(buffer.getvalue())
    with pytest.raises(UnsupportedFormatError) as caught:
        decode_bytes(b"scan of 3 May")
    assert str(caught.value) == (
        "unrecognised file format (first bytes 73 63 61 6e 20 6f 66 20); "
        "expected PNG, JPEG, TIFF, BMP, PGM/PPM or DICOM"
    )


def test_a_header_past_the_decoders_own_bomb_limit_is_refused_unread() -> None:
    import struct
    import zlib

    from edge_app.decode import decode_bytes
    from edge_app.errors import TooManyPixelsError

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    def png(width: int, height: int) -> bytes:  # a header, and no pixel data at all
        header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")

    with pytest.raises(TooManyPixelsError, match=r"^the image is 10000x7000 = 70,000,000 pixels, over the limit of 6"):
        decode_bytes(png(10000, 7000))  # over ours (60 Mpx), under Pillow's
    with pytest.raises(TooManyPixelsError, match=r"^the image is too large for the decoder's safety limit: "):
        decode_bytes(png(20000, 20000), max_pixels=10**9)  # 400 Mpx: Pillow refuses it first


def test_a_file_is_too_large_past_8_bytes_a_pixel_and_16_mib_of_headers() -> None:
    from edge_app.decode import max_file_bytes

    assert max_file_bytes(1000) == 8000 + 16 * 2**20
