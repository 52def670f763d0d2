"""One exception hierarchy for everything mammo-edge refuses, each with a human-readable reason.

The daemon records `stage` and the class name in a rejected scan's `.error.json`, so the classes are part of the
product's interface: a technician reads them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class MammoEdgeError(Exception):
    """Base of every error mammo-edge raises on purpose."""

    stage = "unknown"


class InputImageError(MammoEdgeError):
    """The input file cannot become a model input."""

    stage = "decode"


class UnsupportedFormatError(InputImageError):
    """The bytes are not an image format mammo-edge reads, or a DICOM it cannot decode."""


class TruncatedFileError(InputImageError):
    """The file ends before the image data does (an interrupted copy, a partial download)."""


class EmptyImageError(InputImageError):
    """The file holds no pixels, or only one constant value."""


class TooManyPixelsError(InputImageError):
    """The image is larger than the configured limit (decompression-bomb guard)."""


class RegionError(InputImageError):
    """A region sidecar (``.roi.json`` or ``.mask.png``) is invalid: bad JSON, an unknown key, a region outside the
    image, an empty mask. The scan is refused with the reason and kept."""

    stage = "regions"


class IngestError(MammoEdgeError):
    """An inbox entry that is not a file the daemon may read as a scan; it is quarantined unread."""

    stage = "ingest"


class NotAFileError(IngestError):
    """A named pipe, socket or device node: reading it could block the service or read a device."""


class HardLinkError(IngestError):
    """A file with other names: one may lie outside the inbox, in a folder the service must not touch."""


class FileTooLargeError(IngestError):
    """More bytes than any scan within the pixel limit needs: reading it could exhaust the device's memory."""


class UnreadableFileError(IngestError):
    """The service user has no permission to read the file."""


class ConfigError(MammoEdgeError):
    """A configuration value or key is wrong; the message names it."""

    stage = "config"


class BundleError(MammoEdgeError):
    """A model bundle is missing, corrupted or does not match what this code expects."""

    stage = "model"


class ModelRefusedError(BundleError):
    """A runtime cannot load a model file (an op it lacks, a corrupt file); `reason` is the runtime's own words."""

    def __init__(self, runtime: str, model: str, reason: str) -> None:
        super().__init__(f"{runtime} cannot run {model}: {reason}")
        self.reason = reason


class LifecycleError(MammoEdgeError):
    """A scan was asked to make a move its state does not allow (a bug, never an input problem)."""

    stage = "lifecycle"


class DataError(MammoEdgeError, ValueError):
    """A dataset, split, run folder, setting or argument given to a tool is invalid; the message says which."""

    stage = "data"


class MissingInputError(MammoEdgeError, FileNotFoundError):
    """A file or folder a tool was pointed at is not there (or is not what it should be)."""

    stage = "data"


class MeasurementError(MammoEdgeError, RuntimeError):
    """A benchmark could not measure what it was asked to (a child process failed, a daemon did not answer)."""

    stage = "benchmark"


class MissingExtraError(MammoEdgeError):
    """A tool was run where the optional dependencies it needs (an extra of the package) are not installed."""

    stage = "setup"


class RuntimeUnavailableError(MammoEdgeError):
    """No TFLite runtime that can run the model is installed."""

    stage = "runtime"


class AccessError(MammoEdgeError):
    """The web app's accounts and tokens: a name, password or token that cannot be used as asked."""

    stage = "web"


EXIT_OK = 0
EXIT_SOME_REJECTED = 1
EXIT_REFUSED = 2
EXIT_UNHEALTHY = 3  # `mammo-edge health`: the service is not running, stalled, paused or serves another model


def run_main(prog: str, command: Callable[[], int]) -> int:
    """Every console tool's `main` ends here: a MammoEdgeError is one line on stderr and exit code 2 (refused);
    anything else is a bug and keeps its traceback."""
    try:
        return command()
    except MammoEdgeError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_REFUSED
