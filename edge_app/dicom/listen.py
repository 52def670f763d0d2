"""``mammo-edge dicom-listen``: a Storage SCP whose only job is to put what it receives into the inbox, durably.

- Associations: only the configured calling AE titles (A-ASSOCIATE-RJ "calling AE title not recognised" otherwise)
  and, when ``allowed_networks`` is set, only from those source addresses (A-ASSOCIATE-RJ, permanent).
- C-ECHO answers success. C-STORE accepts Digital Mammography (for presentation and for processing) and Secondary
  Capture images, in the uncompressed transfer syntaxes and in every compressed one this installation can decode
  (asked of pydicom at start-up, so a syntax is never accepted that the analysis would then refuse), and the regions
  others mark on them: DICOM Segmentations and measurement reports (Enhanced, Comprehensive and Comprehensive 3D SR,
  as a reader's viewer exports them), each stored as it came as the region sidecar (``<image UID>.seg.dcm``,
  ``<image UID>.sr.dcm``) of every image it references. Any other SOP class is not negotiated.
- Each image is written as ``<SOP Instance UID>.dcm`` (a temporary dot-file, fsync, rename, folder fsync) and success
  is answered only after that. An instance whose name is in the inbox or in the daemon's journal was received before:
  it is answered success and not stored again, so a re-sent instance is analysed once; unless regions marked on it
  since (a reader's report or a segmentation, received after its answer) wait in the inbox: then it is stored again
  and analysed with them, a further answer in its study. The check and the write are one step under a lock, so two
  associations sending the same instance at once store it once.

Nothing patient-identifying is logged: an instance is named by its SOP Instance UID and the calling AE title.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from pathlib import Path
from typing import Any

from pydicom import uid as uids
from pydicom.dataset import Dataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import (
    DigitalMammographyXRayImageStorageForPresentation,
    DigitalMammographyXRayImageStorageForProcessing,
    SecondaryCaptureImageStorage,
    SegmentationStorage,
)
from pynetdicom import AE, evt

from edge_app.config import DicomSection
from edge_app.dicomregions import SR_CLASSES, seg_images, sr_images
from edge_app.errors import ConfigError, RegionError
from edge_app.fsutil import TEMP_SUFFIX, atomic_write
from edge_app.regions import SEG_SUFFIX, SR_SUFFIX
from edge_app.service.journal import Journal
from edge_app.systemd import notify, watchdog_interval

log = logging.getLogger(__name__)
IMAGE_CLASSES = (
    DigitalMammographyXRayImageStorageForPresentation,
    DigitalMammographyXRayImageStorageForProcessing,
    SecondaryCaptureImageStorage,
)
UNCOMPRESSED = (uids.ExplicitVRLittleEndian, uids.ImplicitVRLittleEndian, uids.ExplicitVRBigEndian)
COMPRESSED_CANDIDATES = (
    uids.JPEGBaseline8Bit,
    uids.JPEGExtended12Bit,
    uids.JPEGLossless,
    uids.JPEGLosslessSV1,
    uids.JPEGLSLossless,
    uids.JPEGLSNearLossless,
    uids.JPEG2000Lossless,
    uids.JPEG2000,
    uids.RLELossless,
)
VERIFICATION = "1.2.840.10008.1.1"
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
# A-ASSOCIATE-RJ (PS3.8 9.3.4): rejected-permanent, by the service user, no reason given (there is no code for
# "address not allowed"; the calling-AE refusal has its own, sent by pynetdicom).
REJECT_ADDRESS = (0x01, 0x01, 0x01)
TICK_SECONDS = 0.5


def decodable_syntaxes() -> tuple[str, ...]:
    """The transfer syntaxes an image may come in: the uncompressed ones and those pydicom can decode here."""
    compressed = tuple(syntax for syntax in COMPRESSED_CANDIDATES if get_decoder(syntax).is_available)
    return (*UNCOMPRESSED, *compressed)


def is_uid(value: str) -> bool:
    """A UID as PS3.5 9.1 writes it: digits and dots, at most 64 characters (also what makes it a safe file name)."""
    return 0 < len(value) <= 64 and all(part.isdigit() and part.isascii() for part in value.split("."))


class StorageListener:
    def __init__(self, dicom: DicomSection, inbox: Path, journal_path: Path) -> None:
        if not dicom.enabled:
            raise ConfigError("[dicom] enabled is false: the DICOM listener is off (set it to true to receive)")
        self.dicom = dicom
        self.inbox = inbox
        self.networks = [ipaddress.ip_network(network, strict=False) for network in dicom.allowed_networks]
        inbox.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(journal_path)
        self._lock = threading.Lock()
        self.ae = self._application_entity()

    def _application_entity(self) -> AE:
        ae = AE(ae_title=self.dicom.ae_title)
        ae.require_calling_aet = list(self.dicom.allowed_ae_titles)
        ae.maximum_associations = self.dicom.max_associations
        ae.add_supported_context(VERIFICATION)
        syntaxes = list(decodable_syntaxes())
        for sop_class in IMAGE_CLASSES:
            ae.add_supported_context(sop_class, syntaxes)
        ae.add_supported_context(SegmentationStorage, [*UNCOMPRESSED, uids.RLELossless])
        for report_class in SR_CLASSES:
            ae.add_supported_context(report_class, list(UNCOMPRESSED))
        return ae

    def handlers(self) -> list[Any]:
        return [
            (evt.EVT_REQUESTED, self.on_requested),
            (evt.EVT_C_ECHO, self.on_echo),
            (evt.EVT_C_STORE, self.on_store),
        ]

    def address_allowed(self, address: str) -> bool:
        if not self.networks:
            return True
        try:
            host = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(host in network for network in self.networks)

    def on_requested(self, event: Any) -> None:
        address = event.assoc.requestor.address
        if not self.address_allowed(address):
            log.warning(
                "association from %s (%s) refused: address not allowed", address, event.assoc.requestor.ae_title
            )
            event.assoc.acse.send_reject(*REJECT_ADDRESS)
            event.assoc.kill()  # as pynetdicom's own refusals: the reject is sent before the socket closes

    def on_echo(self, event: Any) -> int:
        return SUCCESS

    def on_store(self, event: Any) -> int:
        """Store one instance; the returned status is what the sender sees."""
        calling = event.assoc.requestor.ae_title
        try:
            dataset: Dataset = event.dataset
            sop_uid = str(dataset.get("SOPInstanceUID", ""))
            sop_class = str(dataset.get("SOPClassUID", ""))
        except Exception as exc:  # pydicom raises many kinds on a malformed data set; the sender needs one status
            log.warning("instance from %s not understood: %s", calling, exc)
            return CANNOT_UNDERSTAND
        if not is_uid(sop_uid) or sop_class != event.context.abstract_syntax:
            log.warning("instance from %s refused: its SOP class or instance UID does not match the request", calling)
            return DATASET_DOES_NOT_MATCH
        if sop_class == SegmentationStorage or sop_class in SR_CLASSES:
            return self._store_regions(event.encoded_dataset(), sop_class, sop_uid, calling)
        return self._store_once({f"{sop_uid}.dcm": event.encoded_dataset()}, sop_uid, calling)

    def _store_regions(self, encoded: bytes, sop_class: str, sop_uid: str, calling: str) -> int:
        """A Segmentation or a measurement report is stored as it came, as the region sidecar of every image it marks
        (``<image UID>.seg.dcm`` / ``.sr.dcm``); the analysis reads from it the regions of its own image."""
        kind, suffix = ("segmentation", SEG_SUFFIX) if sop_class == SegmentationStorage else ("report", SR_SUFFIX)
        try:
            images = seg_images(encoded) if sop_class == SegmentationStorage else sr_images(encoded)
        except (RegionError, AttributeError, KeyError, ValueError, TypeError, RuntimeError) as exc:
            log.warning("%s %s from %s refused: %s", kind, sop_uid, calling, exc)
            return CANNOT_UNDERSTAND
        if not images or not all(is_uid(image) for image in images):
            log.warning("%s %s from %s refused: it references no image by a valid UID", kind, sop_uid, calling)
            return DATASET_DOES_NOT_MATCH
        return self._store_once({f"{image}{suffix}": encoded for image in sorted(images)}, sop_uid, calling)

    def _store_once(self, files: dict[str, bytes], sop_uid: str, calling: str) -> int:
        with self._lock:
            try:
                for name, data in files.items():
                    if (self.inbox / name).exists() or (
                        self.journal.knows_name(name) and not self._regions_wait_for(name)
                    ):
                        log.info("%s from %s was received before: not stored again", name, calling)
                        continue
                    atomic_write(self.inbox / name, data)
                    log.info("received %s from %s", name, calling)
            except OSError as exc:
                log.error("instance %s from %s not stored: %s", sop_uid, calling, exc)
                return OUT_OF_RESOURCES
        return SUCCESS

    def _regions_wait_for(self, name: str) -> bool:
        """Whether regions marked on image `name` after it was analysed wait in the inbox (a reader's report or a
        segmentation): the image sent again is then stored again, and analysed with them."""
        stem = name.removesuffix(".dcm")
        return any((self.inbox / f"{stem}{suffix}").exists() for suffix in (SR_SUFFIX, SEG_SUFFIX))

    def serve(self, stopping: threading.Event) -> None:
        """Listen until `stopping`; READY=1 once the port is open, then WATCHDOG=1 pings."""
        for leftover in self.inbox.glob(f".*{TEMP_SUFFIX}"):
            if leftover.name.endswith(f".dcm{TEMP_SUFFIX}"):
                leftover.unlink(missing_ok=True)  # our own write, cut short by a kill: the sender saw no success
        address = (self.dicom.bind_address, self.dicom.port)
        server = self.ae.start_server(address, block=False, evt_handlers=self.handlers())
        assert server is not None, "a non-blocking start returns its server"
        log.info("listening as %s on %s:%d", self.dicom.ae_title, *address)
        notify("READY=1")
        interval = watchdog_interval()
        last_ping = time.monotonic()
        try:
            while not stopping.is_set():
                if interval is not None and time.monotonic() - last_ping >= interval:
                    notify("WATCHDOG=1")
                    last_ping = time.monotonic()
                stopping.wait(TICK_SECONDS)
        finally:
            notify("STOPPING=1")
            server.shutdown()
            self.journal.close()
