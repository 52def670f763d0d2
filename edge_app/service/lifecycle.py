"""A scan's whole story: its states, the legal moves between them, and the one typed record that carries it.

Where the input file is in each state (the record says so; no fact is ever read back from a file name):

``RECEIVED``   the record exists, the file is still in the inbox under ``input_name`` (a reader's submission: the
               film is in ``archive/<source_name>`` and its regions wait in the submission queue)
``CLAIMED``    the file was renamed to ``processing/<scan_id>`` (its sidecar, if any, to
               ``processing/<scan_id>.sidecar``); from here on the daemon owns them
``ANALYSED``   answered (classified per region, or ``needs_roi``); the result stem and the settled name are reserved;
               the file is still in processing
``REJECTED``   refused with a stage, kind and reason; the settled name is reserved; the file is still in processing
``WRITTEN``    the result (or the rejection) files and the audit line are durable
``ARCHIVED``   the file is in ``archive/<settled_name>``                         (final)
``QUARANTINED`` the file is in ``quarantine/<settled_name>``                     (final)
``VANISHED``   the file left the inbox before it could be claimed (someone else took it) (final)

Every move goes through `advance`, which refuses an illegal one, so a bug can never skip a durable step.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from edge_app.errors import LifecycleError


class ScanState(str, Enum):
    RECEIVED = "received"
    CLAIMED = "claimed"
    ANALYSED = "analysed"
    REJECTED = "rejected"
    WRITTEN = "written"
    ARCHIVED = "archived"
    QUARANTINED = "quarantined"
    VANISHED = "vanished"

    @property
    def final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({ScanState.ARCHIVED, ScanState.QUARANTINED, ScanState.VANISHED})

LEGAL_MOVES: dict[ScanState, frozenset[ScanState]] = {
    ScanState.RECEIVED: frozenset({ScanState.CLAIMED, ScanState.VANISHED}),
    ScanState.CLAIMED: frozenset({ScanState.ANALYSED, ScanState.REJECTED}),
    # ANALYSED -> REJECTED: after a crash the scan is analysed again, and the model may refuse it this time.
    ScanState.ANALYSED: frozenset({ScanState.WRITTEN, ScanState.REJECTED}),
    ScanState.REJECTED: frozenset({ScanState.WRITTEN}),
    ScanState.WRITTEN: frozenset({ScanState.ARCHIVED, ScanState.QUARANTINED}),
    ScanState.ARCHIVED: frozenset(),
    ScanState.QUARANTINED: frozenset(),
    ScanState.VANISHED: frozenset(),
}


@dataclass(frozen=True)
class Failure:
    """Why a scan was refused: the pipeline stage, the error's class name (a technician reads it) and the reason."""

    stage: str
    kind: str
    reason: str


@dataclass(frozen=True)
class ScanRecord:
    """Everything known about one scan. Written to the journal before any file it describes is moved."""

    scan_id: str
    input_name: str  # the path relative to the inbox, exactly as dropped (posix separators)
    state: ScanState
    received: float  # wall-clock seconds since the epoch
    updated: float
    sidecar_name: str | None = None  # its region sidecar, relative to the inbox, as dropped (it travels with the scan)
    status: str | None = None  # the analysis: "classified" or "needs_roi" (None until analysed, and when rejected)
    sha256: str | None = None
    result_stem: str | None = None  # results/<stem>.json (+ .gradcam.jpg)
    settled_name: str | None = None  # path relative to archive/ or quarantine/
    duplicate_of: str | None = None  # result file of the first scan with the same content
    label: str | None = None
    probability: float | None = None
    failure: Failure | None = None
    answers: str | None = None  # a reader's regions: the scan id of the earlier record of the same film
    reader: str | None = None  # a reader's regions: the account that marked them
    source_name: str | None = None  # a reader's regions: the film, relative to archive/ (not the inbox)

    @property
    def rejected(self) -> bool:
        return self.failure is not None

    @property
    def result_file(self) -> str | None:
        return None if self.result_stem is None else f"{self.result_stem}.json"

    @property
    def overlay_file(self) -> str | None:
        return None if self.result_stem is None else f"{self.result_stem}{OVERLAY_SUFFIX}"

    @property
    def thumbnail_file(self) -> str | None:
        return None if self.overlay_file is None else thumbnail_name(self.overlay_file)


def new_scan_id() -> str:
    """Time-ordered and unique across restarts: nanoseconds in hex plus 24 random bits."""
    return f"{time.time_ns():x}{secrets.token_hex(3)}"


OVERLAY_SUFFIX = ".gradcam.jpg"
"""The overlay picture's file: ``<result stem>.gradcam.jpg`` (earlier versions wrote ``.gradcam.png``)."""
THUMBS = "thumbs"
"""The results page's small copies of the overlays, in the results folder."""


def thumbnail_name(overlay_name: str) -> str:
    """An overlay's thumbnail, relative to the results folder: ``thumbs/<result stem>.jpg`` (of an earlier version's
    PNG overlay too)."""
    stem = overlay_name.rsplit("/", 1)[-1].removesuffix(OVERLAY_SUFFIX).removesuffix(".gradcam.png")
    return f"{THUMBS}/{stem}.jpg"


SCAN_ID = re.compile(r"^[0-9a-f]{8,40}$")
"""What `new_scan_id` makes (and an adopted file's id): checked before an id from outside is used in a path or query."""


def is_scan_id(text: str) -> bool:
    return SCAN_ID.fullmatch(text) is not None


def received(input_name: str, sidecar_name: str | None = None, now: float | None = None) -> ScanRecord:
    """The record of a file just seen in the inbox (and of the sidecar that came with it), before it is claimed."""
    stamp = time.time() if now is None else now
    return ScanRecord(new_scan_id(), input_name, ScanState.RECEIVED, stamp, stamp, sidecar_name)


def resubmitted(
    scan_id: str, input_name: str, source_name: str, sidecar_name: str, answers: str, reader: str, now: float
) -> ScanRecord:
    """The record of a reader's regions on a film the device answered before (scan `answers`, whose film is in
    ``archive/<source_name>``): the same input, under the id the web app gave the submission."""
    return ScanRecord(
        scan_id,
        input_name,
        ScanState.RECEIVED,
        now,
        now,
        sidecar_name,
        answers=answers,
        reader=reader,
        source_name=source_name,
    )


def advance(record: ScanRecord, state: ScanState, now: float | None = None, **changes: Any) -> ScanRecord:
    """`record` moved to `state` with `changes`; LifecycleError if the move is not legal."""
    if state not in LEGAL_MOVES[record.state]:
        raise LifecycleError(f"scan {record.scan_id}: {record.state.value} -> {state.value} is not a legal move")
    return replace(record, state=state, updated=time.time() if now is None else now, **changes)
