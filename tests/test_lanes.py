"""The daemon's lanes on their own (`edge_app.service.writebehind`): scans classified, explained and written in the
order they were handed on; a refusal passes straight through; a bug in a lane is raised in the loop's thread and
nothing of its batch is written; a storage error is reported, not raised."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from fakes import FakeAnalyser

from edge_app.service.analyse import Analysis
from edge_app.service.lifecycle import Failure, ScanRecord, ScanState, advance, received
from edge_app.service.pipeline import Outcome, Prepared, Refusal, Taken
from edge_app.service.writebehind import WriteBehind


def _claimed(name: str) -> ScanRecord:
    return advance(received(name), ScanState.CLAIMED)


def _prepared(data: bytes) -> Prepared:
    return Prepared(FakeAnalyser().prepare(data, "scan.png"), data, None)


class Recorder:
    """The lanes' callbacks: what was classified, written and finished, in order."""

    def __init__(self, classify_error: BaseException | None = None, write_error: BaseException | None = None) -> None:
        self.classify_error = classify_error
        self.write_error = write_error
        self.classified: list[str] = []
        self.written: list[tuple[str, Outcome | None]] = []
        self.finished: list[str] = []

    def classify(self, record: ScanRecord, prepared: Prepared) -> Outcome:
        if self.classify_error is not None:
            raise self.classify_error
        self.classified.append(record.input_name)
        return prepared.classify()

    def finish(self, batch: Sequence[Taken]) -> list[ScanRecord]:
        if self.write_error is not None:
            raise self.write_error
        self.written += [(record.input_name, outcome) for record, outcome in batch]
        return [record for record, _ in batch]

    def done(self, record: ScanRecord) -> None:
        self.finished.append(record.input_name)

    def lanes(self) -> WriteBehind:
        return WriteBehind(self.classify, self.finish, self.done, (OSError,))


def test_scans_are_classified_and_written_in_the_order_handed_on() -> None:
    recorder = Recorder()
    lanes = recorder.lanes()
    refusal = Refusal(Failure("decode", "UnsupportedFormatError", "not an image"), None)
    names = [f"scan{index}.png" for index in range(10)]
    for index, name in enumerate(names):
        lanes.submit(_claimed(name), refusal if index == 3 else _prepared(f"scan {index}".encode()))
    lanes.close()
    assert recorder.classified == [name for index, name in enumerate(names) if index != 3]  # a refusal is not
    assert [name for name, _ in recorder.written] == names == recorder.finished
    analyses = [outcome for index, (_, outcome) in enumerate(recorder.written) if index != 3]
    assert recorder.written[3][1] is refusal and all(isinstance(outcome, Analysis) for outcome in analyses)


@pytest.mark.parametrize("where", ["classify", "write"])
def test_a_bug_in_a_lane_is_raised_in_the_loop_and_its_scan_is_left_to_recovery(where: str) -> None:
    bug = ZeroDivisionError("division by zero")
    recorder = Recorder(**{f"{where}_error": bug})
    lanes = recorder.lanes()
    lanes.submit(_claimed("a.png"), _prepared(b"a"))
    lanes.drain()
    with pytest.raises(ZeroDivisionError):
        lanes.raise_fatal()
    with pytest.raises(ZeroDivisionError):  # the loop meets it at its next hand-on
        lanes.submit(_claimed("b.png"), _prepared(b"b"))
    lanes.close()
    assert recorder.written == [] and recorder.finished == []  # both stay CLAIMED in the journal for recovery


def test_a_storage_error_is_reported_and_taken_up_again_on_resume() -> None:
    recorder = Recorder(write_error=OSError(28, "No space left on device"))
    lanes = recorder.lanes()
    lanes.submit(_claimed("a.png"), _prepared(b"a"))
    lanes.drain()
    failure = lanes.failure()
    assert isinstance(failure, OSError) and failure.errno == 28
    lanes.raise_fatal()  # not a bug: nothing raised
    recorder.write_error = None
    lanes.resume()
    lanes.submit(_claimed("b.png"), _prepared(b"b"))
    lanes.close()
    assert lanes.failure() is None and recorder.finished == ["b.png"]
