"""The storage listener, driven by dcmtk's echoscu and storescu (and pynetdicom where dcmtk cannot say it): who may
associate, what is accepted, durable writes under the instance's UID, a re-sent instance stored once, a kill
mid-transfer that the sender sees and a re-send repairs, Segmentations turned into region sidecars."""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicomfiles import encode, mammogram, measurement_report
from dicomnode import SENDER, echoscu, listening, needs_dcmtk, node_config, storescu, wait_for_port
from notifysocket import notify_socket
from pydicom.pixels.encoders.base import get_encoder
from pydicom.uid import (
    CTImageStorage,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)
from pynetdicom import AE

from edge_app.cli import main
from edge_app.config import DicomSection
from edge_app.decode import decode_bytes
from edge_app.dicom import listen
from edge_app.dicom.listen import StorageListener, decodable_syntaxes, is_uid
from edge_app.dicomregions import seg_regions, sr_regions
from edge_app.errors import ConfigError
from edge_app.fsutil import TEMP_SUFFIX
from edge_app.service.daemon import journal_path
from edge_app.service.journal import Journal
from edge_app.service.lifecycle import received

REPO = Path(__file__).resolve().parents[1]


def _mammogram_file(folder: Path, rows: int = 256, columns: int = 192, syntax: str | None = None) -> Path:
    pixels = np.random.default_rng(rows).integers(0, 4096, (rows, columns)).astype(np.uint16)
    dataset = mammogram(pixels)
    if syntax is not None:
        dataset.compress(syntax)
    path = folder / f"{dataset.SOPInstanceUID}.src.dcm"
    path.write_bytes(encode(dataset, dataset.file_meta.TransferSyntaxUID))
    return path


def _stored(inbox: Path) -> list[str]:
    return sorted(path.name for path in inbox.iterdir())


def test_the_listener_is_off_unless_enabled_and_lets_nobody_in_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    off = r"^\[dicom\] enabled is false: the DICOM listener is off \(set it to true to receive\)$"
    with pytest.raises(ConfigError, match=off):
        StorageListener(DicomSection(allowed_ae_titles=("X",)), tmp_path / "inbox", tmp_path / "j.sqlite3")
    config = tmp_path / "config.toml"
    config.write_text("[dicom]\nenabled = true\n")
    assert main(["dicom-listen", "--config", str(config)]) == 2
    assert "[dicom] enabled = true but allowed_ae_titles is empty: nobody could send" in capsys.readouterr().err
    config.write_text(f'[paths]\ninbox = "{tmp_path / "inbox"}"\nstate = "{tmp_path / "state"}"\n')
    assert main(["dicom-listen", "--config", str(config)]) == 2
    assert "[dicom] enabled is false: the DICOM listener is off" in capsys.readouterr().err
    assert main(["dicom-forward", "--config", str(config)]) == 2
    assert "[dicom.forward] host is empty: there is nowhere to forward to" in capsys.readouterr().err


@pytest.mark.parametrize("watchdog_usec", [100_000, 60_000_000])
def test_the_listener_tells_systemd_it_is_ready_alive_and_stopping_and_clears_only_its_own_cut_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, watchdog_usec: int
) -> None:
    monkeypatch.setattr(listen, "TICK_SECONDS", 0.02)
    pinged = watchdog_usec == 100_000  # a ping every 0.05 s; the other, every 30 s
    config = node_config(tmp_path)
    config.paths.inbox.mkdir(parents=True)
    cut = config.paths.inbox / f".{generate_uid()}.dcm{TEMP_SUFFIX}"  # a kill mid-transfer left it
    dropped = config.paths.inbox / f".scan.png{TEMP_SUFFIX}"  # someone else's copy into the inbox, still running
    for path in (cut, dropped):
        path.write_bytes(b"partial")
    with notify_socket(tmp_path, monkeypatch, watchdog_usec) as systemd:
        with listening(config):
            assert systemd.until("READY=1") == ["READY=1"]
            assert not cut.exists() and dropped.read_bytes() == b"partial"
            if pinged:  # and the loop keeps pinging
                assert systemd.until("WATCHDOG=1") + systemd.until("WATCHDOG=1") == ["WATCHDOG=1", "WATCHDOG=1"]
            else:
                time.sleep(0.2)  # ten ticks
        stopped = systemd.until("STOPPING=1")
    assert set(stopped[:-1]) <= ({"WATCHDOG=1"} if pinged else set())


