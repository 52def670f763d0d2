"""No patient identifier leaves a scan into what the device writes about it: identifiers planted in DICOM tags (a
classified scan and refused ones) and in a PNG's text chunk are searched for in every log line, result, error file,
audit line and the journal. File names are the clinic's choice and are written as given (docs/security.md says so),
so the names here carry none."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
from corpus import patch
from dicomfiles import dicom_bytes
from harness import config_under, fake_analyser, records, running
from PIL import Image, PngImagePlugin

pytestmark = pytest.mark.usefixtures("fake_runtime")  # the service around the model, on the fake model

PLANTED = {
    "PatientName": "Zyxwvutsrq^Plantedname",
    "PatientID": "PLANTED-ID-4711",
    "PatientBirthDate": "19130407",
    "AccessionNumber": "ACC-PLANTED-99",
    "OtherPatientIDs": "OTHER-PLANTED-77",
    "InstitutionName": "Planted Institution Of Nowhere",
    "ReferringPhysicianName": "Doctor^Plantedreferrer",
}
NEEDLES = [value.split("^")[-1] for value in PLANTED.values()] + ["Zyxwvutsrq"]


def _png_with_text() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", f"patient {PLANTED['PatientName']} id {PLANTED['PatientID']}")
    buffer = io.BytesIO()
    Image.fromarray(patch()).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def test_identifiers_planted_in_scans_appear_in_no_log_result_or_journal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = config_under(tmp_path)
    drops = {
        "a.dcm": dicom_bytes(patch(), **PLANTED),
        "b.png": _png_with_text(),
        "c.dcm": dicom_bytes(
            patch(), BitsStored=20, **PLANTED
        ),  # refused: its reason names the header, not the patient
        "d.dcm": dicom_bytes(np.full((48, 48), 3, np.uint8), **PLANTED),  # refused: constant
        "e.dcm": dicom_bytes(patch(), **PLANTED)[:-900],  # refused: truncated
    }
    with running(config, fake_analyser(tmp_path)) as daemon:
        for name, data in drops.items():
            (config.paths.inbox / name).write_bytes(data)
        daemon.wait_for(lambda: sum(r.state.final for r in records(config)) == len(drops))
    outcomes = {r.input_name: r.state.value for r in records(config)}
    assert outcomes == {"a.dcm": "archived", "b.png": "archived", "c.dcm": "quarantined", "d.dcm": "quarantined",
                        "e.dcm": "quarantined"}  # fmt: skip
    written = [p for folder in (config.paths.results, config.paths.state) for p in folder.rglob("*") if p.is_file()]
    written += list(config.paths.quarantine.glob("*.error.json"))
    assert len(written) >= 8 and caplog.text
    texts = {str(path): path.read_bytes().decode("latin-1") for path in written} | {"log": caplog.text}
    for where, text in texts.items():
        for needle in NEEDLES:
            assert needle not in text, f"{needle!r} leaked into {where}"
    archived = (config.paths.archive / "a.dcm").read_bytes().decode("latin-1")
    assert all(needle in archived for needle in ("PLANTED-ID-4711", "Zyxwvutsrq")), "the search would not see them"
