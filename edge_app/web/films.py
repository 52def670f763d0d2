"""The films a reader marks: read from where the device archived them, rendered by the device's own decoder.

At the default window a film is the picture the model's crops are cut from (`decode_bytes`); at any other window it
is the same decoder's grey values windowed linearly (`Intensities`), so a 12- or 16-bit film can be read at the
contrast a reader wants. The last film read is kept decoded, by its file (not its name): a reader moving the window
slider asks for the same film many times in a row, and the film of each answer to a mark is a hard link to it.

What the marking view shows to recognise a film (docs/security.md says why these and no more): laterality, view,
study date and accession number, from the film's own header; never the patient's name, id or birth date.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import pydicom

from edge_app.decode import (
    DEFAULT_MAX_PIXELS,
    Gray8,
    Intensities,
    decode_bytes,
    decode_intensities,
    is_dicom,
    max_file_bytes,
)
from edge_app.errors import InputImageError
from edge_app.fsutil import read_scan_file


@dataclass(frozen=True)
class Film:
    """One archived film, decoded: its default picture and its grey values."""

    key: tuple[int, int, int, int]  # device, inode, mtime, size: a reader's answer is another name of the same file
    picture: Gray8
    intensities: Intensities
    header: dict[str, str]


def recognisable(data: bytes) -> dict[str, str]:
    """What a reader needs to recognise the film, and nothing that names the patient."""
    if not is_dicom(data):
        return {}
    dataset = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return {
        "laterality": str(dataset.get("ImageLaterality", "") or dataset.get("Laterality", "")),
        "view": str(dataset.get("ViewPosition", "")),
        "study_date": str(dataset.get("StudyDate", "")),
        "accession": str(dataset.get("AccessionNumber", "")),
    }


class FilmReader:
    def __init__(self, archive: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.archive = archive
        self.max_pixels = max_pixels
        self._last: Film | None = None
        self._lock = threading.Lock()

    def path(self, settled_name: str) -> Path:
        """The archived file, never outside the archive (a name is the journal's, but a link could lead out)."""
        path = (self.archive / settled_name).resolve()
        if not path.is_relative_to(self.archive.resolve()):
            raise InputImageError("the film's archived name leads outside the archive")
        return path

    def film(self, settled_name: str) -> Film:
        path = self.path(settled_name)
        status = path.stat()
        key = (status.st_dev, status.st_ino, status.st_mtime_ns, status.st_size)
        with self._lock:
            if self._last is not None and self._last.key == key:
                return self._last
            data = read_scan_file(path, max_file_bytes(self.max_pixels), linked_from_archive=True)
            film = Film(
                key,
                decode_bytes(data, self.max_pixels).pixels,
                decode_intensities(data, self.max_pixels),
                recognisable(data),
            )
            self._last = film
            return film

    def facts(self, settled_name: str) -> dict[str, Any]:
        """Size, grey-value range and default window, and what identifies the film to a reader."""
        film = self.film(settled_name)
        values = film.intensities
        height, width = film.picture.shape
        return {
            "width": width,
            "height": height,
            "range": [values.low, values.high],
            "window": [values.centre, values.width],
            **film.header,
        }

    def png(self, settled_name: str, window: tuple[float, float] | None) -> bytes:
        film = self.film(settled_name)
        picture = film.picture if window is None else film.intensities.windowed(*window)
        # OpenCV's own settings: a 3328 x 4096 film in 93 ms and 6.1 MB, where asking for compression level 1 took
        # 262 ms and gave 6.8 MB (OpenCV 5; lossless either way)
        ok, encoded = cv2.imencode(".png", picture)
        if not ok:
            raise InputImageError("the film could not be encoded as PNG")
        return encoded.tobytes()
