"""A corpus of DICOM encodings, each built with pydicom here, decoded and checked against values worked out by hand
from the standard (PS3.3 C.11.2: modality LUT, VOI LUT, LINEAR / LINEAR_EXACT / SIGMOID windows), in every transfer
syntax the device meets: explicit and implicit VR, big endian, RLE and JPEG compressed, and one it cannot decode."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pydicom
import pytest
from dicomfiles import encode, image_dataset
from PIL import Image
from pydicom import Dataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

from edge_app.decode import decode_bytes
from edge_app.errors import EmptyImageError, InputImageError, TruncatedFileError, UnsupportedFormatError

ROW = [0, 1548, 1800, 2048, 2298, 2548, 4095]  # 12-bit values around a window centred at 2048


def _row(values: list[int], dtype: Any = np.uint16) -> np.ndarray:
    return np.array([values], dtype)


def _decoded(dataset: Dataset, syntax: Any = ExplicitVRLittleEndian) -> list[int]:
    return decode_bytes(encode(dataset, syntax)).pixels[0].tolist()


def test_without_a_window_bits_stored_is_the_range() -> None:
    assert _decoded(image_dataset(_row(ROW), BitsStored=12, HighBit=11)) == [0, 96, 112, 128, 143, 159, 255]


def test_signed_pixels_span_their_signed_range() -> None:
    # 12 bits signed: -2048..2047; (v + 2048) / 4095 * 255
    pixels = _row([-2048, -1, 0, 1000, 2047], np.int16)
    assert _decoded(image_dataset(pixels, BitsStored=12, HighBit=11)) == [0, 127, 128, 190, 255]


def test_the_rescale_carries_the_nominal_range_with_it() -> None:
    # HU-like: value * 2 - 1024, over the range 0..4095 carried through: the same picture as without the rescale
    rescaled = image_dataset(_row(ROW), BitsStored=12, HighBit=11, RescaleSlope=2, RescaleIntercept=-1024)
    assert _decoded(rescaled) == [0, 96, 112, 128, 143, 159, 255]


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        # ((v - (c - 0.5)) / (w - 1) + 0.5) clipped: 1800 -> 0.2523 -> 64; 2298 -> 0.7508 -> 191
        ("LINEAR", [0, 0, 64, 128, 191, 255, 255]),
        # ((v - c) / w + 0.5) clipped: 1548 -> 0; 1800 -> 0.252 -> 64; 2048 -> 0.5 -> 128 (half to even); 2298 -> 191
        ("LINEAR_EXACT", [0, 0, 64, 128, 191, 255, 255]),
        # 1 / (1 + exp(-4 (v - c) / w)): 2298 = c + w/4 -> 0.731 -> 186; 1800 -> 0.271 -> 69; 0 -> 0
        ("SIGMOID", [0, 30, 69, 128, 186, 225, 255]),
    ],
)
def test_each_voi_function(function: str, expected: list[int]) -> None:
    dataset = image_dataset(_row(ROW), BitsStored=12, HighBit=11, WindowCenter=2048, WindowWidth=1000)
    dataset.VOILUTFunction = function
    assert _decoded(dataset) == expected


def test_a_linear_window_one_wide_is_a_threshold_at_half_below_its_centre() -> None:
    dataset = image_dataset(_row(ROW), BitsStored=12, HighBit=11, WindowCenter=2048.5, WindowWidth=1)
    assert _decoded(dataset) == [0, 0, 0, 0, 255, 255, 255]  # 2048 is not above 2048.0; 2298 is
    dataset.WindowCenter = 2048
    assert _decoded(dataset) == [0, 0, 0, 255, 255, 255, 255]


def test_linear_is_the_default_function_and_the_first_of_several_windows_counts() -> None:
    dataset = image_dataset(_row(ROW), BitsStored=12, HighBit=11, WindowCenter=[2048, 100], WindowWidth=[1000, 50])
    assert _decoded(dataset) == [0, 0, 64, 128, 191, 255, 255]


def test_a_voi_lut_sequence_maps_through_its_table() -> None:
    dataset = image_dataset(_row([0, 1, 2, 3, 3]), BitsStored=12, HighBit=11, WindowCenter=2048, WindowWidth=10)
    lut = Dataset()
    lut.LUTDescriptor = [4, 0, 8]  # 4 entries, first input 0, 8-bit output
    lut.add_new(0x00283006, "US", [0, 100, 200, 255])  # LUTData
    dataset.VOILUTSequence = Sequence([lut])  # the table wins over the window
    assert _decoded(dataset) == [0, 100, 200, 255, 255]


def test_monochrome1_is_inverted_after_the_window() -> None:
    dataset = image_dataset(_row(ROW), BitsStored=12, HighBit=11, WindowCenter=2048, WindowWidth=1000)
    dataset.PhotometricInterpretation = "MONOCHROME1"
    assert _decoded(dataset) == [255, 255, 191, 127, 64, 0, 0]


@pytest.mark.parametrize(
    ("function", "width", "message"),
    [("LINEAR", 0.5, "window width 0.5 must be >= 1 for LINEAR"), ("LINEAR_EXACT", 0, "must be > 0 for LINEAR_EXACT")],
)
def test_an_impossible_window_is_refused(function: str, width: float, message: str) -> None:
    dataset = image_dataset(_row(ROW), WindowCenter=2048, WindowWidth=width)
    dataset.VOILUTFunction = function
    with pytest.raises(UnsupportedFormatError, match=message):
        _decoded(dataset)


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRBigEndian, RLELossless])
def test_every_lossless_transfer_syntax_gives_the_same_pixels(syntax: Any) -> None:
    pixels = (np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 7) % 4096
    reference = decode_bytes(encode(image_dataset(pixels, BitsStored=12, HighBit=11))).pixels
    dataset = image_dataset(pixels, BitsStored=12, HighBit=11)
    if syntax == RLELossless:
        dataset.compress(RLELossless, pixels)
    elif syntax == ExplicitVRBigEndian:
        dataset.PixelData = pixels.astype(">u2").tobytes()
    decoded = decode_bytes(encode(dataset, syntax))
    assert decoded.format == "DICOM"
    np.testing.assert_array_equal(decoded.pixels, reference)


def _jpeg(pixels: np.ndarray, quality: int = 95) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def test_jpeg_baseline_decodes_close_to_its_source() -> None:
    pixels = (np.add.outer(np.arange(48), np.arange(64)) * 2).astype(np.uint8)
    dataset = image_dataset(pixels)
    dataset.PixelData = encapsulate([_jpeg(pixels)])
    dataset["PixelData"].VR = "OB"
    decoded = decode_bytes(encode(dataset, JPEGBaseline8Bit)).pixels
    assert decoded.shape == (48, 64) and np.abs(decoded.astype(int) - pixels).max() <= 4  # lossy at quality 95


def test_a_transfer_syntax_without_a_decoder_says_which_and_what_to_install() -> None:
    dataset = image_dataset(np.zeros((8, 8), np.uint16))
    dataset.PixelData = encapsulate([b"\xff\xd8\xff\xf7 not really JPEG-LS"])
    dataset["PixelData"].VR = "OB"
    with pytest.raises(UnsupportedFormatError) as caught:
        decode_bytes(encode(dataset, JPEGLSLossless))
    message = str(caught.value)
    assert message.startswith("cannot decode DICOM transfer syntax JPEG-LS Lossless Image Compression: ")
    assert (
        message.endswith("(install pylibjpeg / pylibjpeg-openjpeg for JPEG-compressed DICOM)") and "\n" not in message
    )


def test_ybr_colour_becomes_luma() -> None:
    from pydicom.pixels.processing import convert_color_space

    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = np.arange(16)[:, None] * 16
    rgb[..., 1] = 128
    rgb[..., 2] = np.arange(16)[None, :] * 8
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    dataset = image_dataset(ybr, PhotometricInterpretation="YBR_FULL")
    expected = np.asarray(Image.fromarray(rgb, "RGB").convert("L"), np.int16)
    assert np.abs(decode_bytes(encode(dataset)).pixels.astype(np.int16) - expected).max() <= 1  # YBR round trip
    wide = image_dataset(rgb.astype(np.uint16) * 256, PhotometricInterpretation="RGB")
    with pytest.raises(UnsupportedFormatError, match=r"^DICOM colour encoding RGB is not supported$"):
        decode_bytes(encode(wide))


@pytest.mark.parametrize(
    ("attributes", "spacing"),
    [
        ({"PixelSpacing": [0.1, 0.2], "ImagerPixelSpacing": [0.3, 0.3]}, (0.1, 0.2)),
        ({"ImagerPixelSpacing": [0.07, 0.08]}, (0.07, 0.08)),
        ({"PixelSpacing": [0, 0.2], "ImagerPixelSpacing": [0.05, 0.05]}, (0.05, 0.05)),  # invalid: the next one
        ({"PixelSpacing": [0.2, 0], "ImagerPixelSpacing": [0.05, 0.06]}, (0.05, 0.06)),
        ({"PixelSpacing": [0.1]}, None),  # one value is no spacing
        ({}, None),
    ],
)
def test_pixel_spacing_prefers_the_calibrated_value(attributes: dict[str, Any], spacing: Any) -> None:
    decoded = decode_bytes(encode(image_dataset(_row(ROW), **attributes)))
    assert decoded.pixel_spacing_mm == spacing


@pytest.mark.parametrize(
    ("attributes", "laterality", "view"),
    [
        ({"ImageLaterality": "l", "Laterality": "R", "ViewPosition": "mlo"}, "L", "MLO"),
        ({"Laterality": "R", "ViewPosition": "CC"}, "R", "CC"),
        ({}, None, None),
    ],
)
def test_laterality_and_view_come_from_the_header(attributes: dict[str, Any], laterality: Any, view: Any) -> None:
    decoded = decode_bytes(encode(image_dataset(_row(ROW), **attributes)))
    assert (decoded.laterality, decoded.view) == (laterality, view)


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [
        (lambda d: d.update({"BitsStored": 1, "HighBit": 0, "RescaleSlope": 0.0}), None, None),
        (lambda d: delattr(d, "PixelData"), EmptyImageError, "no pixel data"),
        (lambda d: d.update({"Rows": 0}), EmptyImageError, r"the image has no pixels \(7x0\)"),
    ],
)
def test_headers_that_leave_nothing_to_decode(
    edit: Callable[[Dataset], Any], error: type[Exception] | None, message: str | None
) -> None:
    dataset = image_dataset(_row(ROW))
    edit(dataset)
    if error is None:  # 1-bit range, slope 0 read as 1: values 0..1 of 0..4095 -> a valid, dark image
        assert max(_decoded(dataset)) == 255
        return
    with pytest.raises(error, match=message):
        decode_bytes(encode(dataset))


def test_an_invalid_nominal_range_is_named() -> None:
    dataset = image_dataset(_row(ROW), BitsStored=16, RescaleSlope=1e308, RescaleIntercept=1e308)
    with pytest.raises(InputImageError, match=r"^DICOM intensity range is invalid \(BitsStored 16, slope 1e\+308\)$"):
        decode_bytes(encode(dataset))


def test_a_window_one_wide_is_a_threshold() -> None:
    # PS3.3 C.11.2.1.2.1 for w = 1: x <= c - 0.5 is black, anything above white
    dataset = image_dataset(_row([2046, 2047, 2048, 2049]), BitsStored=12, HighBit=11, WindowCenter=2048, WindowWidth=1)
    assert _decoded(dataset) == [0, 0, 255, 255]
    exact = image_dataset(_row(ROW), BitsStored=12, HighBit=11, WindowCenter=2048, WindowWidth=0.5)
    exact.VOILUTFunction = "LINEAR_EXACT"  # any width above 0 is valid here
    assert _decoded(exact) == [0, 0, 0, 128, 255, 255, 255]


def test_a_centre_without_a_width_is_no_window() -> None:
    assert _decoded(image_dataset(_row(ROW), BitsStored=12, HighBit=11, WindowCenter=100)) == [
        0,
        96,
        112,
        128,
        143,
        159,
        255,
    ]


def test_a_rescale_of_signed_pixels_keeps_their_range() -> None:
    pixels = _row([-2048, 0, 2047], np.int16)
    assert _decoded(image_dataset(pixels, BitsStored=12, HighBit=11, RescaleSlope=2, RescaleIntercept=0)) == [
        0,
        128,
        255,
    ]


@pytest.mark.parametrize(
    ("slope", "intercept"),
    [(1e-20, 1000.0), (-1e308, 0.0)],  # both ends the same in float64; one end at minus infinity
)
def test_a_rescale_that_leaves_no_range_is_refused(slope: float, intercept: float) -> None:
    dataset = image_dataset(_row(ROW), BitsStored=12, HighBit=11, RescaleSlope=slope, RescaleIntercept=intercept)
    with pytest.raises(InputImageError, match=r"^DICOM intensity range is invalid \(BitsStored 12, slope "):
        decode_bytes(encode(dataset))


@pytest.mark.parametrize(("missing", "size"), [("Columns", "0x1"), ("Rows", "7x0")])
def test_a_header_without_its_size_has_no_pixels(missing: str, size: str) -> None:
    dataset = image_dataset(_row(ROW))
    delattr(dataset, missing)
    with pytest.raises(EmptyImageError, match=rf"^the image has no pixels \({size}\)$"):
        decode_bytes(encode(dataset))


META = b"\0" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00\x10\x00\x00\x00"  # preamble, group length
SYNTAX = b"\x02\x00\x10\x00UI\x14\x001.2.840.10008.1.2.1\0"  # explicit VR little endian


def test_unreadable_dicom_headers_are_named() -> None:
    cut_sequence = b"\x08\x00\x15\x11SQ\x00\x00\xff\xff\xff\xff\xfe\xff\x00\xe0\x10\x00\x00\x00"  # an item, cut
    with pytest.raises(TruncatedFileError, match=r"^the DICOM file is incomplete or corrupted: "):
        decode_bytes(META + SYNTAX + cut_sequence)
    whole = encode(image_dataset(_row(ROW)))
    with pytest.raises(TruncatedFileError, match=r"^the DICOM pixel data is incomplete: "):
        decode_bytes(whole[:-5])


def test_a_header_missing_what_the_pixels_need_is_refused_not_a_crash() -> None:
    dataset = image_dataset(_row([0, 32768, 65535]))
    del dataset.BitsStored
    with pytest.raises(UnsupportedFormatError, match=r"^the DICOM header lacks what its pixel data needs: "):
        decode_bytes(encode(dataset))


def test_a_multiframe_refusal_says_what_to_send() -> None:
    dataset = image_dataset(np.zeros((2, 8), np.uint16), NumberOfFrames=2, Rows=1)
    with pytest.raises(UnsupportedFormatError) as caught:
        decode_bytes(encode(dataset))
    assert str(caught.value) == (
        "multi-frame DICOM (2 frames, e.g. tomosynthesis) is not supported; send single 2-D views"
    )


def test_an_empty_image_laterality_falls_back_to_the_series() -> None:
    decoded = decode_bytes(encode(image_dataset(_row(ROW), ImageLaterality="", Laterality="r")))
    assert decoded.laterality == "R"


def test_the_shared_quantisation_step() -> None:
    from edge_app.decode import scale_to_uint8

    assert scale_to_uint8(np.array([5, 10, 15, 20, 25]), 10.0, 20.0).tolist() == [0, 0, 128, 255, 255]
    assert scale_to_uint8(np.array([5, 10, 15, 20, 25]), 10.0, 20.0).dtype == np.uint8
    with pytest.raises(EmptyImageError, match=r"^the intensity range is empty \(3.0..3.0\)$"):
        scale_to_uint8(np.array([3]), 3.0, 3.0)


@pytest.mark.parametrize("pixel_representation", [0, 1])
def test_bits_above_bits_stored_are_ignored(pixel_representation: int) -> None:
    """PS3.5 8.1.1: the unused high bits' values are undefined; a writer that sets them changes nothing (signed
    values sign-extend from their high bit)."""
    from edge_app.decode import decode_intensities

    clean = np.array([ROW], np.uint16)
    dirty = clean | np.uint16(0xA000)  # bits 13 and 15 set above 12 stored bits
    window = {"BitsStored": 12, "HighBit": 11, "PixelRepresentation": pixel_representation}
    decoded = [decode_bytes(encode(image_dataset(pixels, **window))).pixels for pixels in (clean, dirty)]
    assert np.array_equal(decoded[0], decoded[1])
    values = [decode_intensities(encode(image_dataset(pixels, **window))).values for pixels in (clean, dirty)]
    assert np.array_equal(values[0], values[1])
    expected = (
        [0, 1548, 1800, 2048, 2298, 2548, 4095]
        if pixel_representation == 0
        else [0, 1548, 1800, -2048, -1798, -1548, -1]
    )
    assert values[0].ravel().tolist() == expected


def test_pixel_data_longer_than_the_header_says_is_refused_but_one_pad_byte_is_not() -> None:
    """An odd number of pixel bytes is padded to even on disk; more than that means the header lies."""
    odd = image_dataset(np.arange(9, dtype=np.uint8).reshape(3, 3))
    assert decode_bytes(encode(odd)).pixels.shape == (3, 3)  # 9 bytes needed, 10 held
    even = image_dataset(np.arange(16, dtype=np.uint8).reshape(4, 4))
    even.PixelData = bytes(range(18))
    with pytest.raises(UnsupportedFormatError) as refused:
        decode_bytes(encode(even))
    assert str(refused.value) == (
        "the DICOM pixel data holds 18 bytes but Rows x Columns (4x4) need 16: the header does not describe the pixels"
    )
    del even.SamplesPerPixel  # a grey image may leave it out: one sample a pixel
    even.PixelData = bytes(range(32))
    with pytest.raises(UnsupportedFormatError, match=r"^the DICOM pixel data holds 32 bytes but .* need 16: "):
        decode_bytes(encode(even))


def test_a_transfer_syntax_uid_that_is_none_is_named() -> None:
    dataset = image_dataset(np.arange(16, dtype=np.uint16).reshape(4, 4))
    data = encode(dataset)
    named = data.replace(b"1.2.840.10008.1.2.1\x00", b"1.2.3.4.5.6.7.8.9\x00\x00\x00")  # the same length
    with pytest.raises(
        UnsupportedFormatError, match=r"^the DICOM file names 1\.2\.3\.4\.5\.6\.7\.8\.9 as its transfer"
    ):
        decode_bytes(named)


def test_a_linear_window_one_wide_is_a_threshold_just_below_its_centre() -> None:
    """PS3.3 C.11.2.1.2.1: width 1 makes the output its maximum above centre - 0.5, its minimum at or below."""
    dataset = image_dataset(_row([9, 10, 11, 12]), BitsStored=12, HighBit=11, WindowCenter=10.5, WindowWidth=1)
    assert _decoded(dataset) == [0, 0, 255, 255]
    three = image_dataset(_row([8, 9, 10, 11, 12]), BitsStored=12, HighBit=11, WindowCenter=10, WindowWidth=3)
    assert _decoded(three) == [0, 64, 191, 255, 255]  # (v - 9.5) / (3 - 1) + 0.5: 9 -> 0.25, 10 -> 0.75


@pytest.mark.parametrize(
    ("dtype", "attributes"),
    [
        (np.uint16, {"BitsStored": 12, "HighBit": 11}),
        (np.uint16, {"BitsStored": 16, "HighBit": 15, "WindowCenter": 30000, "WindowWidth": 20000}),
        (
            np.uint16,
            {"BitsStored": 12, "HighBit": 11, "WindowCenter": 2048, "WindowWidth": 900, "VOILUTFunction": "SIGMOID"},
        ),
        (np.uint16, {"BitsStored": 12, "HighBit": 11, "PhotometricInterpretation": "MONOCHROME1"}),
        (np.int16, {"BitsStored": 12, "HighBit": 11, "RescaleSlope": 2, "RescaleIntercept": -1024}),
        (np.uint8, {"BitsStored": 8, "HighBit": 7, "WindowCenter": 100, "WindowWidth": 60}),
        (np.uint16, {"BitsStored": 12, "HighBit": 11, "WindowCenter": 2048, "WindowWidth": 900}),
        (np.uint16, {"BitsStored": 12, "HighBit": 11, "WindowCenter": 1000.5, "WindowWidth": 101}),
        (
            np.uint16,
            {
                "BitsStored": 14,
                "HighBit": 13,
                "WindowCenter": 9000,
                "WindowWidth": 5000,
                "VOILUTFunction": "LINEAR_EXACT",
                "PhotometricInterpretation": "MONOCHROME1",
            },
        ),
        (np.uint16, {"BitsStored": 12, "HighBit": 11, "RescaleSlope": 0.5, "RescaleIntercept": -300}),
    ],
)
def test_the_per_value_table_gives_the_bytes_every_pixel_computed_alone_would(dtype: Any, attributes: Any) -> None:
    """A monochrome film is decoded through a table of its stored values (`_dicom_monochrome_to_gray8`); the result
    is the per-pixel computation's, byte for byte, whatever the window, photometry or sign."""
    from edge_app.decode import _dicom_monochrome_to_unit, scale_to_uint8

    info = np.iinfo(dtype)
    bits = int(attributes["BitsStored"])
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if info.min < 0 else (0, min(info.max, 2**bits - 1))
    pixels = np.random.default_rng(bits).integers(low + 37, high + 1, (96, 80)).astype(dtype)  # no value 0..36
    dataset = image_dataset(pixels, **attributes)
    unit = _dicom_monochrome_to_unit(pixels, dataset)
    inverted = attributes.get("PhotometricInterpretation") == "MONOCHROME1"
    expected = scale_to_uint8(1.0 - unit if inverted else unit, 0.0, 1.0)
    decoded = decode_bytes(encode(dataset)).pixels
    assert decoded.dtype == np.uint8 and np.array_equal(decoded, expected)
    assert len(np.unique(decoded)) > 16  # a picture, not a constant the two could share by accident


