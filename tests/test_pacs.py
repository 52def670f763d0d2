"""A real PACS in the loop: Debian's Orthanc stores a modality's study, routes the mammograms to the device as a
clinic configures it (tests/orthancpacs.py), and receives the device's answers into the same study, by C-STORE or by
STOW-RS (its DICOMweb plugin, an account and a password), once each, even when it was killed while they waited."""

from __future__ import annotations

import contextlib
import io
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicomfiles import encode, mammogram, measurement_report
from dicomnode import free_port, listening, needs_dcmtk, node_config, storescu
from fakemodel import FAKE_RUNTIME, write_fake_bundle
from orthancpacs import needs_orthanc, needs_orthanc_dicomweb
from pydicom.uid import generate_uid
from test_dicom_answers import _errors
from test_dicom_e2e import _settled, _wait

from edge_app import model as model_module
from edge_app.cli import _answer_sinks, _load_analyser
from edge_app.config import Config, DicomForwardSection, DicomSection, IngestSection, ModelSection
from edge_app.dicom.forward import Forwarder
from edge_app.dicom.outbox import Outbox
from edge_app.service.daemon import Daemon
from mammo_bench.orthanc import DEVICE, DEVICE_AE, ORTHANC_AE, RunningOrthanc, Web, orthanc

VIEWS = (("R", "CC", ["L", "F"]), ("L", "CC", ["R", "F"]), ("R", "MLO", ["A", "FR"]), ("L", "MLO", ["P", "FL"]))
VIEWER_AE = "VIEWER"
CIRCLE = ("CIRCLE", [(350.5, 450.5), (400.5, 450.5)])  # a mass of radius 50 about pixel (350, 450)
PATIENT = {"PatientName": "TEST^PACS", "PatientID": "PACS-1", "PatientBirthDate": "19650304", "PatientSex": "F"}
ACCOUNT = ("mammo-edge", "pacs-secret")  # the device's account in Orthanc, for DICOMweb
PROTOCOLS = ["dimse", pytest.param("dicomweb", marks=needs_orthanc_dicomweb)]
pytestmark = [
    needs_dcmtk,
    needs_orthanc,
    pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools is missing: `make test` installs it"),
]


@pytest.fixture(autouse=True)
def fake_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(model_module, "load_runtime", lambda name: FAKE_RUNTIME)
    yield


def _study(folder: Path) -> tuple[list[pydicom.Dataset], list[Path]]:
    """A screening study of 4 full-field views in one series, as a modality sends it."""
    study, series = generate_uid(), generate_uid()
    folder.mkdir(parents=True)
    films, files = [], []
    for number, (laterality, view, orientation) in enumerate(VIEWS, start=1):
        pixels = np.random.default_rng(number).integers(0, 4096, (900, 700)).astype(np.uint16)
        film = mammogram(
            pixels,
            **PATIENT,
            StudyInstanceUID=study,
            SeriesInstanceUID=series,
            InstanceNumber=number,
            ImageLaterality=laterality,
            ViewPosition=view,
            PatientOrientation=orientation,
            AccessionNumber="ACC-PACS-1",
        )
        path = folder / f"{laterality}{view}.dcm"
        path.write_bytes(encode(film))
        films.append(film)
        files.append(path)
    return films, files


@dataclass
class Device:
    config: Config
    daemon: Daemon
    forwarder: Forwarder
    stopping: threading.Event
    threads: list[threading.Thread]

    def start_forwarding(self) -> None:
        thread = threading.Thread(target=self.forwarder.run, args=(self.stopping,), name="the forwarder")
        self.threads.append(thread)
        thread.start()


def web_for(protocol: str) -> Web:
    """How Orthanc serves HTTP for `protocol`: DICOMweb with the device's account, or nothing beyond its REST API."""
    return Web(dicomweb=True, users=dict([ACCOUNT])) if protocol == "dicomweb" else Web()


def auth_file(folder: Path, user: str, password: str) -> Path:
    """The device's credentials for the PACS, readable by the service only."""
    path = folder / "pacs-credentials.toml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(f'user = "{user}"\npassword = "{password}"\n')
    path.chmod(0o600)
    return path


