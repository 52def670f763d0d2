"""The durable file helpers on their own: nothing half-written under a final name, nothing overwritten, moves that
survive a change of file system, and the names a collision gets."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
from pathlib import Path

import pytest

from edge_app import fsutil
from edge_app.errors import IngestError
from edge_app.fsutil import (
    append_durably,
    atomic_write,
    free_megabytes,
    link_durably,
    move_durably,
    read_scan_file,
    remove_temporaries,
    sha256_of,
    temp_path,
    unique_stem,
)


def test_a_temporary_is_a_hidden_sibling() -> None:
    assert temp_path(Path("/r/scan.json")) == Path("/r/.scan.json.tmp")


def test_atomic_write_replaces_all_at_once_and_leaves_no_temporary(tmp_path: Path) -> None:
    final = tmp_path / "result.json"
    atomic_write(final, b"first")
    atomic_write(final, b"second, longer")
    assert final.read_bytes() == b"second, longer" and sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_appends_accumulate(tmp_path: Path) -> None:
    log = tmp_path / "results.jsonl"
    append_durably(log, "one\n")
    append_durably(log, "twö\n")
    assert log.read_text(encoding="utf-8") == "one\ntwö\n"


def test_a_move_within_a_file_system_is_a_rename(tmp_path: Path) -> None:
    source, target = tmp_path / "a" / "scan.png", tmp_path / "b" / "scan.png"
    source.parent.mkdir()
    target.parent.mkdir()
    source.write_bytes(b"pixels")
    inode = source.stat().st_ino
    move_durably(source, target)
    assert not source.exists() and target.read_bytes() == b"pixels" and target.stat().st_ino == inode


@pytest.fixture
def across_file_systems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A source and a target path in two folders between which a rename fails as between file systems."""

    def cross_device(_source: object, _target: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(fsutil.os, "rename", cross_device)
    source, target = tmp_path / "a" / "scan.png", tmp_path / "b" / "scan.png"
    source.parent.mkdir()
    target.parent.mkdir()
    return source, target


def test_a_move_across_file_systems_copies_then_removes(across_file_systems: tuple[Path, Path]) -> None:
    source, target = across_file_systems
    source.write_bytes(b"pixels")
    os.utime(source, (1_000_000, 1_000_000))
    move_durably(source, target)
    assert not source.exists() and target.read_bytes() == b"pixels"
    assert target.stat().st_mtime == 1_000_000  # copied with its metadata
    assert sorted(p.name for p in target.parent.iterdir()) == ["scan.png"]  # no temporary left


@pytest.mark.parametrize("kind", ["link", "fifo"])
def test_a_link_or_a_pipe_moves_across_file_systems_as_itself_never_opened(
    across_file_systems: tuple[Path, Path], kind: str
) -> None:
    source, target = across_file_systems
    if kind == "link":
        source.symlink_to("/etc/passwd")
    else:
        os.mkfifo(source)  # opening it to copy would block forever
    move_durably(source, target)
    assert not os.path.lexists(source)
    if kind == "link":
        assert target.is_symlink() and os.readlink(target) == "/etc/passwd"
    else:
        assert stat.S_ISFIFO(target.lstat().st_mode)


def test_a_failing_rename_within_a_file_system_is_not_turned_into_a_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(_source: object, _target: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(fsutil.os, "rename", read_only)
    (tmp_path / "scan.png").write_bytes(b"pixels")
    with pytest.raises(OSError, match="Read-only"):
        move_durably(tmp_path / "scan.png", tmp_path / "moved.png")
    assert (tmp_path / "scan.png").read_bytes() == b"pixels" and not (tmp_path / "moved.png").exists()


def test_a_taken_name_gets_the_next_free_number(tmp_path: Path) -> None:
    (tmp_path / "scan.png").write_bytes(b"")
    (tmp_path / "scan (2).error.json").write_bytes(b"")  # any companion suffix takes the stem
    (tmp_path / "scan (4).png").symlink_to(tmp_path / "missing")  # a dangling link counts too
    suffixes = (".png", ".error.json")
    assert unique_stem(tmp_path, "scan", suffixes, lambda stem: False) == "scan (3)"
    assert unique_stem(tmp_path, "scan", suffixes, lambda stem: stem == "scan (3)") == "scan (5)"
    assert unique_stem(tmp_path, "other", suffixes, lambda stem: False) == "other"


def test_only_our_temporaries_are_removed(tmp_path: Path) -> None:
    (tmp_path / "deep").mkdir()
    for name in (".a.json.tmp", "deep/.b.png.tmp", "visible.tmp", ".hidden", "c.json"):
        (tmp_path / name).write_bytes(b"x")
    assert remove_temporaries(tmp_path) == 2
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == [
        ".hidden",
        "c.json",
        "visible.tmp",
    ]


def test_sha256_reads_in_blocks_and_matches(tmp_path: Path) -> None:
    data = os.urandom((1 << 20) * 2 + 123)  # more than one block, not a whole number of them
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert sha256_of(path) == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_of(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


def test_free_space_is_in_megabytes(tmp_path: Path) -> None:
    assert free_megabytes(tmp_path) == shutil.disk_usage(tmp_path).free / 1e6


def test_a_second_name_is_a_hard_link_and_a_fsynced_copy_where_links_cannot_be(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "archive" / "film.dcm"
    source.parent.mkdir()
    source.write_bytes(b"film bytes")
    linked = tmp_path / "processing" / "a.dcm"
    linked.parent.mkdir()
    link_durably(source, linked)
    assert os.stat(linked).st_ino == os.stat(source).st_ino  # no second copy of a film's megabytes
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    failure = [errno.EXDEV]

    def refuse(*arguments: object, **options: object) -> None:
        raise OSError(failure[0], os.strerror(failure[0]))

    monkeypatch.setattr(os, "link", refuse)
    for code in (errno.EXDEV, errno.EPERM, errno.EMLINK):  # another file system, a policy, too many links
        failure[0] = code
        copied = linked.with_name(f"copy-{code}.dcm")
        synced.clear()
        link_durably(source, copied)
        assert copied.read_bytes() == b"film bytes" and os.stat(copied).st_ino != os.stat(source).st_ino
        assert len(synced) == 2  # the copy, then its folder
    expected = ["a.dcm", *(f"copy-{code}.dcm" for code in (errno.EXDEV, errno.EPERM, errno.EMLINK))]
    assert sorted(path.name for path in linked.parent.iterdir()) == sorted(expected)  # no temporary left
    failure[0] = errno.EACCES  # any other failure is not hidden by a copy
    with pytest.raises(PermissionError):
        link_durably(source, linked.with_name("b.dcm"))


def test_only_a_regular_file_gets_a_second_name(tmp_path: Path) -> None:
    target = tmp_path / "film.dcm"
    target.write_bytes(b"x")
    pointer = tmp_path / "pointer.dcm"
    pointer.symlink_to(target)
    with pytest.raises(IngestError) as refused:
        link_durably(pointer, tmp_path / "second.dcm")
    assert str(refused.value) == "pointer.dcm is not a regular file: it is never linked or copied"


def test_a_scan_file_is_never_read_through_a_symbolic_link(tmp_path: Path) -> None:
    target = tmp_path / "secret.png"
    target.write_bytes(b"not for the service")
    (tmp_path / "scan.png").symlink_to(target)
    with pytest.raises(OSError) as refused:
        read_scan_file(tmp_path / "scan.png", max_bytes=1000)
    assert refused.value.errno == errno.ELOOP
    assert read_scan_file(target, max_bytes=1000) == b"not for the service"


def test_a_scan_that_is_no_regular_file_is_refused_by_its_kind_unread(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.png")  # opening it would block: it is only looked at
    (tmp_path / "folder.png").mkdir()
    for name, kind in (("pipe.png", "named pipe (FIFO)"), ("folder.png", "folder")):
        with pytest.raises(IngestError) as refused:
            read_scan_file(tmp_path / name, max_bytes=1000)
        assert str(refused.value) == f"not a file but a {kind}: only regular files are scans; it was not read"