@pytest.mark.parametrize(
    ("unit", "straight"),
    [
        ((np.arange(4096) - 1500.0) / 900.0, True),  # a window: below black, across, above white
        (np.arange(4096) / 4095.0, True),  # the nominal range
        ((np.arange(300) - 100.0) / 20.0, True),  # a window 20 values wide
        (1.0 / (1.0 + np.exp(-4.0 * (np.arange(4096) - 2048.0) / 900.0)), False),  # SIGMOID
        (np.full(10, 0.5), False),  # constant: no slope
        ((np.arange(50) - 100.0) / 20.0, False),  # every value below black
    ],
)
def test_a_straight_window_is_computed_by_a_scale_that_gives_the_tables_bytes(unit: Any, straight: bool) -> None:
    """The fast path of the table lookup (`_clipped_line`, used by `_look_up` only where it gives every entry of the
    table): a straight window is reproduced byte for byte (so most films take it); a curve or no slope is not."""
    from edge_app.decode import _clipped_line, scale_to_uint8

    unit = np.asarray(unit, np.float64)
    shade = _clipped_line(unit)
    table = scale_to_uint8(unit, 0.0, 1.0)
    reproduced = shade is not None and np.array_equal(shade(np.arange(unit.size, dtype=np.uint16)).ravel(), table)
    assert reproduced == straight


def test_the_decoded_scan_keeps_its_instance_uid_or_none_without_one() -> None:
    """What a reader's SR or SEG refers to the scan by; a header without one has none (no made-up value)."""
    dataset = image_dataset(_row(ROW), BitsStored=12, HighBit=11)
    assert decode_bytes(encode(dataset)).instance_uid == str(dataset.SOPInstanceUID)
    read = pydicom.dcmread(io.BytesIO(encode(dataset)))
    del read.SOPInstanceUID
    without = io.BytesIO()
    read.save_as(without)
    assert decode_bytes(without.getvalue()).instance_uid is None


def test_a_sample_image_has_its_high_bit_one_below_its_bits() -> None:
    dataset = image_dataset(_row(ROW))
    assert (dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit) == (16, 16, 15)
