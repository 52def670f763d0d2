"""A real PACS in the loop: Debian's Orthanc stores a modality's study, routes the mammograms to the device as a
clinic configures it (tests/orthanc.py), and receives the device's answers into the same study, once each, even
when it was killed while they waited."""

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
from dicomnode import listening, needs_dcmtk, node_config, storescu
from fakemodel import FAKE_RUNTIME, write_fake_bundle
from orthancpacs import DEVICE, DEVICE_AE, ORTHANC_AE, RunningOrthanc, needs_orthanc, orthanc
from pydicom.uid import generate_uid
from test_dicom_answers import _errors
from test_dicom_e2e import _settled, _wait

from edge_app import model as model_module
from edge_app.cli import _answer_sinks, _load_analyser
from edge_app.config import Config, DicomForwardSection, IngestSection, ModelSection
from edge_app.dicom.forward import Forwarder
from edge_app.dicom.outbox import Outbox
from edge_app.service.daemon import Daemon

VIEWS = (("R", "CC", ["L", "F"]), ("L", "CC", ["R", "F"]), ("R", "MLO", ["A", "FR"]), ("L", "MLO", ["P", "FL"]))
VIEWER_AE = "VIEWER"
CIRCLE = ("CIRCLE", [(350.5, 450.5), (400.5, 450.5)])  # a mass of radius 50 about pixel (350, 450)
PATIENT = {"PatientName": "TEST^PACS", "PatientID": "PACS-1", "PatientBirthDate": "19650304", "PatientSex": "F"}
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


@contextlib.contextmanager
def _device(root: Path, pacs: RunningOrthanc, config: Config) -> Iterator[Device]:
    """The device's listener and daemon running, answering into the outbox; its forwarder to Orthanc made, started
    by `Device.start_forwarding`."""
    forward = DicomForwardSection(ae_title=ORTHANC_AE, host="127.0.0.1", port=pacs.dicom_port, retry_seconds=0.3)
    config = replace(
        config,
        model=ModelSection(bundle=write_fake_bundle(root / "bundle", patch_side_px=(48, 64))),
        ingest=IngestSection(settle_seconds=0.2, sidecar_wait=0.5),
        dicom=replace(config.dicom, forward=replace(forward, retry_max_seconds=1.0)),
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


def test_orthanc_routes_a_study_to_the_device_and_stores_every_answer_in_that_study(tmp_path: Path) -> None:
    """Then a reader marks a mass on one film in their viewer (its measurement report sent to the device) and the
    film is sent again from Orthanc: a further report, now with the region's probability, joins the same study."""
    config = node_config(tmp_path / "device", allowed_ae_titles=(ORTHANC_AE, VIEWER_AE))
    assert config.dicom.ae_title == DEVICE_AE  # the title the shipped routing script knows the device by
    films, files = _study(tmp_path / "modality")
    with orthanc(tmp_path / "orthanc", config.dicom.port) as pacs:
        with _device(tmp_path, pacs, config) as device:
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


def test_answers_pending_while_orthanc_was_killed_arrive_once_after_it_restarts(tmp_path: Path) -> None:
    config = node_config(tmp_path / "device", allowed_ae_titles=(ORTHANC_AE,))
    assert config.dicom.ae_title == DEVICE_AE  # the title the shipped routing script knows the device by
    films, files = _study(tmp_path / "modality")
    with orthanc(tmp_path / "orthanc", config.dicom.port) as pacs:
        with _device(tmp_path, pacs, config) as device:
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
