"""``mammo-edge dicom-forward``: C-STORE every pending answer in the outbox to the configured destination.

One association per round carries every instance that is due. A refused association or a failure status is a failed
attempt for the instances concerned, retried after a delay that doubles with each failure (``[dicom.forward]``
``retry_seconds`` up to ``retry_max_seconds``); the delays live in the outbox, so they hold across restarts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pydicom
from pydicom.uid import (
    ComprehensiveSRStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
)
from pynetdicom import AE

from edge_app.config import DicomSection
from edge_app.dicom.outbox import Outbox
from edge_app.systemd import notify, watchdog_interval

log = logging.getLogger(__name__)
TICK_SECONDS = 1.0
SUCCESS_STATUSES = frozenset({0x0000, 0xB000, 0xB006, 0xB007})  # success, and the warnings that mean "stored"


class Forwarder:
    def __init__(self, dicom: DicomSection, outbox: Outbox, clock: Callable[[], float] = time.time) -> None:
        self.dicom = dicom
        self.outbox = outbox
        self.clock = clock
        self.ae = AE(ae_title=dicom.ae_title)
        for sop_class in (ComprehensiveSRStorage, SecondaryCaptureImageStorage):
            self.ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        timeout = dicom.forward.timeout_seconds
        self.ae.acse_timeout = self.ae.dimse_timeout = self.ae.network_timeout = timeout
        self.ae.connection_timeout = timeout

    def send_due(self) -> int:
        """One round: send what is due; returns how many the destination acknowledged."""
        due = self.outbox.due(self.clock())
        if not due:
            return 0
        forward = self.dicom.forward
        association = self.ae.associate(forward.host, forward.port, ae_title=forward.ae_title)
        if not association.is_established:
            self._failed(
                [path.name for path in due], f"no association with {forward.ae_title}@{forward.host}:{forward.port}"
            )
            return 0
        sent = 0
        try:
            for path in due:
                if self._send(association, path):
                    sent += 1
        finally:
            if association.is_established:
                association.release()
        return sent

    def _send(self, association: object, path: Path) -> bool:
        dataset = pydicom.dcmread(path)
        status = association.send_c_store(dataset)  # type: ignore[attr-defined]
        code = getattr(status, "Status", None)
        if code in SUCCESS_STATUSES:
            self.outbox.mark_sent(path.name)
            log.info("forwarded %s to %s", path.name, self.dicom.forward.ae_title)
            return True
        error = "no response (association lost)" if code is None else f"refused with status 0x{code:04X}"
        self._failed([path.name], error)
        return False

    def _failed(self, names: list[str], error: str) -> None:
        forward = self.dicom.forward
        self.outbox.note_failures(names, error, self.clock(), forward.retry_seconds, forward.retry_max_seconds)
        log.warning("forwarding %d answer(s) failed: %s; retrying later", len(names), error)

    def run(self, stopping: threading.Event) -> None:
        """Until `stopping`: a round every second; READY=1, WATCHDOG=1 and STATUS= for systemd."""
        interval = watchdog_interval()
        notify("READY=1")
        last_ping = time.monotonic()
        while not stopping.is_set():
            self.send_due()
            state = self.outbox.state()
            notify(f"STATUS=outbox: {state.pending} pending, {state.sent} sent")
            if interval is not None and time.monotonic() - last_ping >= interval:
                notify("WATCHDOG=1")
                last_ping = time.monotonic()
            stopping.wait(TICK_SECONDS)
        notify("STOPPING=1")