def forward_to(pacs: RunningOrthanc, protocol: str, root: Path) -> DicomForwardSection:
    """The device's ``[dicom.forward]`` to `pacs` by `protocol`, retrying quickly."""
    if protocol == "dicomweb":
        credentials = str(auth_file(root / "etc", *ACCOUNT))
        forward = DicomForwardSection(protocol="dicomweb", url=pacs.dicomweb_url, auth_file=credentials)
    else:
        forward = DicomForwardSection(ae_title=ORTHANC_AE, host="127.0.0.1", port=pacs.dicom_port)
    return replace(forward, retry_seconds=0.3, retry_max_seconds=1.0)


@contextlib.contextmanager
def _device(root: Path, pacs: RunningOrthanc, config: Config, protocol: str) -> Iterator[Device]:
    """The device's listener and daemon running, answering into the outbox; its forwarder to Orthanc (by
    `protocol`) made, started by `Device.start_forwarding`."""
    config = replace(
        config,
        model=ModelSection(bundle=write_fake_bundle(root / "bundle", patch_side_px=(48, 64))),
        ingest=IngestSection(settle_seconds=0.2, sidecar_wait=0.5),
        dicom=replace(config.dicom, forward=forward_to(pacs, protocol, root)),
    )
    analyser = _load_analyser(config)
    stopping = threading.Event()
    daemon = Daemon(config, analyser, stopping=stopping, sinks=_answer_sinks(config, analyser.identity))
    device = Device(config, daemon, Forwarder(config.dicom, Outbox(config.paths.outbox)), stopping, [])
    try:
        with listening(config):
            device.threads.append(threading.Thread(target=daemon.run, name="the daemon"))
            device.threads[0].start()
            assert daemon.ready.wait(30)
            yield device
    finally:
        stopping.set()
        for thread in device.threads:
            thread.join(timeout=60)


