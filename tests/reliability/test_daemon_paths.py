"""The running service's own ways in, each alone: a watched folder's event takes a scan with no rescan to fall back
on, and a reader's regions submitted for an archived scan are answered by the daemon itself (the web app's tests
drive the pipeline directly)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from harness import config_under, distinct_scan, fake_analyser, records, running

from edge_app.service.lifecycle import ScanState, new_scan_id
from edge_app.service.submissions import Submission, SubmissionQueue

pytestmark = pytest.mark.usefixtures("fake_runtime")  # the service around the model, on the fake model


@pytest.mark.parametrize("polling", [False, True], ids=["inotify", "polling"])
def test_a_dropped_scan_is_taken_on_the_folders_event_without_a_rescan(tmp_path: Path, polling: bool) -> None:
    config = config_under(tmp_path, rescan_seconds=3600.0, polling=polling)  # no rescan during the test
    with running(config, fake_analyser(tmp_path)) as daemon:
        time.sleep(0.5)  # past the service's first look and the polling observer's first snapshot: only an event
        (config.paths.inbox / "late.png").write_bytes(distinct_scan(1))
        daemon.wait_for((config.paths.results / "late.json").exists, timeout=30, what="the event's scan")
    (record,) = records(config)
    assert record.state is ScanState.ARCHIVED and record.input_name == "late.png"


def test_the_daemon_answers_a_readers_regions_for_an_archived_scan(tmp_path: Path) -> None:
    config = config_under(tmp_path)
    with running(config, fake_analyser(tmp_path)) as daemon:
        (config.paths.inbox / "first.png").write_bytes(distinct_scan(2))
        daemon.wait_for(lambda: any(record.state is ScanState.ARCHIVED for record in records(config)))
        (first,) = records(config)
        assert first.settled_name is not None
        queue = SubmissionQueue(config.paths.state)
        regions = {"regions": [{"label": "R", "x": 24, "y": 24, "radius": 10}]}
        answer_id = new_scan_id()
        queue.put(Submission(answer_id, first.scan_id, first.input_name, first.settled_name, regions, "reader1", 0.0))
        daemon.wait_for(lambda: len(found := records(config)) == 2 and found[1].state.final, what="the answer")
    answer = records(config)[1]
    assert (answer.scan_id, answer.answers, answer.reader) == (answer_id, first.scan_id, "reader1")
    assert answer.state is ScanState.ARCHIVED and answer.status == "classified" and queue.pending() == []
