"""The whole DICOM path, each part as it runs on the device: storescu -> listener -> inbox -> daemon (a fake model
bundle, the real analyser and writer) -> SR and Secondary Capture -> outbox -> forwarder -> storescp, read back with
dsrdump. A film without regions is answered "not analysed", a film with a Segmentation per region, a patch whole."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicomfiles import encode, mammogram, measurement_report
from dicomnode import free_port, listening, needs_dcmtk, node_config, storescp, storescu
from fakemodel import FAKE_RUNTIME, write_fake_bundle
from test_dicom_listen import _segmentation, _send_with_pynetdicom

from edge_app import model as model_module
from edge_app.cli import _answer_sinks, _load_analyser
from edge_app.config import Config, DicomForwardSection, IngestSection, ModelSection
from edge_app.dicom.forward import Forwarder
from edge_app.dicom.outbox import Outbox
from edge_app.service.analyse import Sidecar
from edge_app.service.daemon import Daemon, journal_path
from edge_app.service.journal import Journal


@pytest.fixture(autouse=True)
def fake_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(model_module, "load_runtime", lambda name: FAKE_RUNTIME)
    yield


def _film(rows: int, columns: int, seed: int) -> pydicom.Dataset:
    pixels = np.random.default_rng(seed).integers(0, 4096, (rows, columns)).astype(np.uint16)
    return mammogram(pixels)


def _wait(condition: Callable[[], bool], workers: list[threading.Thread], timeout: float = 90) -> None:
    """Until `condition` holds; a worker that stopped (an exception in the daemon or the forwarder) ends it at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        stopped = [worker.name for worker in workers if not worker.is_alive()]
        if stopped:
            raise AssertionError(f"{', '.join(stopped)} stopped while the test waited")
        time.sleep(0.1)
    raise AssertionError("timed out")


def _settled(journal: Journal, count: int) -> bool:
    """Whether `count` scans are in the journal and each is archived or quarantined (its answers written)."""
    records = list(journal.since(0))
    return len(records) >= count and all(record.state.final for record in records)