def _check_answers(pacs: RunningOrthanc, films: list[pydicom.Dataset], scratch: Path) -> None:
    """One study in Orthanc: the films' series, a report series and a capture series per film; each answer valid by
    dciodvfy, in the films' patient and study unchanged, referencing its own film; each film answered once."""
    (study,) = pacs.studies()  # the answers joined the study: nothing created another
    series = pacs.series_of(study)
    count = {"MG": 0, "SR": 0, "OT": 0}
    for entry in series:
        count[entry["MainDicomTags"]["Modality"]] += len(entry["Instances"])
    assert count == {"MG": len(films), "SR": len(films), "OT": len(films)} and len(series) == 1 + 2 * len(films)
    scratch.mkdir()
    referenced = []
    for entry in series:
        if entry["MainDicomTags"]["Modality"] == "MG":
            continue
        for instance in entry["Instances"]:
            path = scratch / f"{instance}.dcm"
            path.write_bytes(pacs.raw(f"/instances/{instance}/file"))
            assert _errors(path) == [], path.name  # what Orthanc stores is valid
            answer = pydicom.dcmread(path)
            for keyword, value in {**PATIENT, "StudyInstanceUID": films[0].StudyInstanceUID}.items():
                assert str(answer[keyword].value) == value, keyword
            assert answer.AccessionNumber == "ACC-PACS-1"
            if answer.Modality == "SR":
                evidence = answer.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
                referenced.append(("SR", evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID))
            else:
                referenced.append(("SC", answer.SourceImageSequence[0].ReferencedSOPInstanceUID))
    assert sorted(referenced) == sorted((kind, film.SOPInstanceUID) for kind in ("SC", "SR") for film in films)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_orthanc_routes_a_study_to_the_device_and_stores_every_answer_in_that_study(
    tmp_path: Path, protocol: str
) -> None:
    """Then a reader marks a mass on one film in their viewer (its measurement report sent to the device) and the
    film is sent again from Orthanc: a further report, now with the region's probability, joins the same study."""
    config = node_config(tmp_path / "device", allowed_ae_titles=(ORTHANC_AE, VIEWER_AE))
    assert config.dicom.ae_title == DEVICE_AE  # the title the shipped routing script knows the device by
    films, files = _study(tmp_path / "modality")
    with orthanc(tmp_path / "orthanc", config.dicom.port, web_for(protocol)) as pacs:
        with _device(tmp_path, pacs, config, protocol) as device:
            device.start_forwarding()
            sent = storescu(pacs.dicom_port, *files, called=ORTHANC_AE)  # the modality sends to the PACS only
            assert sent.returncode == 0, sent.stdout + sent.stderr
            _wait(lambda: _settled(device.daemon.journal, len(files)), device.threads)
            _wait(lambda: len(pacs.get("/instances")) == 3 * len(files), device.threads)
            _check_answers(pacs, films, tmp_path / "stored")

            marks = tmp_path / "viewer" / "marks.dcm"
            marks.parent.mkdir()
            marks.write_bytes(encode(measurement_report(films[0], [CIRCLE], "measurement", repeats=3)))
            assert storescu(config.dicom.port, marks, calling=VIEWER_AE).returncode == 0
            (film_id,) = pacs.post("/tools/lookup", films[0].SOPInstanceUID)
            pacs.post(f"/modalities/{DEVICE}/store", film_id["ID"])  # the administrator sends the film again
            _wait(lambda: _settled(device.daemon.journal, len(files) + 1), device.threads)
            _wait(lambda: len(pacs.get("/instances")) == 3 * len(files) + 2, device.threads)
        (study,) = pacs.studies()
        reports = [
            pydicom.dcmread(io.BytesIO(pacs.raw(f"/instances/{instance}/file")))
            for entry in pacs.series_of(study)
            if entry["MainDicomTags"]["Modality"] == "SR"
            for instance in entry["Instances"]
        ]
    marked = [report for report in reports if "Probability of cancer" in str(report.ContentSequence)]
    assert len(reports) == len(files) + 1 and len(marked) == 1
    evidence = marked[0].CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == films[0].SOPInstanceUID


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_answers_pending_while_orthanc_was_killed_arrive_once_after_it_restarts(tmp_path: Path, protocol: str) -> None:
    config = node_config(tmp_path / "device", allowed_ae_titles=(ORTHANC_AE,))
    assert config.dicom.ae_title == DEVICE_AE  # the title the shipped routing script knows the device by
    films, files = _study(tmp_path / "modality")
    with orthanc(tmp_path / "orthanc", config.dicom.port, web_for(protocol)) as pacs:
        with _device(tmp_path, pacs, config, protocol) as device:
            sent = storescu(pacs.dicom_port, *files, called=ORTHANC_AE)
            assert sent.returncode == 0, sent.stdout + sent.stderr
            _wait(lambda: _settled(device.daemon.journal, len(files)), device.threads)
            outbox = Outbox(device.config.paths.outbox)
            assert len(outbox.pending()) == 2 * len(files)  # every answer waits to be sent
            pacs.kill()
            device.start_forwarding()
            _wait(lambda: outbox.state().last_error is not None, device.threads)  # it tried: refused
            assert len(outbox.pending()) == 2 * len(files) and outbox.state().sent == 0
            pacs.start()  # the same storage, the same ports
            _wait(lambda: outbox.pending() == [], device.threads)
            assert outbox.state().sent == 2 * len(files)  # each acknowledged once, never sent again
        statistics = pacs.get("/statistics")
        assert statistics["CountInstances"] == 3 * len(files)
        _check_answers(pacs, films, tmp_path / "stored")


def _answers_waiting(outbox_folder: Path) -> tuple[Outbox, list[str]]:
    """An outbox holding one analysed film's two answers (a report and a capture)."""
    from test_dicom_forward import _answers

    outbox = Outbox(outbox_folder)
    return outbox, _answers(outbox)


