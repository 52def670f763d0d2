"""The outbox and the forwarder: backoff on a fake clock that survives a restart, every answer delivered once the
destination (dcmtk's storescp) comes back, none sent twice."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pydicom
import pytest
from dicomnode import free_port, needs_dcmtk, storescp
from notifysocket import notify_socket
from pydicom.uid import (
    ComprehensiveSRStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
)
from test_dicom_answers import CLASSIFIED_ANALYSIS, IDENTITY, _scan

from edge_app.config import DicomForwardSection, DicomSection
from edge_app.dicom import forward
from edge_app.dicom.answers import build_answer
from edge_app.dicom.forward import Delivery, DimseDestination, Forwarder, Outcome, dimse_outcome
from edge_app.dicom.outbox import RETRY_FILE, Outbox


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_an_instance_is_queued_once_and_backs_off_twice_as_long_each_failure(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox")
    outbox.put("a.dcm", b"first")
    outbox.put("a.dcm", b"second")  # the write stage repeated after a crash: the queued copy stands
    assert (outbox.pending_folder / "a.dcm").read_bytes() == b"first"
    delays = []
    now = 100.0
    for _ in range(6):
        outbox.note_failures(["a.dcm"], "down", now, first_delay=10, max_delay=60)
        attempts = outbox.attempts("a.dcm")
        assert attempts is not None
        delays.append(attempts.next_try - now)
    assert delays == [10, 20, 40, 60, 60, 60] and attempts.count == 6 and attempts.error == "down"
    assert outbox.due(now + 59) == [] and [path.name for path in outbox.due(now + 60)] == ["a.dcm"]
    again = Outbox(tmp_path / "outbox")  # a restart (or a reboot) keeps the backoff
    assert again.attempts("a.dcm") == attempts and again.due(now + 59) == []
    again.mark_sent("a.dcm")
    assert again.pending() == [] and again.attempts("a.dcm") is None
    assert json.loads((tmp_path / "outbox" / RETRY_FILE).read_text()) == {}
    again.put("a.dcm", b"third")  # an acknowledged answer is never queued again
    assert again.pending() == [] and again.state().sent == 1


def test_state_and_pruning(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox")
    assert outbox.state().pending == 0 and outbox.state().oldest_pending is None
    for name in ("b.dcm", "c.dcm"):
        outbox.put(name, b"x")
    outbox.note_failures(["b.dcm"], "refused with status 0xA700", 5.0, 1, 1)
    state = outbox.state()
    assert (state.pending, state.sent, state.last_error) == (2, 0, "refused with status 0xA700")
    outbox.mark_sent("c.dcm")
    sent = outbox.sent_folder / "c.dcm"
    assert outbox.prune_sent(30) == outbox.prune_sent(30, now=sent.stat().st_mtime + 29 * 86400) == 0  # now: kept
    assert outbox.prune_sent(30, now=sent.stat().st_mtime + 31 * 86400) == 1 and not sent.exists()


def test_an_instance_sent_while_the_outbox_is_read_is_left_out_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The forwarder moves an instance out of pending while the metrics (or `mammo-edge status`) list it."""
    outbox = Outbox(tmp_path / "outbox")
    for name in ("a.dcm", "b.dcm"):
        outbox.put(name, b"x")
    listed = list(outbox.pending_folder.iterdir())
    outbox.mark_sent("a.dcm")  # sent between the listing and the look at its time
    monkeypatch.setattr(Path, "iterdir", lambda self: iter(listed))
    assert [path.name for path in outbox.pending()] == ["b.dcm"]
    state = outbox.state()  # its oldest's time comes from the same listing: no second look that could miss
    assert (state.pending, state.oldest_pending) == (1, (outbox.pending_folder / "b.dcm").stat().st_mtime)


