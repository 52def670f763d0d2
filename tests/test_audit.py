"""The audit logs rotate by size and never lose or repeat a line, across a crash at any point of a rotation."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from pages import SCANS, results_with_every_status

from edge_app.config import LogSection, resolve_config
from edge_app.errors import ConfigError
from edge_app.report.page import read_audit
from edge_app.service.audit import AuditLog


def _fill(log: AuditLog, count: int, start: int = 0) -> None:
    for number in range(start, start + count):
        assert log.append_once(json.dumps({"id": f"scan{number:03d}"}) + "\n", f'"id": "scan{number:03d}"')


def test_a_full_segment_is_renamed_and_every_line_is_kept_in_order(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "results.jsonl", max_bytes=100)
    _fill(log, 25)
    names = [path.name for path in log.segments()]
    assert names == [*(f"results.{n:06d}.jsonl" for n in range(1, 5)), "results.jsonl"]  # numbered in turn
    assert [path.stat().st_size for path in log.segments()] == [108, 108, 108, 108, 18]  # cut past the limit
    assert list(log.lines()) == [json.dumps({"id": f"scan{n:03d}"}) for n in range(25)]  # whole, less the newline


def test_a_line_already_written_before_a_crash_is_not_written_again(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "results.jsonl", max_bytes=60)
    _fill(log, 3)
    again = json.dumps({"id": "scan002"}) + "\n"
    assert not log.append_once(again, '"id": "scan002"')  # the write stage repeated after a crash
    (tmp_path / "results.jsonl").rename(tmp_path / "results.000009.jsonl")  # killed just after a rotation
    assert not log.append_once(again, '"id": "scan002"')  # found in the segment just rotated
    _fill(log, 1, start=3)
    assert [path.name for path in log.segments()][-2:] == ["results.000009.jsonl", "results.jsonl"]
    assert [json.loads(line)["id"] for line in log.lines()][-2:] == ["scan002", "scan003"]


@pytest.mark.parametrize("whole_lines", [2, 0], ids=["after-whole-lines", "alone"])
def test_a_line_a_power_cut_left_short_is_written_again_whole(tmp_path: Path, whole_lines: int) -> None:
    log = AuditLog(tmp_path / "results.jsonl")
    _fill(log, whole_lines)
    torn = json.dumps({"id": f"scan{whole_lines:03d}", "label": "benign"})[:20]  # its marker made it to disk
    with (tmp_path / "results.jsonl").open("a") as handle:
        handle.write(torn)
    _fill(log, 2, start=whole_lines)  # the write stage repeated after the restart, then the next scan
    assert [json.loads(line)["id"] for line in log.lines()] == [f"scan{n:03d}" for n in range(whole_lines + 2)]


def test_every_csv_segment_is_a_complete_csv(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "results.csv", max_bytes=40, header="id,status\n")
    for number in range(6):
        log.append_once(f"scan{number},classified\n", f"scan{number},")
    segments = log.segments()
    assert len(segments) >= 3
    rows = [row for segment in segments for row in csv.DictReader(segment.open())]
    assert [row["id"] for row in rows] == [f"scan{n}" for n in range(6)]


def test_the_results_page_reads_every_segment(tmp_path: Path) -> None:
    _fill(AuditLog(tmp_path / "results.jsonl", max_bytes=50), 12)
    assert [entry["id"] for entry in read_audit(tmp_path)] == [f"scan{n:03d}" for n in range(12)]


def test_a_size_limit_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^\[log\] audit_max_mb must be > 0, got 0.0$"):
        resolve_config(None, {"log": {"audit_max_mb": 0.0}}, environ={})


def test_the_service_cuts_its_audit_logs_at_the_configured_size(tmp_path: Path) -> None:
    results = results_with_every_status(tmp_path, log=LogSection(audit_max_mb=600 / 2**20)).paths.results
    for name in ("results.jsonl", "results.csv"):
        segments = AuditLog(results / name, max_bytes=600).segments()
        assert len(segments) >= 2 and all(path.stat().st_size < 600 + 400 for path in segments[:-1]), name
    assert [entry["input"] for entry in read_audit(results)] == list(SCANS)  # every line, in order
