"""``mammo-edge dicom-forward``: send every pending answer in the outbox to the configured destination.

A round runs as soon as the daemon queues an answer (the outbox's folder is watched) and every second. Each round
hands what is due to the destination, C-STORE (`DimseDestination`, one association per round) or STOW-RS
(`edge_app.dicom.stow`). What the destination could not take now (down, refused, a server error) is a failed
attempt, retried after a delay that doubles with each failure (``[dicom.forward]`` ``retry_seconds`` up to
``retry_max_seconds``); the delays live in the outbox, so they hold across restarts. What it refused for good is
moved aside with its reason, reported by ``status``, and not tried again.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pydicom
from pydicom.uid import (
    ComprehensiveSRStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
)
from pynetdicom import AE

from edge_app.config import DicomForwardSection, DicomSection
from edge_app.dicom.outbox import Outbox
from edge_app.service.intake import start_waker
from edge_app.systemd import notify, watchdog_interval

log = logging.getLogger(__name__)
TICK_SECONDS = 1.0
SUCCESS_STATUSES = frozenset({0x0000, 0xB000, 0xB006, 0xB007})  # success, and the warnings that mean "stored"


class Delivery(enum.Enum):
    STORED = "stored"
    RETRY = "retry"  # not now: the destination is down, busy or failed on its side
    REJECTED = "rejected"  # never as it is: the destination refused this instance (or this device) for good


@dataclass(frozen=True)
class Outcome:
    delivery: Delivery
    error: str = ""


class Destination(Protocol):
    def deliver(self, due: list[Path]) -> Iterator[tuple[Path, Outcome]]:
        """Send `due`, yielding each instance's outcome as soon as it is known."""


class DimseDestination:
    """C-STORE to ``ae_title@host:port``, every instance due in one association."""

    def __init__(self, forward: DicomForwardSection, calling_ae_title: str) -> None:
        self.forward = forward
        self.ae = AE(ae_title=calling_ae_title)
        for sop_class in (ComprehensiveSRStorage, SecondaryCaptureImageStorage):
            self.ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        timeout = forward.timeout_seconds
        self.ae.acse_timeout = self.ae.dimse_timeout = self.ae.network_timeout = timeout
        self.ae.connection_timeout = timeout

    def deliver(self, due: list[Path]) -> Iterator[tuple[Path, Outcome]]:
        forward = self.forward
        association = self.ae.associate(forward.host, forward.port, ae_title=forward.ae_title)
        if not association.is_established:
            down = Outcome(Delivery.RETRY, f"no association with {forward.destination}")
            yield from ((path, down) for path in due)
            return
        try:
            for path in due:
                status = association.send_c_store(pydicom.dcmread(path))
                yield path, dimse_outcome(getattr(status, "Status", None))
        finally:
            if association.is_established:
                association.release()


def dimse_outcome(code: int | None) -> Outcome:
    """A C-STORE status as an outcome: "data set does not match SOP class" (0xA9xx) and "cannot understand" (0xCxxx)
    say the instance itself is wrong, so sending it again cannot help; any other failure may pass later."""
    if code in SUCCESS_STATUSES:
        return Outcome(Delivery.STORED)
    if code is None:
        return Outcome(Delivery.RETRY, "no response (association lost)")
    error = f"refused with status 0x{code:04X}"
    return Outcome(Delivery.REJECTED if code >> 8 == 0xA9 or code >> 12 == 0xC else Delivery.RETRY, error)


def make_destination(dicom: DicomSection) -> Destination:
    """The destination ``[dicom.forward] protocol`` names."""
    if dicom.forward.protocol == "dicomweb":
        from edge_app.dicom.stow import DicomWebDestination

        return DicomWebDestination(dicom.forward)
    return DimseDestination(dicom.forward, dicom.ae_title)


class Forwarder:
    def __init__(
        self,
        dicom: DicomSection,
        outbox: Outbox,
        clock: Callable[[], float] = time.time,
        destination: Destination | None = None,
    ) -> None:
        self.dicom = dicom
        self.outbox = outbox
        self.clock = clock
        self.destination = make_destination(dicom) if destination is None else destination

    def send_due(self) -> int:
        """One round: send what is due; returns how many the destination acknowledged."""
        due = self.outbox.due(self.clock())
        if not due:
            return 0
        forward = self.dicom.forward
        retry: dict[str, list[str]] = {}
        sent = 0
        for path, outcome in self.destination.deliver(due):
            if outcome.delivery is Delivery.STORED:
                self.outbox.mark_sent(path.name)
                log.info("forwarded %s to %s", path.name, forward.destination)
                sent += 1
            elif outcome.delivery is Delivery.REJECTED:
                self.outbox.reject(path.name, outcome.error)
                log.error(
                    "%s refused %s for good: %s; kept in %s, not sent again until `mammo-edge dicom-requeue`",
                    forward.destination,
                    path.name,
                    outcome.error,
                    self.outbox.rejected_folder,
                )
            else:
                retry.setdefault(outcome.error, []).append(path.name)
        for error, names in retry.items():
            self.outbox.note_failures(names, error, self.clock(), forward.retry_seconds, forward.retry_max_seconds)
            log.warning("forwarding %d answer(s) failed: %s; retrying later", len(names), error)
        return sent

    def run(self, stopping: threading.Event) -> None:
        """Until `stopping`: a round as soon as an answer is queued, and every second (what is due again after its
        backoff); READY=1, WATCHDOG=1 and STATUS= for systemd."""
        interval = watchdog_interval()
        queued = threading.Event()
        observer = start_waker(self.outbox.pending_folder, queued)
        notify("READY=1")
        last_ping = time.monotonic()
        try:
            while not stopping.is_set():
                self.send_due()
                state = self.outbox.state()
                rejected = f", {state.rejected} rejected" if state.rejected else ""
                notify(f"STATUS=outbox: {state.pending} pending, {state.sent} sent{rejected}")
                if interval is not None and time.monotonic() - last_ping >= interval:
                    notify("WATCHDOG=1")
                    last_ping = time.monotonic()
                queued.wait(TICK_SECONDS)
                queued.clear()
        finally:
            observer.stop()
            observer.join()
        notify("STOPPING=1")