def test_uids_are_checked_before_they_become_file_names() -> None:
    assert is_uid("1.2.840.10008.5.1.4.1.1.1.2") and is_uid("1")
    assert is_uid("1." + "2" * 62) and not is_uid("1." + "2" * 63)  # 64 characters at most
    for bad in ("", "../etc/passwd", "1.2.a", "1..2", "1." * 40, "1.2 ", "\uff11.2"):
        assert not is_uid(bad), bad


def test_compressed_syntaxes_are_offered_only_where_they_decode() -> None:
    offered = decodable_syntaxes()
    assert offered[:3] == listen.UNCOMPRESSED and RLELossless in offered  # pydicom decodes RLE natively
    for syntax in listen.COMPRESSED_CANDIDATES:
        from pydicom.pixels.decoders.base import get_decoder

        assert (syntax in offered) == get_decoder(syntax).is_available


@needs_dcmtk
def test_echo_from_an_allowed_title_and_refusals_of_others(tmp_path: Path) -> None:
    with listening(node_config(tmp_path)) as node:
        assert echoscu(node.port).returncode == 0
        refused = echoscu(node.port, calling="STRANGER")
        assert refused.returncode != 0 and "Calling AE Title Not Recognized" in refused.stdout + refused.stderr
    with listening(node_config(tmp_path, allowed_networks=("10.0.0.0/8",))) as node:
        refused = echoscu(node.port)
        assert refused.returncode != 0 and "Association Rejected" in refused.stdout + refused.stderr
    # a network written with host bits (10.0.0.5/8), as the config accepts it: the network it lies in
    with listening(node_config(tmp_path, allowed_networks=("127.0.0.0/8", "10.0.0.5/8"))) as node:
        assert echoscu(node.port).returncode == 0
        allowed = node.listener.address_allowed
        assert allowed("10.1.2.3") and not allowed("192.168.0.1") and not allowed("localhost")  # no IP: not in any


@needs_dcmtk
def test_a_mammogram_is_stored_durably_under_its_uid_and_a_resend_is_stored_once(tmp_path: Path) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    first, second = _mammogram_file(sources, 256), _mammogram_file(sources, 300)
    with listening(node_config(tmp_path)) as node:
        sent = storescu(node.port, first, second)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        names = [f"{pydicom.dcmread(path).SOPInstanceUID}.dcm" for path in (first, second)]
        assert _stored(node.inbox) == sorted(names)
        stored = pydicom.dcmread(node.inbox / names[0])
        original = pydicom.dcmread(first)
        assert stored.PixelData == original.PixelData and stored.PatientID == original.PatientID
        # Sent again while waiting in the inbox, then again after the daemon took it (its journal knows the name).
        before = (node.inbox / names[0]).stat().st_mtime_ns
        assert storescu(node.port, first).returncode == 0
        assert (node.inbox / names[0]).stat().st_mtime_ns == before
        journal = Journal(journal_path(node.config))
        journal.insert(received(names[0]))
        journal.close()
        (node.inbox / names[0]).unlink()
        assert storescu(node.port, first).returncode == 0
        assert _stored(node.inbox) == [names[1]]
        # Regions marked on it since (a reader's report waiting in the inbox): sent again, it is stored again.
        marks = node.inbox / names[0].replace(".dcm", ".sr.dcm")
        marks.write_bytes(b"a reader's report")
        assert storescu(node.port, first).returncode == 0
        assert (node.inbox / names[0]).is_file()


@needs_dcmtk
def test_only_mammography_and_secondary_capture_images_are_accepted(tmp_path: Path) -> None:
    pixels = np.zeros((64, 64), np.uint16)
    ct = mammogram(pixels, SOPClassUID=CTImageStorage, Modality="CT")
    path = tmp_path / "ct.dcm"
    path.write_bytes(encode(ct))
    with listening(node_config(tmp_path)) as node:
        refused = storescu(node.port, path)
        assert refused.returncode != 0, refused.stdout
        assert "No Acceptable Presentation Contexts" in refused.stdout + refused.stderr
        assert _stored(node.inbox) == []


