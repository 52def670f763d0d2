"""The results page's background task: requests never block the scan loop, merge while the work runs, and a stop
leaves the work done for everything asked before it."""

from __future__ import annotations

import logging
import threading

import pytest

from edge_app.service.coalesce import CoalescedTask


class GatedWork:
    """Work that blocks until the test opens the gate, counting its runs."""

    def __init__(self) -> None:
        self.runs = 0
        self.started = threading.Event()
        self.gate = threading.Event()

    def __call__(self) -> None:
        self.started.set()
        self.gate.wait(10)
        self.runs += 1


def test_requests_made_while_the_work_runs_merge_into_one_more_run() -> None:
    work = GatedWork()
    task = CoalescedTask(work, "test", spacing=0.0)
    task.request()
    assert work.started.wait(10)
    for _ in range(50):  # a burst of results while the page is being written: none of these calls blocks
        task.request()
    work.gate.set()
    task.close()
    assert work.runs == 2  # the first request's run, then one for the 50 (the close adds none: nothing was left)


def test_a_close_with_nothing_asked_does_no_work() -> None:
    calls: list[int] = []
    CoalescedTask(lambda: calls.append(1), "test").close()
    assert calls == []


def test_close_runs_what_was_asked_and_joins_its_thread() -> None:
    done: list[int] = []
    with CoalescedTask(lambda: done.append(1), "test", spacing=60.0) as task:
        task.request()
        task.request()  # within the 60 s spacing: waits, but the close must still honour it
    assert done and not any(thread.name == "test" for thread in threading.enumerate())


def test_spacing_holds_later_requests_back_until_the_close() -> None:
    calls: list[int] = []
    first = threading.Event()

    def work() -> None:
        calls.append(1)
        first.set()

    task = CoalescedTask(work, "test", spacing=60.0)
    task.request()
    assert first.wait(10)
    task.request()
    task.request()
    assert len(calls) == 1  # resting for 60 s: the two requests wait, merged
    task.close()
    assert len(calls) == 2


def test_a_failing_run_is_logged_and_the_next_request_runs_again(caplog: pytest.LogCaptureFixture) -> None:
    outcomes = iter([OSError("disk full"), None])
    ran = threading.Semaphore(0)

    def work() -> None:
        ran.release()
        error = next(outcomes)
        if error is not None:
            raise error

    with (
        caplog.at_level(logging.ERROR, logger="edge_app.service.coalesce"),
        CoalescedTask(work, "results-page", spacing=0.0) as task,
    ):
        task.request()
        assert ran.acquire(timeout=10)
        task.request()
        assert ran.acquire(timeout=10)  # the thread survived the failed run and ran again
    assert "results-page failed" in caplog.text and "disk full" in caplog.text


def test_one_request_runs_once_in_a_named_daemon_thread_and_the_spacing_defaults_to_a_second() -> None:
    """A run takes the request with it: closing after it has run does no more work. The thread carries the task's
    name and never holds the process open."""
    calls: list[int] = []
    ran = threading.Event()

    def work() -> None:
        calls.append(1)
        ran.set()

    task = CoalescedTask(work, "results-page")
    assert task.spacing == 1.0
    (thread,) = [thread for thread in threading.enumerate() if thread.name == "results-page"]
    assert thread.daemon
    task.request()
    assert ran.wait(10)
    task.close()
    assert calls == [1]
