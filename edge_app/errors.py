"""One exception hierarchy for everything mammo-edge refuses, each with a human-readable reason.

The daemon records `stage` and the class name in a rejected scan's `.error.json`, so the classes are part of the
product's interface: a technician reads them.
"""

from __future__ import annotations


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


class RuntimeUnavailableError(MammoEdgeError):
    """No TFLite runtime that can run the model is installed."""

    stage = "runtime"