@needs_dcmtk
def test_compressed_mammograms_arrive_in_their_own_syntax_and_decode(tmp_path: Path) -> None:
    syntaxes = [
        syntax
        for syntax in (RLELossless, JPEGLSLossless, JPEG2000Lossless)
        if syntax in decodable_syntaxes() and get_encoder(syntax).is_available
    ]
    assert RLELossless in syntaxes  # at least the one pydicom writes natively
    files = [_mammogram_file(tmp_path, 128 + index, syntax=syntax) for index, syntax in enumerate(syntaxes)]
    flags = {RLELossless: "-xr", JPEGLSLossless: "-xt", JPEG2000Lossless: "-xv"}
    with listening(node_config(tmp_path)) as node:
        for path, syntax in zip(files, syntaxes, strict=True):
            sent = storescu(node.port, path, options=(flags[syntax],))
            assert sent.returncode == 0, sent.stdout + sent.stderr
        for path, syntax in zip(files, syntaxes, strict=True):
            stored = node.inbox / f"{pydicom.dcmread(path).SOPInstanceUID}.dcm"
            assert pydicom.dcmread(stored).file_meta.TransferSyntaxUID == syntax
            assert decode_bytes(stored.read_bytes()).pixels.shape == (128 + files.index(path), 192)


def test_a_full_disk_is_reported_to_the_sender_and_nothing_is_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_space(path: Path, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(listen, "atomic_write", no_space)
    dataset = pydicom.dcmread(_mammogram_file(tmp_path))
    caplog.set_level(logging.ERROR, logger=listen.__name__)
    with listening(node_config(tmp_path)) as node:
        status = _send_with_pynetdicom(node.port, dataset)
        assert status == listen.OUT_OF_RESOURCES
        assert _stored(node.inbox) == []
    assert caplog.messages == [
        f"instance {dataset.SOPInstanceUID} from {SENDER} not stored: [Errno 28] No space left on device"
    ]


@dataclass
class _Requestor:
    ae_title: str = SENDER


@dataclass
class _Association:
    requestor: _Requestor = field(default_factory=_Requestor)


@dataclass
class _Context:
    abstract_syntax: str


@dataclass
class _StoreEvent:
    """What pynetdicom hands `on_store`: the data set, the context it came in, who sent it, its encoded bytes."""

    dataset: pydicom.Dataset
    context: _Context
    assoc: _Association = field(default_factory=_Association)

    def __post_init__(self) -> None:
        self.encoded = encode(self.dataset, self.dataset.file_meta.TransferSyntaxUID)

    def encoded_dataset(self) -> bytes:
        return self.encoded


def test_an_instance_is_refused_unless_both_its_uids_match_the_request(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    listener = StorageListener(node_config(tmp_path).dicom, tmp_path / "inbox", tmp_path / "journal.sqlite3")
    dataset = pydicom.dcmread(_mammogram_file(tmp_path))
    other_class = _StoreEvent(dataset, _Context(SecondaryCaptureImageStorage))
    caplog.set_level(logging.INFO, logger=listen.__name__)
    assert listener.on_store(other_class) == listen.DATASET_DOES_NOT_MATCH
    assert caplog.messages == [
        f"instance from {SENDER} refused: its SOP class or instance UID does not match the request"
    ]
    assert listener.on_store(_StoreEvent(dataset, _Context(dataset.SOPClassUID))) == listen.SUCCESS
    assert caplog.messages[-1] == f"received {dataset.SOPInstanceUID}.dcm from {SENDER}"
    assert _stored(tmp_path / "inbox") == [f"{dataset.SOPInstanceUID}.dcm"]
    listener.journal.close()


def _send_with_pynetdicom(port: int, dataset: pydicom.Dataset) -> int:
    ae = AE(ae_title=SENDER)
    ae.add_requested_context(dataset.SOPClassUID, [dataset.file_meta.TransferSyntaxUID])
    association = ae.associate("127.0.0.1", port, ae_title="MAMMO_EDGE")
    assert association.is_established
    try:
        return int(association.send_c_store(dataset).Status)
    finally:
        association.release()


def _segmentation(source: pydicom.Dataset, mask: np.ndarray) -> pydicom.Dataset:
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="mass",
        segmented_property_category=hd.sr.CodedConcept("49755003", "SCT", "Morphologically abnormal structure"),
        segmented_property_type=hd.sr.CodedConcept("4147007", "SCT", "Mass"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    return hd.seg.Segmentation(
        source_images=[source],
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=generate_uid(),
        series_number=7,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="test",
        manufacturer_model_name="test",
        software_versions="1",
        device_serial_number="1",
    )


def test_a_segmentation_becomes_the_region_sidecar_of_the_image_it_references(tmp_path: Path) -> None:
    source = pydicom.dcmread(_mammogram_file(tmp_path, 200, 160))
    mask = np.zeros((200, 160), bool)
    mask[40:90, 30:70] = True
    mask[120:150, 100:140] = True
    segmentation = _segmentation(source, mask)
    with listening(node_config(tmp_path)) as node:
        assert _send_with_pynetdicom(node.port, segmentation) == listen.SUCCESS
        sidecar = node.inbox / f"{source.SOPInstanceUID}.seg.dcm"
        assert _stored(node.inbox) == [sidecar.name]
        regions = seg_regions(sidecar.read_bytes(), source.SOPInstanceUID, 160, 200)
        boxes = sorted((region.bounds(160, 200).x0, region.bounds(160, 200).y0) for region in regions)
        assert boxes == [(30, 40), (100, 120)]
        sidecar.unlink()  # taken by the daemon, which recorded it as the scan's sidecar: a re-send is not stored
        journal = Journal(journal_path(node.config))
        journal.insert(received(f"{source.SOPInstanceUID}.dcm", sidecar.name))
        journal.close()
        assert _send_with_pynetdicom(node.port, segmentation) == listen.SUCCESS
        assert _stored(node.inbox) == []


@pytest.mark.parametrize("layout", ["group", "measurement"])
def test_a_measurement_report_becomes_the_region_sidecar_of_each_image_it_marks(
    tmp_path: Path, layout: str, caplog: pytest.LogCaptureFixture
) -> None:
    first = pydicom.dcmread(_mammogram_file(tmp_path, 200, 160))
    second = pydicom.dcmread(_mammogram_file(tmp_path, 200, 161))
    circle = ("CIRCLE", [(80.5, 60.5), (100.5, 60.5)])
    report = measurement_report(first, [circle], layout)
    both = measurement_report(first, [circle], layout, marks=[(second, circle)])
    caplog.set_level(logging.INFO, logger=listen.__name__)
    with listening(node_config(tmp_path)) as node:
        assert _send_with_pynetdicom(node.port, report) == listen.SUCCESS
        assert _stored(node.inbox) == [f"{first.SOPInstanceUID}.sr.dcm"]
        stored = (node.inbox / f"{first.SOPInstanceUID}.sr.dcm").read_bytes()
        assert pydicom.dcmread(io.BytesIO(stored)).SOPInstanceUID == report.SOPInstanceUID  # kept as it came
        assert sr_regions(stored, first.SOPInstanceUID, 160, 200, 8.0)[0].radius == 20.0
        (node.inbox / f"{first.SOPInstanceUID}.sr.dcm").unlink()
        assert _send_with_pynetdicom(node.port, both) == listen.SUCCESS  # marks two images: a sidecar each
        assert sorted(_stored(node.inbox)) == sorted(f"{image.SOPInstanceUID}.sr.dcm" for image in (first, second))
        earlier = node.inbox / f"{min(first.SOPInstanceUID, second.SOPInstanceUID)}.sr.dcm"
        for path in node.inbox.iterdir():
            path.unlink()
        earlier.write_bytes(b"received before")  # the first sidecar in order is there already: the next is stored
        assert _send_with_pynetdicom(node.port, both) == listen.SUCCESS
        assert sorted(_stored(node.inbox)) == sorted(f"{image.SOPInstanceUID}.sr.dcm" for image in (first, second))
        assert earlier.read_bytes() == b"received before"
        nothing = measurement_report(first, [], layout)
        assert _send_with_pynetdicom(node.port, nothing) == listen.DATASET_DOES_NOT_MATCH
    assert caplog.messages[-1] == (
        f"report {nothing.SOPInstanceUID} from {SENDER} refused: it references no image by a valid UID"
    )
    assert f"received {second.SOPInstanceUID}.sr.dcm from {SENDER}" in caplog.messages


@needs_dcmtk
def test_a_kill_mid_transfer_fails_the_sender_and_the_resend_is_stored_once(tmp_path: Path) -> None:
    """A real `mammo-edge dicom-listen` process, killed while a large film is on the wire."""
    config = node_config(tmp_path)
    config_file = tmp_path / "config.toml"
    config_file.write_text(config.to_toml())
    film = _mammogram_file(tmp_path, 4096, 3328)  # a full-field film's size: 27 MB on the wire
    command = [sys.executable, "-m", "edge_app.cli", "dicom-listen", "--config", str(config_file)]
    environment = {**os.environ, "PYTHONPATH": str(REPO)}

    def start() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(config.dicom.port, process=process)
        return process

    listener = start()
    sender = subprocess.Popen(
        [
            "storescu",
            "-v",
            "-aet",
            SENDER,
            "-aec",
            "MAMMO_EDGE",
            "--max-send-pdu",
            "4096",
            "127.0.0.1",
            str(config.dicom.port),
            str(film),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert sender.stdout is not None
    seen = []
    for line in sender.stdout:  # killed once the film is on the wire (its 6,500 PDUs take a while)
        seen.append(line)
        if "Sending Store Request" in line:
            listener.send_signal(signal.SIGKILL)
            break
    listener.wait()
    output = "".join(seen) + sender.communicate(timeout=60)[0]
    assert sender.returncode != 0, output  # the sender knows the film did not arrive
    assert _stored(config.paths.inbox) == []  # and nothing half-written is under a final name
    listener = start()
    try:
        for _ in range(2):  # the re-send, and one more for good measure
            assert storescu(config.dicom.port, film).returncode == 0
        assert _stored(config.paths.inbox) == [f"{pydicom.dcmread(film).SOPInstanceUID}.dcm"]
        assert (
            pydicom.dcmread(io.BytesIO((config.paths.inbox / _stored(config.paths.inbox)[0]).read_bytes())).PixelData
            == pydicom.dcmread(film).PixelData
        )
    finally:
        listener.terminate()
        assert listener.wait(timeout=30) == 0  # SIGTERM is a clean stop


def test_the_device_logs_no_header_value_the_dicom_libraries_find_invalid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Reading a scan and copying its header into an answer: pydicom would log and warn about each value it finds
    invalid (a study ID too long here; for others it quotes the value). The device's logging set-up silences that."""
    import logging
    import warnings

    import pydicom.config
    from test_dicom_answers import CLASSIFIED_ANALYSIS, IDENTITY, _record

    from edge_app.cli import setup_logging
    from edge_app.dicom.answers import DicomAnswerWriter

    settings = pydicom.config.settings
    for mode in ("reading_validation_mode", "writing_validation_mode"):
        monkeypatch.setattr(settings, mode, getattr(settings, mode))
    for name in ("pydicom", "pynetdicom", "edge_app"):
        logger = logging.getLogger(name)
        monkeypatch.setattr(logger, "level", logger.level)
        monkeypatch.setattr(logger, "handlers", list(logger.handlers))
    pixels = np.arange(4096, dtype=np.uint16).reshape(64, 64)
    scan = tmp_path / "scan.dcm"
    scan.write_bytes(encode(mammogram(pixels, StudyID="STUDY-ID-LONGER-THAN-16", AccessionNumber="ACC\\WITH\\SLASHES")))
    setup_logging("INFO")
    caplog.clear()  # what building the test file said; the device reads and copies it from here on
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        DicomAnswerWriter(tmp_path / "results", IDENTITY).answer(_record("scan"), CLASSIFIED_ANALYSIS, scan)  # type: ignore[arg-type]
    assert (tmp_path / "results" / "dicom" / "scan.sr.dcm").exists()  # the answer was made, values copied
    assert [record.getMessage() for record in caplog.records if record.name.startswith("pydicom")] == []
    assert [str(warning.message) for warning in warned] == []
