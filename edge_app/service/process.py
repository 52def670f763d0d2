"""Settings of the service's process that its lanes need on a small board, applied once at start (`for_lanes`).

- OpenCV runs on one thread: the daemon's parallelism is its lanes (the interpreter's threads, the overlay lane, the
  writer); OpenCV's own pool put two more threads on two cores beside them, and each of its calls waited for a core.
- glibc keeps freed memory for reuse instead of returning each large block at once: a scan's pictures are a dozen
  arrays of 0.1-3 MB, which glibc otherwise maps and unmaps every time, and the page faults of mapping them afresh
  can cost more than the drawing (the 96 px patch overlay as it was drawn before: 7.3 ms of CPU against 2.6). Blocks
  up to 4 MiB come from the heap, and up to 16 MiB of free heap is kept.

Measured (`mammo-bench daemon`, 96 px int8, 2 threads, 400 files, 4 runs of each, interleaved; this host's steal
time moves one run by 15%): a patch's time in the daemon over its invoke, median, 1.35x with neither, 1.26x with
OpenCV on one thread, 1.37x with glibc's setting alone, 1.22x with both; peak resident size 224-231 MB in all.
"""

from __future__ import annotations

import ctypes
import logging

import cv2

log = logging.getLogger(__name__)
MMAP_THRESHOLD_BYTES = 4 * 2**20
TRIM_THRESHOLD_BYTES = 16 * 2**20
_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3


def for_lanes() -> None:
    """Apply the settings (each one that this platform has; a C library other than glibc keeps its own)."""
    cv2.setNumThreads(1)
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # the C library the interpreter runs on
    if mallopt is None:
        log.debug("no mallopt in this C library: its own allocation policy stays")
        return
    for parameter, value in ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)):
        if mallopt(parameter, value) != 1:
            log.warning("mallopt(%d, %d) was refused: large blocks are returned at once", parameter, value)
