"""Settings of the service's process that its lanes need on a small board, applied once at start (`for_lanes`).

OpenCV runs on one thread: the daemon's parallelism is its lanes (the interpreter's threads, the overlay lane, the
writer); OpenCV's own pool put two more threads on two cores beside them, and each of its calls waited for a core.
Measured (`mammo-bench daemon`, 96 px int8, 2 threads, 400 files, 4 runs of each, interleaved, before patch overlays
got cheaper; this host's steal time moves one run by 15%): a patch's time in the daemon over its invoke, median, 1.35x
with OpenCV's pool, 1.26x without.

Tried and left out: glibc keeping freed blocks up to 4 MiB for reuse (mallopt) took the median to 1.22x, but each
lane's arena then keeps up to its trim threshold of free memory: the resident size grew by 6 MB between the 200th and
the 2000th scan of `mammo-bench soak` (0.3 MB without), a growth a soak test cannot tell from a leak.
"""

from __future__ import annotations

import cv2


def for_lanes() -> None:
    """Apply the settings."""
    cv2.setNumThreads(1)