@needs_orthanc_dicomweb
def test_a_4xx_from_dicomweb_is_kept_reported_and_not_retried_until_requeued(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Orthanc refuses the device's password (HTTP 401): both answers are kept aside with the reason, `status` says
    so, no round tries them again; the administrator fixes the password, restarts the forwarder and requeues them:
    each stored once."""
    from test_dicom_forward import Clock

    from edge_app.cli import main

    outbox, names = _answers_waiting(tmp_path / "outbox")
    credentials = auth_file(tmp_path / "etc", ACCOUNT[0], "an old password")
    with orthanc(tmp_path / "orthanc", free_port(), web_for("dicomweb")) as pacs:
        forward = DicomForwardSection(protocol="dicomweb", url=pacs.dicomweb_url, auth_file=str(credentials))
        dicom = replace(DicomSection(), forward=forward)
        clock = Clock()
        assert Forwarder(dicom, outbox, clock).send_due() == 0
        assert outbox.pending() == [] and sorted(path.name for path in outbox.rejected_folder.iterdir()) == names
        assert {outbox.rejection(name) for name in names} == {"HTTP 401 Unauthorized"}
        clock.now += 10 * 86400
        assert outbox.due(clock.now) == [] and Forwarder(dicom, outbox, clock).send_due() == 0  # not tried again
        outbox.put(names[0], b"queued again by a repeated write stage")  # a rejected answer is not queued twice
        assert outbox.pending() == []
        config = tmp_path / "config.toml"
        config.write_text(
            f'[paths]\noutbox = "{outbox.folder}"\nstate = "{tmp_path / "state"}"\ninbox = "{tmp_path / "inbox"}"\n'
            f'[model]\nbundle = "{write_fake_bundle(tmp_path / "bundle")}"\n'
            f'[dicom.forward]\nprotocol = "dicomweb"\nurl = "{pacs.dicomweb_url}"\nauth_file = "{credentials}"\n'
        )
        assert main(["status", "--config", str(config)]) == 0
        printed = capsys.readouterr().out
        assert f"outbox to {pacs.dicomweb_url}: 0 pending, 0 sent, 2 refused for good (last: HTTP 401 Unauthorized" in (
            printed
        )
        assert pacs.get("/instances") == []
        auth_file(tmp_path / "etc", *ACCOUNT)  # the right password
        assert main(["dicom-requeue", "--config", str(config)]) == 0
        assert f"2 answer(s) back in the outbox for {pacs.dicomweb_url}" in capsys.readouterr().out
        assert Forwarder(dicom, outbox, clock).send_due() == 2  # the restarted forwarder reads the new password
        assert outbox.state().rejected == 0 and outbox.state().sent == 2
        stored = sorted(
            f"{pacs.get(f'/instances/{item}')['MainDicomTags']['SOPInstanceUID']}.dcm"
            for item in (pacs.get("/instances"))
        )
        assert stored == names


@needs_orthanc_dicomweb
def test_stow_over_https_verifies_the_server_against_the_ca_file(tmp_path: Path) -> None:
    """Orthanc behind HTTPS with a certificate of the clinic's own authority: without that authority in ca_file the
    device does not send (a failed attempt saying why, retried later); with it, each answer is stored."""
    from orthancpacs import self_signed, tls_front
    from test_dicom_forward import Clock

    cert, key = self_signed(tmp_path / "tls")
    outbox, names = _answers_waiting(tmp_path / "outbox")
    credentials = str(auth_file(tmp_path / "etc", *ACCOUNT))
    with (
        orthanc(tmp_path / "orthanc", free_port(), web_for("dicomweb")) as pacs,
        tls_front(pacs.http_port, cert, key) as https_port,
    ):
        url = f"https://127.0.0.1:{https_port}/dicom-web"
        forward = DicomForwardSection(protocol="dicomweb", url=url, auth_file=credentials)
        clock = Clock()
        untrusted = Forwarder(replace(DicomSection(), forward=forward), outbox, clock)
        assert untrusted.send_due() == 0 and len(outbox.pending()) == 2 and outbox.state().rejected == 0
        attempts = outbox.attempts(names[0])
        assert attempts is not None and attempts.count == 1
        assert attempts.error == f"cannot reach {url}: its TLS certificate did not verify (is ca_file right?)"
        assert pacs.get("/instances") == []
        trusted = replace(DicomSection(), forward=replace(forward, ca_file=str(cert)))
        clock.now = attempts.next_try
        assert Forwarder(trusted, outbox, clock).send_due() == 2 and outbox.state().sent == 2
        assert len(pacs.get("/instances")) == 2
