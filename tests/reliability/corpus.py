"""The bad-input corpus: every kind of entry a clinic's inbox meets, made here (nothing downloaded), each with the
outcome the device owes it. A kind is a name, a function that drops it into the inbox, and what must follow:

- ``Refused(stage, kind)``: quarantined with that stage and exception class, the input kept as it came;
- ``Answered(status)``: a result (``classified`` or ``needs_roi``) and the input archived;
- ``Left(why)``: not a scan, left exactly where it is (a folder in a flat inbox, a sidecar waiting for its scan).

The fake bundle (tests/fakemodel.py) classifies 48 px patches, so a 48 px image is in scope and a larger one
without regions is answered ``needs_roi``.
"""

from __future__ import annotations

import io
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from dicomfiles import dicom_bytes
from PIL import Image

OUTSIDE_FILE = Path("/etc/passwd")
"""A file outside every configured folder that links point at: it must be neither read into a result nor moved."""


@dataclass(frozen=True)
class Refused:
    stage: str
    kind: str


@dataclass(frozen=True)
class Answered:
    status: str


@dataclass(frozen=True)
class Left:
    why: str


Outcome = Refused | Answered | Left


@dataclass(frozen=True)
class Kind:
    name: str  # also the dropped file's stem, so each kind is found by its own name
    drop: Callable[[Path, str], None]  # (inbox, file name) -> puts it there
    suffix: str
    outcome: Outcome


def patch(side: int = 48) -> np.ndarray:
    return (np.add.outer(np.arange(side), np.arange(side)) % 50 + 100).astype(np.uint8)


def png(pixels: np.ndarray) -> bytes:
    return cv2.imencode(".png", pixels)[1].tobytes()


def pil_bytes(image: Image.Image, kind: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind, **options)
    return buffer.getvalue()


