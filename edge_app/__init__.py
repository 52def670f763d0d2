"""mammo-edge device core: decoding, preprocessing, model bundles and the watched-folder daemon.

This package is the light half of the project: it depends on numpy, OpenCV, Pillow, pydicom, watchdog and a
TFLite runtime only, never on TensorFlow, so it runs on a Raspberry Pi or Jetson as it is.
"""

from __future__ import annotations

__version__ = "0.1.0"