def test_the_last_refusal_is_the_one_refused_last_not_the_newest_file(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox")
    for name, queued in (("old.dcm", 1_000.0), ("new.dcm", 2_000.0)):
        outbox.put(name, b"x")
        os.utime(outbox.pending_folder / name, (queued, queued))
    outbox.reject("new.dcm", "HTTP 400 Bad Request")
    outbox.reject("old.dcm", "HTTP 401 Unauthorized")  # queued first, refused last
    assert outbox.state().last_rejection == "HTTP 401 Unauthorized"
    assert outbox.requeue_rejected() == ["new.dcm", "old.dcm"] and outbox.state().last_rejection is None
    outbox.reject("new.dcm", "HTTP 403 Forbidden")  # refused again after the requeue: the last again
    assert outbox.state().last_rejection == "HTTP 403 Forbidden"


def _answers(outbox: Outbox) -> list[str]:
    answer = build_answer(_scan(), "scan-9", CLASSIFIED_ANALYSIS, IDENTITY)
    names = []
    for instance in (answer.report, answer.capture):
        name = f"{instance.SOPInstanceUID}.dcm"
        path = outbox.folder / "staging" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        instance.save_as(path, enforce_file_format=True)
        outbox.put(name, path.read_bytes())
        names.append(name)
    return sorted(names)


@needs_dcmtk
def test_answers_wait_for_a_destination_that_is_down_and_arrive_once_across_a_restart(tmp_path: Path) -> None:
    port = free_port()
    dicom = replace(DicomSection(), forward=DicomForwardSection(host="127.0.0.1", port=port, retry_seconds=30))
    clock = Clock()
    outbox = Outbox(tmp_path / "outbox")
    names = _answers(outbox)
    assert Forwarder(dicom, outbox, clock).send_due() == 0  # nobody listens yet
    attempts = outbox.attempts(names[0])
    assert attempts is not None and attempts.count == 1 and "no association with PACS@127.0.0.1" in attempts.error
    received = tmp_path / "pacs"
    with storescp(received, port):
        restarted = Forwarder(dicom, Outbox(tmp_path / "outbox"), clock)  # a new process reads the same outbox
        assert restarted.send_due() == 0  # the backoff holds: not due for 30 s
        clock.now += 30
        assert restarted.send_due() == 2
        assert restarted.send_due() == 0 and outbox.pending() == []
    arrived = sorted(f"{pydicom.dcmread(path).SOPInstanceUID}.dcm" for path in received.iterdir())
    assert arrived == names  # each once
    assert sorted(path.name for path in outbox.sent_folder.iterdir()) == names


@needs_dcmtk
def test_a_destination_that_refuses_the_association_is_retried_like_one_that_is_down(tmp_path: Path) -> None:
    port = free_port()
    dicom = replace(DicomSection(), forward=DicomForwardSection(host="127.0.0.1", port=port))
    outbox = Outbox(tmp_path / "outbox")
    names = _answers(outbox)
    with storescp(tmp_path / "pacs", port, "--refuse"):
        assert Forwarder(dicom, outbox, Clock()).send_due() == 0
    assert [outbox.attempts(name).count for name in names] == [1, 1]  # type: ignore[union-attr]
    assert list((tmp_path / "pacs").iterdir()) == []


@pytest.mark.parametrize("host", ["", "pacs.example"])
def test_status_shows_the_outbox_only_when_forwarding(
    tmp_path: Path, host: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from fakemodel import write_fake_bundle

    from edge_app.cli import main

    bundle = write_fake_bundle(tmp_path / "bundle")
    outbox = Outbox(tmp_path / "outbox")
    outbox.put("x.dcm", b"x")
    outbox.note_failures(["x.dcm"], "no association with PACS@pacs.example:104", 0.0, 1, 1)
    config = tmp_path / "config.toml"
    config.write_text(
        f'[paths]\noutbox = "{tmp_path / "outbox"}"\nstate = "{tmp_path / "state"}"\ninbox = "{tmp_path / "inbox"}"\n'
        f'[model]\nbundle = "{bundle}"\n[dicom.forward]\nhost = "{host}"\n'
    )
    assert main(["status", "--config", str(config)]) == 0
    printed = capsys.readouterr().out
    if host:
        assert "outbox to PACS@pacs.example:104: 1 pending, 0 sent" in printed
        assert "last error: no association with PACS@pacs.example:104" in printed
    else:
        assert "outbox to" not in printed


class FakeAssociation:
    """An established association whose destination answers each C-STORE with the next of `statuses` (None: the
    association was lost before an answer)."""

    def __init__(self, statuses: list[int | None]) -> None:
        self.statuses = statuses
        self.is_established = True
        self.stored: list[str] = []

    def send_c_store(self, dataset: pydicom.Dataset) -> pydicom.Dataset:
        self.stored.append(dataset.SOPInstanceUID)
        answer = pydicom.Dataset()
        status = self.statuses.pop(0)
        if status is not None:
            answer.Status = status
        return answer

    def release(self) -> None:
        self.is_established = False


def test_each_instance_refused_or_unanswered_is_a_failed_attempt_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dicom = replace(DicomSection(), forward=DicomForwardSection(host="pacs", port=11112, ae_title="ARCHIVE"))
    outbox = Outbox(tmp_path / "outbox")
    names = _answers(outbox)
    forwarder = Forwarder(dicom, outbox, Clock())
    called: list[tuple[str, int, str]] = []
    association = FakeAssociation([0xA700, None])

    def associate(host: str, port: int, ae_title: str) -> FakeAssociation:
        called.append((host, port, ae_title))
        return association

    monkeypatch.setattr(forwarder.destination.ae, "associate", associate)  # type: ignore[attr-defined]
    assert forwarder.send_due() == 0 and called == [("pacs", 11112, "ARCHIVE")] and not association.is_established
    errors = {name: outbox.attempts(name).error for name in names}  # type: ignore[union-attr]
    first, second = (f"{uid}.dcm" for uid in association.stored)
    assert errors == {first: "refused with status 0xA700", second: "no response (association lost)"}
    association = FakeAssociation([0xB000, 0x0000])  # a warning that means "stored", and success
    forwarder.clock = Clock(2_000_000.0)  # past the backoff
    assert forwarder.send_due() == 2 and outbox.pending() == []


def test_the_forwarder_offers_both_little_endian_syntaxes_and_waits_its_timeout(tmp_path: Path) -> None:
    dicom = replace(DicomSection(), forward=DicomForwardSection(timeout_seconds=7.5))
    ae = DimseDestination(dicom.forward, dicom.ae_title).ae
    offered = {str(context.abstract_syntax): context.transfer_syntax for context in ae.requested_contexts}
    little_endian = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
    assert offered == {ComprehensiveSRStorage: little_endian, SecondaryCaptureImageStorage: little_endian}
    assert (ae.acse_timeout, ae.dimse_timeout, ae.network_timeout, ae.connection_timeout) == (7.5, 7.5, 7.5, 7.5)


def _notifications(
    folder: Path, monkeypatch: pytest.MonkeyPatch, watchdog_usec: int, until: str, times: int = 1
) -> list[str]:
    """What `Forwarder.run` tells systemd from READY until `until` arrives (`times` times) and it stops."""
    monkeypatch.setattr(forward, "TICK_SECONDS", 0.02)
    stopping = threading.Event()
    with notify_socket(folder, monkeypatch, watchdog_usec) as systemd:
        forwarder = Forwarder(DicomSection(), Outbox(folder / "outbox"))
        thread = threading.Thread(target=forwarder.run, args=(stopping,), name="forwarder")
        thread.start()
        try:
            messages = [message for _ in range(times) for message in systemd.until(until)]
        finally:
            stopping.set()
            thread.join(10)
        return messages + systemd.until("STOPPING=1")


def test_the_forwarder_tells_systemd_it_is_ready_its_outbox_alive_and_stopping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = _notifications(
        tmp_path / "slow", monkeypatch, watchdog_usec=60_000_000, until="STATUS=outbox: 0 pending, 0 sent"
    )
    assert slow[0] == "READY=1" and slow[-1] == "STOPPING=1" and "WATCHDOG=1" not in slow  # 30 s not yet passed
    assert set(slow[1:-1]) == {"STATUS=outbox: 0 pending, 0 sent"}
    fast = _notifications(tmp_path / "fast", monkeypatch, watchdog_usec=100_000, until="WATCHDOG=1", times=3)
    assert fast[0] == "READY=1" and fast[-1] == "STOPPING=1" and fast.count("WATCHDOG=1") == 3  # alive, again
    between = fast[fast.index("WATCHDOG=1") - 1]
    assert between == "STATUS=outbox: 0 pending, 0 sent"


def test_the_outbox_queues_oldest_first_and_prunes_past_its_retention_to_the_second(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox")
    assert (outbox.pending_folder, outbox.sent_folder) == (
        tmp_path / "outbox" / "pending",
        tmp_path / "outbox" / "sent",
    )
    for name, mtime in (("c.dcm", 300), ("a.dcm", 200), ("b.dcm", 200)):
        outbox.put(name, b"x")
        os.utime(outbox.pending_folder / name, (mtime, mtime))
    (outbox.pending_folder / ".d.dcm.tmp").write_bytes(b"half")  # a write in progress is not queued
    assert [path.name for path in outbox.pending()] == ["a.dcm", "b.dcm", "c.dcm"]  # by age, then by name
    assert outbox.state().oldest_pending == 200
    for name in ("a.dcm", "b.dcm"):
        outbox.mark_sent(name)
        os.utime(outbox.sent_folder / name, (1000, 1000))
    (outbox.sent_folder / ".e.dcm.tmp").write_bytes(b"half")
    assert outbox.state().sent == 2
    assert outbox.prune_sent(1, now=1000 + 86400) == 0  # exactly one day old: kept
    assert outbox.prune_sent(1, now=1000 + 86401) == 2


@pytest.mark.parametrize(
    ("code", "delivery"),
    [
        (0x0000, Delivery.STORED),
        (0xB007, Delivery.STORED),
        (None, Delivery.RETRY),
        (0xA700, Delivery.RETRY),  # out of resources: later
        (0x0110, Delivery.RETRY),  # processing failure: maybe later
        (0xA900, Delivery.REJECTED),  # the data set does not match its SOP class: never as it is
        (0xC123, Delivery.REJECTED),  # cannot understand
    ],
)
def test_a_dimse_status_says_whether_sending_again_can_help(code: int | None, delivery: Delivery) -> None:
    assert dimse_outcome(code).delivery is delivery


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (401, Outcome(Delivery.REJECTED, "HTTP 401 Unauthorized")),
        (404, Outcome(Delivery.REJECTED, "HTTP 404 Not Found")),
        (409, Outcome(Delivery.REJECTED, "HTTP 409 Conflict")),
        (499, Outcome(Delivery.REJECTED, "HTTP 499")),
        (408, Outcome(Delivery.RETRY, "HTTP 408 Request Timeout")),
        (429, Outcome(Delivery.RETRY, "HTTP 429 Too Many Requests")),
        (500, Outcome(Delivery.RETRY, "HTTP 500 Internal Server Error")),
        (503, Outcome(Delivery.RETRY, "HTTP 503 Service Unavailable")),
    ],
)
def test_an_http_status_says_whether_sending_again_can_help(status: int, outcome: Outcome) -> None:
    from edge_app.dicom.stow import http_outcome

    assert http_outcome(status) == outcome


@pytest.mark.parametrize(
    ("text", "mode", "message"),
    [
        ('user = "mammo"\npassword = "s3cret"\n', 0o600, None),
        ('token = "abc.def"\n', 0o400, None),
        ('user = "mammo"\npassword = "s3cret"\n', 0o640, "is open to other users (mode 0640): chmod 600 it"),
        ('token = "abc"\n', 0o604, "is open to other users (mode 0604)"),
        ('user = "mammo"\n', 0o600, "must hold either user and password (basic) or token (bearer)"),
        ('user = "mammo"\npassword = "x"\ntoken = "t"\n', 0o600, "must hold either user and password"),
        ('token = ""\n', 0o600, "must hold either user and password"),
        ('usr = "mammo"\n', 0o600, "unknown key(s) 'usr' (known: user, password, token)"),
        ("token = 5\n", 0o600, "user, password and token are strings"),
        ("token = \n", 0o600, "is not TOML"),
    ],
)
def test_credentials_are_read_only_from_a_file_nobody_else_can_read(
    tmp_path: Path, text: str, mode: int, message: str | None
) -> None:
    from edge_app.dicom.stow import Credentials, read_credentials
    from edge_app.errors import ConfigError

    path = tmp_path / "pacs-credentials.toml"
    path.write_text(text)
    path.chmod(mode)
    if message is None:
        assert read_credentials(path) in (Credentials(user="mammo", password="s3cret"), Credentials(token="abc.def"))
        return
    with pytest.raises(ConfigError) as refused:
        read_credentials(path)
    assert str(refused.value).startswith(f"[dicom.forward] auth_file {path}") and message in str(refused.value)
    assert "s3cret" not in str(refused.value)  # a refusal never shows the secret


def test_a_missing_credentials_file_is_refused_by_name(tmp_path: Path) -> None:
    from edge_app.dicom.stow import read_credentials
    from edge_app.errors import ConfigError

    with pytest.raises(ConfigError, match=r"auth_file .*absent.toml cannot be read: No such file"):
        read_credentials(tmp_path / "absent.toml")


def test_the_server_is_verified_against_the_ca_file_or_the_systems_authorities(tmp_path: Path) -> None:
    import ssl

    from edge_app.dicom.stow import DicomWebDestination, trusted_authorities

    url = "https://pacs.example/dicom-web"
    system = ssl.get_default_verify_paths()
    assert trusted_authorities(DicomForwardSection(protocol="dicomweb", url=url)) == (
        system.cafile or system.capath or True
    )
    given = DicomForwardSection(protocol="dicomweb", url=url, ca_file="/etc/mammo-edge/clinic-ca.pem")
    assert trusted_authorities(given) == "/etc/mammo-edge/clinic-ca.pem"
    assert trusted_authorities(DicomForwardSection(protocol="dicomweb", url=url, tls_verify=False)) is False
    credentials = tmp_path / "token.toml"
    credentials.write_text('token = "abc.def"\n')
    credentials.chmod(0o600)
    destination = DicomWebDestination(replace(given, auth_file=str(credentials)))
    session = destination.client._session
    assert session.verify == "/etc/mammo-edge/clinic-ca.pem" and not session.trust_env  # no environment override
    assert session.headers["Authorization"] == "Bearer abc.def" and session.auth is None


class ScriptedDestination:
    """Answers each instance with the next of `outcomes`; records what it was given."""

    def __init__(self, outcomes: list[Outcome]) -> None:
        self.outcomes = outcomes
        self.given: list[str] = []

    def deliver(self, due: list[Path]) -> Iterator[tuple[Path, Outcome]]:
        for path in due:
            self.given.append(path.name)
            yield path, self.outcomes.pop(0)


def test_each_outcome_moves_its_instance_sent_rejected_or_back_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = Outbox(tmp_path / "outbox")
    for name in ("a.dcm", "b.dcm", "c.dcm"):
        outbox.put(name, name.encode())
        os.utime(outbox.pending_folder / name, (ord(name[0]), ord(name[0])))  # sent in this order
    destination = ScriptedDestination(
        [
            Outcome(Delivery.STORED),
            Outcome(Delivery.REJECTED, "HTTP 400 Bad Request"),
            Outcome(Delivery.RETRY, "HTTP 503"),
        ]
    )
    clock = Clock()
    assert Forwarder(DicomSection(), outbox, clock, destination).send_due() == 1
    assert [path.name for path in outbox.sent_folder.iterdir()] == ["a.dcm"]
    assert [path.name for path in outbox.rejected_folder.iterdir()] == ["b.dcm"]
    assert outbox.rejection("b.dcm") == "HTTP 400 Bad Request" and outbox.attempts("b.dcm") is None
    attempts = outbox.attempts("c.dcm")
    assert attempts is not None and (attempts.count, attempts.error) == (1, "HTTP 503")
    state = outbox.state()
    assert (state.pending, state.sent, state.rejected, state.last_rejection) == (1, 1, 1, "HTTP 400 Bad Request")
    assert "refused b.dcm for good: HTTP 400 Bad Request" in caplog.text and "mammo-edge dicom-requeue" in caplog.text
    clock.now = attempts.next_try
    destination.outcomes = [Outcome(Delivery.STORED)]
    assert Forwarder(DicomSection(), outbox, clock, destination).send_due() == 1
    assert destination.given == ["a.dcm", "b.dcm", "c.dcm", "c.dcm"]  # the rejected one was not offered again
    assert outbox.requeue_rejected() == ["b.dcm"] and outbox.state().rejected == 0
    assert [path.name for path in outbox.due(clock.now)] == ["b.dcm"]  # due at once
    assert outbox.requeue_rejected() == []


def test_a_stow_answer_listing_the_instance_as_failed_is_read_like_a_dimse_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 200 whose FailedSOPSequence names the instance is not "stored": out of resources (0xA7xx) waits, any other
    reason is kept aside; a failure of another instance does not count; no answer at all says what happened."""
    import requests

    from edge_app.dicom.stow import DicomWebDestination

    outbox = Outbox(tmp_path / "outbox")
    path = outbox.pending_folder / _answers(outbox)[0]
    uid = pydicom.dcmread(path).SOPInstanceUID
    url = "http://127.0.0.1:8042/dicom-web"
    destination = DicomWebDestination(DicomForwardSection(protocol="dicomweb", url=url))

    def answering(failed_uid: str, reason: int) -> None:
        item = pydicom.Dataset()
        item.ReferencedSOPInstanceUID, item.FailureReason = failed_uid, reason
        answer = pydicom.Dataset()
        answer.FailedSOPSequence = [item]
        monkeypatch.setattr(destination.client, "store_instances", lambda instances: answer)

    def raising(error: Exception) -> None:
        def store(instances: object) -> None:
            raise error

        monkeypatch.setattr(destination.client, "store_instances", store)

    cases: list[tuple[Callable[[], None], Outcome]] = [
        (lambda: answering(uid, 0xA700), Outcome(Delivery.RETRY, "failed with reason 0xA700")),
        (lambda: answering(uid, 0xC000), Outcome(Delivery.REJECTED, "failed with reason 0xC000")),
        (lambda: answering("1.2.3.4", 0xC000), Outcome(Delivery.STORED)),
        (
            lambda: raising(requests.ConnectionError("... [Errno 111] Connection refused")),
            Outcome(Delivery.RETRY, f"cannot reach {url}: connection refused"),
        ),
        (
            lambda: raising(requests.Timeout("read timed out")),
            Outcome(Delivery.RETRY, f"cannot reach {url}: no answer within timeout_seconds"),
        ),
        (lambda: raising(requests.HTTPError("no response")), Outcome(Delivery.RETRY, f"cannot reach {url}: HTTPError")),
    ]
    for arrange, expected in cases:
        arrange()
        assert list(destination.deliver([path])) == [(path, expected)]


def test_an_answer_queued_is_sent_at_once_not_at_the_next_tick(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The forwarder watches the outbox: with a tick of a minute, an answer the daemon queues goes within seconds."""
    monkeypatch.setattr(forward, "TICK_SECONDS", 60.0)
    outbox = Outbox(tmp_path / "outbox")
    destination = ScriptedDestination([Outcome(Delivery.STORED)])
    forwarder = Forwarder(DicomSection(), outbox, destination=destination)
    stopping = threading.Event()
    thread = threading.Thread(target=forwarder.run, args=(stopping,), name="forwarder")
    thread.start()
    try:
        time.sleep(0.3)  # the first round found nothing; the next tick is a minute away
        queued = time.monotonic()
        outbox.put("answer.dcm", b"an answer")
        while not destination.given and time.monotonic() - queued < 10:
            time.sleep(0.01)
        assert destination.given == ["answer.dcm"] and time.monotonic() - queued < 10
    finally:
        stopping.set()
        outbox.put("wake.dcm", b"")  # the stop is seen at the next round; this one comes at once
        thread.join(timeout=10)
    assert not thread.is_alive()