def png_header_bomb(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming `width` x `height`, then a few bytes of data: a decompression bomb by
    header (decoding it would allocate width x height bytes)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = chunk(b"IDAT", zlib.compress(b"\0" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + data + chunk(b"IEND", b"")


def _ifd(entries: list[tuple[int, int, int, int]], next_offset: int) -> bytes:
    """A little-endian TIFF directory: (tag, type 3 SHORT or 4 LONG, count, value) entries, then the next one's
    offset."""
    body = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        body += struct.pack("<HHI", tag, kind, count) + packed
    return body + struct.pack("<I", next_offset)


def _tiff_page(width: int, height: int, strip_bytes: int) -> list[tuple[int, int, int, int]]:
    """One 8-bit grey page whose strip starts right after the 8-byte header."""
    return [
        (256, 4, 1, width),  # ImageWidth
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 1),  # Photometric: black is zero
        (273, 4, 1, 8),  # StripOffsets
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, strip_bytes),  # StripByteCounts
    ]


def tiff_header_bomb(width: int, height: int) -> bytes:
    """A TIFF whose one page claims `width` x `height` 8-bit pixels in a strip of 16 bytes."""
    return b"II*\x00" + struct.pack("<I", 8 + 16) + b"\x80" * 16 + _ifd(_tiff_page(width, height, 16), 0)


def tiff_second_page_without_size() -> bytes:
    """A good 48 px page, then a page with no width or height (found by fuzzing: Pillow raised TypeError)."""
    pixels = patch().tobytes()
    first_at = 8 + len(pixels)
    second_at = first_at + len(_ifd(_tiff_page(48, 48, len(pixels)), 0))
    first = _ifd(_tiff_page(48, 48, len(pixels)), second_at)
    return b"II*\x00" + struct.pack("<I", first_at) + pixels + first + _ifd([(258, 3, 1, 8)], 0)


def write(data: bytes | Callable[[], bytes]) -> Callable[[Path, str], None]:
    def drop(inbox: Path, name: str) -> None:
        (inbox / name).write_bytes(data() if callable(data) else data)

    return drop


def with_roi(scan: bytes, roi: bytes) -> Callable[[Path, str], None]:
    def drop(inbox: Path, name: str) -> None:
        (inbox / name).write_bytes(scan)
        (inbox / f"{Path(name).stem}.roi.json").write_bytes(roi)

    return drop


def sidecar_alone(inbox: Path, name: str) -> None:
    (inbox / name).write_bytes(b'{"regions": [{"x": 10, "y": 10, "radius": 5}]}')


def symlink_out(inbox: Path, name: str) -> None:
    (inbox / name).symlink_to(OUTSIDE_FILE)


def hard_link_out(outside: Path) -> Callable[[Path, str], None]:
    """A hard link to a file outside the folders (``/etc/passwd`` when on the same file system, else a stand-in in a
    folder the test watches, since a hard link cannot cross file systems)."""

    def drop(inbox: Path, name: str) -> None:
        try:
            os.link(OUTSIDE_FILE, inbox / name)
        except OSError:
            target = outside / "secret.png"
            target.write_bytes(png(patch()))
            os.link(target, inbox / name)

    return drop


def folder(inbox: Path, name: str) -> None:
    (inbox / name).mkdir()
    (inbox / name / "inside.png").write_bytes(png(patch()))


def fifo(inbox: Path, name: str) -> None:
    os.mkfifo(inbox / name)


def slow_writer(seconds: float) -> Callable[[Path, str], None]:
    """A scanner writing its file in chunks for `seconds` (the daemon must wait for it to hold still)."""

    def drop(inbox: Path, name: str) -> None:
        data = png(patch())
        chunks = np.array_split(np.frombuffer(data, np.uint8), 12)

        def feed() -> None:
            with (inbox / name).open("wb") as handle:
                for part in chunks:
                    handle.write(part.tobytes())
                    handle.flush()
                    time.sleep(seconds / len(chunks))

        threading.Thread(target=feed, daemon=True).start()

    return drop


def removed_early(inbox: Path, name: str) -> None:
    (inbox / name).write_bytes(png(patch()))
    (inbox / name).unlink()


def replaced_while_settling(inbox: Path, name: str) -> None:
    """A file replaced (renamed over) while it settles: the daemon must answer the content that stayed."""
    (inbox / name).write_bytes(b"first, incomplete")

    def replace() -> None:
        time.sleep(0.1)
        staged = inbox / f".{name}.part"
        staged.write_bytes(png(patch()))
        staged.replace(inbox / name)

    threading.Thread(target=replace, daemon=True).start()


def unreadable(inbox: Path, name: str) -> None:
    (inbox / name).write_bytes(png(patch()))
    (inbox / name).chmod(0)


def _dicom(**attributes: object) -> Callable[[], bytes]:
    return lambda: dicom_bytes(patch(), **attributes)


def _dicom16(**attributes: object) -> Callable[[], bytes]:
    pixels = patch().astype(np.uint16) * 6  # up to 894: within 10 bits
    return lambda: dicom_bytes(pixels, **attributes)


def _unsupported_syntax() -> bytes:
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    from edge_app.dicom.sample import encode, image_dataset

    dataset = image_dataset(patch())
    dataset.PixelData = encapsulate([b"\xff\xd8\xff not really a JPEG"])
    dataset["PixelData"].VR = "OB"
    return encode(dataset, JPEGBaseline8Bit)


def _cmyk_jpeg() -> bytes:
    return pil_bytes(Image.fromarray(patch()).convert("CMYK"), "JPEG")


def _multipage_tiff() -> bytes:
    pages = [Image.fromarray(patch()), Image.fromarray(255 - patch())]
    return pil_bytes(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def _nan_tiff() -> bytes:
    values = patch().astype(np.float32)
    values[10:20, 10:20] = np.nan
    return pil_bytes(Image.fromarray(values, mode="F"), "TIFF")


ROI = b'{"regions": [{"label": "A", "x": 24, "y": 24, "radius": 8}]}'
DECODE, REGIONS, INGEST = "decode", "regions", "ingest"
TRUNCATED, UNSUPPORTED, EMPTY, TOO_MANY = (
    Refused(DECODE, kind)
    for kind in ("TruncatedFileError", "UnsupportedFormatError", "EmptyImageError", "TooManyPixelsError")
)
CLASSIFIED, NEEDS_ROI = Answered("classified"), Answered("needs_roi")


def kinds(outside: Path) -> list[Kind]:
    good = png(patch())
    return [
        Kind("zero-byte", write(b""), ".png", EMPTY),
        Kind("truncated-png", write(good[: len(good) // 2]), ".png", TRUNCATED),
        Kind(
            "truncated-jpeg",
            write(lambda: pil_bytes(Image.fromarray(patch(256)), "JPEG")[:600]),
            ".jpg",
            TRUNCATED,
        ),
        Kind(
            "truncated-tiff",
            write(lambda: pil_bytes(Image.fromarray(patch()), "TIFF")[:900]),
            ".tif",
            TRUNCATED,
        ),
        Kind("truncated-dicom", write(lambda: dicom_bytes(patch())[:-700]), ".dcm", TRUNCATED),
        Kind("text-named-png", write(b"Patient list, Monday\n"), ".png", UNSUPPORTED),
        Kind("png-named-dcm", write(good), ".dcm", CLASSIFIED),
        Kind("dicom-named-jpg", write(_dicom()), ".jpg", CLASSIFIED),
        Kind("jpeg-named-png", write(lambda: pil_bytes(Image.fromarray(patch()), "JPEG")), ".png", CLASSIFIED),
        Kind("one-pixel", write(lambda: png(np.full((1, 1), 9, np.uint8))), ".png", EMPTY),
        Kind("one-by-n", write(lambda: png(np.arange(300, dtype=np.uint8)[None, :])), ".png", NEEDS_ROI),
        Kind("png-header-bomb", write(png_header_bomb(100_000, 100_000)), ".png", TOO_MANY),
        Kind("tiff-header-bomb", write(tiff_header_bomb(90_000, 90_000)), ".tif", TOO_MANY),
        Kind(
            "dicom-header-bomb",
            write(_dicom(Rows=60_000, Columns=60_000)),
            ".dcm",
            TOO_MANY,
        ),
        Kind("png-16-bit", write(lambda: png(patch().astype(np.uint16) * 250)), ".png", CLASSIFIED),
        Kind("png-rgba", write(lambda: pil_bytes(Image.fromarray(patch()).convert("RGBA"), "PNG")), ".png", CLASSIFIED),
        Kind("png-palette", write(lambda: pil_bytes(Image.fromarray(patch()).convert("P"), "PNG")), ".png", CLASSIFIED),
        Kind("jpeg-cmyk", write(_cmyk_jpeg), ".jpg", CLASSIFIED),
        Kind("tiff-multipage", write(_multipage_tiff), ".tif", UNSUPPORTED),
        Kind("tiff-page-without-size", write(tiff_second_page_without_size), ".tif", TRUNCATED),
        Kind("bmp", write(lambda: pil_bytes(Image.fromarray(patch()), "BMP")), ".bmp", CLASSIFIED),
        Kind("pgm", write(lambda: pil_bytes(Image.fromarray(patch()), "PPM")), ".pgm", CLASSIFIED),
        Kind("png-trailing-bytes", write(good + b"trailing garbage"), ".png", CLASSIFIED),
        Kind(
            "dicom-multiframe",
            write(_dicom(NumberOfFrames=2, Rows=24)),
            ".dcm",
            UNSUPPORTED,
        ),
        Kind("dicom-no-pixels", write(_dicom(PixelData=None)), ".dcm", EMPTY),
        Kind("dicom-unsupported-syntax", write(_unsupported_syntax), ".dcm", UNSUPPORTED),
        Kind("dicom-monochrome1", write(_dicom(PhotometricInterpretation="MONOCHROME1")), ".dcm", CLASSIFIED),
        Kind("dicom-10-bits", write(_dicom16(BitsStored=10, HighBit=9)), ".dcm", CLASSIFIED),
        Kind(
            "dicom-bits-stored-lies",
            write(_dicom16(BitsStored=20, HighBit=19)),
            ".dcm",
            UNSUPPORTED,
        ),
        Kind("dicom-rows-too-many", write(_dicom(Rows=96)), ".dcm", TRUNCATED),
        Kind("dicom-rows-too-few", write(_dicom(Rows=24)), ".dcm", UNSUPPORTED),
        Kind("float-nan", write(_nan_tiff), ".tif", UNSUPPORTED),
        Kind("constant", write(lambda: png(np.full((48, 48), 7, np.uint8))), ".png", EMPTY),
        Kind("roi-invalid", with_roi(good, b'{"regions": ['), ".png", Refused(REGIONS, "RegionError")),
        Kind("roi-huge", with_roi(good, b" " * 5_000_000 + ROI), ".png", Refused(REGIONS, "RegionError")),
        Kind("roi-nested", with_roi(good, b"[" * 30_000 + b"]" * 30_000), ".png", Refused(REGIONS, "RegionError")),
        Kind(
            "roi-outside",
            with_roi(good, b'{"regions": [{"x": 4000, "y": 9, "radius": 5}]}'),
            ".png",
            Refused(REGIONS, "RegionError"),
        ),
        Kind("roi-good", with_roi(good, ROI), ".png", CLASSIFIED),
        Kind("roi-without-scan", sidecar_alone, ".roi.json", Left("a sidecar waits in the inbox for its scan")),
        Kind("name with spaces", write(good), ".png", CLASSIFIED),
        Kind("ünïcødé-乳房", write(good), ".png", CLASSIFIED),
        Kind("new\nline", write(good), ".png", CLASSIFIED),
        Kind("-leading-dash", write(good), ".png", CLASSIFIED),
        Kind("double__underscore__name", write(good), ".png", CLASSIFIED),
        Kind("n" * 251, write(good), ".png", CLASSIFIED),  # 255 bytes with its suffix
        Kind("symlink-to-etc", symlink_out, ".png", Refused(INGEST, "SymbolicLink")),
        Kind("hardlink-to-etc", hard_link_out(outside), ".png", Refused(INGEST, "HardLinkError")),
        Kind("folder-named-like-a-scan", folder, ".png", Left("a folder in a flat inbox is not a scan")),
        Kind("fifo", fifo, ".png", Refused(INGEST, "NotAFileError")),
        Kind("still-being-written", slow_writer(3.0), ".png", CLASSIFIED),
        Kind("removed-before-settling", removed_early, ".png", Left("gone before it was taken: nothing to answer")),
        Kind("replaced-while-settling", replaced_while_settling, ".png", CLASSIFIED),
        Kind("unreadable", unreadable, ".png", Refused(INGEST, "UnreadableFileError")),
    ]