@needs_dcmtk
@pytest.mark.skipif(shutil.which("dsrdump") is None, reason="dcmtk's dsrdump is not installed: `make test` installs it")
def test_received_scans_are_answered_in_dicom_and_forwarded_once(tmp_path: Path) -> None:
    pacs_port = free_port()
    config: Config = node_config(tmp_path / "device")
    config = replace(
        config,
        model=ModelSection(bundle=write_fake_bundle(tmp_path / "bundle", patch_side_px=(48, 64))),
        ingest=IngestSection(settle_seconds=0.2, sidecar_wait=3.0),
        dicom=replace(config.dicom, forward=DicomForwardSection(host="127.0.0.1", port=pacs_port, retry_seconds=0.5)),
    )
    film, regions_film, patch = _film(900, 700, 1), _film(800, 600, 2), _film(56, 56, 3)
    viewer_film, highdicom_film = _film(700, 500, 4), _film(700, 500, 5)
    mask = np.zeros((800, 600), bool)
    mask[100:220, 150:260] = True
    segmentation = _segmentation(regions_film, mask)
    circle = ("CIRCLE", [(250.5, 300.5), (290.5, 300.5)])  # a circle of radius 40 about pixel (250, 300)
    reports = [
        measurement_report(viewer_film, [circle], "measurement", repeats=3),  # as OHIF exports it
        measurement_report(highdicom_film, [circle], "group"),  # TID 1410, highdicom's own layout
    ]
    sources = tmp_path / "sources"
    sources.mkdir()
    files = []
    for dataset in (film, regions_film, patch, viewer_film, highdicom_film):
        path = sources / f"{dataset.SOPInstanceUID}.dcm"
        path.write_bytes(encode(dataset))
        files.append(path)
    report_files = []
    for report in reports:
        path = sources / f"{report.SOPInstanceUID}.report"
        path.write_bytes(encode(report))
        report_files.append(path)

    analyser = _load_analyser(config)
    stopping = threading.Event()
    daemon = Daemon(config, analyser, stopping=stopping, sinks=_answer_sinks(config, analyser.identity))
    forwarder = Forwarder(config.dicom, Outbox(config.paths.outbox))
    threads = [
        threading.Thread(target=daemon.run, name="the daemon"),
        threading.Thread(target=forwarder.run, args=(stopping,), name="the forwarder"),
    ]
    received = tmp_path / "pacs"
    try:
        with listening(config) as node:
            for thread in threads:
                thread.start()
            assert daemon.ready.wait(30)
            sent = storescu(node.port, *report_files, *files)  # each film with its report, the report first
            assert sent.returncode == 0, sent.stdout + sent.stderr
            assert _send_with_pynetdicom(node.port, segmentation) == 0
            assert storescu(node.port, files[2]).returncode == 0  # sent twice
            answers = config.paths.results / "dicom"
            _wait(lambda: _settled(daemon.journal, len(files)), threads)
            assert len(list(answers.glob("*.dcm"))) == 10  # an SR and an SC per image, the PACS still down
            assert storescu(node.port, files[2]).returncode == 0  # and again after it was analysed
            time.sleep(1.0)
            with storescp(received, pacs_port):
                _wait(lambda: len(list(received.iterdir())) == 10, threads)
                time.sleep(1.5)  # rounds go on: nothing arrives twice
    finally:
        stopping.set()
        for thread in threads:
            thread.join(timeout=60)
    assert len(list(received.iterdir())) == 10 and len(list((config.paths.results / "dicom").iterdir())) == 10

    journal = Journal(journal_path(config))
    records = list(journal.since(0))
    journal.close()
    assert sorted(record.input_name for record in records) == sorted(path.name for path in files)  # each once
    by_name = {record.input_name: record for record in records}
    assert by_name[files[0].name].status == "needs_roi"
    assert by_name[files[1].name].sidecar_name == f"{regions_film.SOPInstanceUID}.seg.dcm"
    assert by_name[files[1].name].status == by_name[files[2].name].status == "classified"
    for source in (viewer_film, highdicom_film):  # classified at the region the reader's viewer marked
        record = by_name[f"{source.SOPInstanceUID}.dcm"]
        assert record.sidecar_name == f"{source.SOPInstanceUID}.sr.dcm" and record.status == "classified"
        result = json.loads((config.paths.results / str(record.result_file)).read_text())
        (region,) = result["regions"]
        assert (region["marked_by"], region["marked_as"], region["box"]) == ("sr", "circle", [210, 260, 290, 340])
        roi = Sidecar("x.roi.json", "roi", b'{"regions": [{"x": 250, "y": 300, "radius": 40}]}')
        alone = analyser.analyse(encode(source), "film.dcm", roi).regions[0].probability
        assert region["probability"] == pytest.approx(alone, abs=1e-6)
    segmented = json.loads((config.paths.results / str(by_name[files[1].name].result_file)).read_text())
    assert {region["marked_by"] for region in segmented["regions"]} == {"seg"}

    answered = {}
    for path in received.iterdir():
        instance = pydicom.dcmread(path)
        if instance.Modality == "SR":
            source = instance.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
            answered[source.ReferencedSOPSequence[0].ReferencedSOPInstanceUID] = path
        expected = {image.StudyInstanceUID for image in (film, regions_film, patch, viewer_film, highdicom_film)}
        assert instance.StudyInstanceUID in expected
    images = (film, regions_film, patch, viewer_film, highdicom_film)
    assert set(answered) == {image.SOPInstanceUID for image in images}
    for uid, path in answered.items():
        dump = subprocess.run(["dsrdump", "+Pl", str(path)], capture_output=True, text=True, check=True).stdout
        if uid == film.SOPInstanceUID:
            assert "Not analysed: no region of interest was given" in dump and "Probability of cancer" not in dump
        else:
            assert dump.count('NUM:(,,"Probability of cancer")') == 1 and "(POLYLINE," in dump
