"""Durable file operations: nothing half-written is ever visible under a final name, and nothing is overwritten.

A temporary file is a dot-file in the target folder (``.<name>.tmp``), fsynced, renamed over the final name and the
folder fsynced, so after a power cut a final name holds either nothing or the whole content. Dot-files are what
the watcher ignores and what `remove_temporaries` cleans at start-up.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

from edge_app.errors import (
    FileTooLargeError,
    HardLinkError,
    IngestError,
    MammoEdgeError,
    NotAFileError,
    UnreadableFileError,
)

TEMP_SUFFIX = ".tmp"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_owner_only(path: Path, what: str, error: type[MammoEdgeError]) -> str:
    """The text of a secret's file (credentials, a signing key), refused with `error` if it cannot be read or if
    anyone but its owner may read or write it (as SSH refuses a key). `what` names it in the message."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{what} cannot be read: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise error(f"{what} is open to other users (mode {stat.S_IMODE(mode):04o}): chmod 600 it")
    return text


def fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class PendingSyncs:
    """What a batch of steps still owes the disk: the folders its renames changed and the files it appended to, each
    fsynced once by `flush`, which the batch calls before the journal records any of its steps. One fsync per
    folder per batch instead of one per file: on an SD card an fsync costs milliseconds."""

    def __init__(self) -> None:
        self._folders: dict[Path, None] = {}  # insertion-ordered sets
        self._files: dict[Path, None] = {}

    def folder(self, path: Path) -> None:
        self._folders[path] = None

    def file(self, path: Path) -> None:
        self._files[path] = None

    def flush(self) -> None:
        """Fsync the appended files, then the folders; afterwards the batch owes nothing."""
        for path in self._files:
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
        for folder in self._folders:
            fsync_dir(folder)
        self._files.clear()
        self._folders.clear()


def _sync_folder(folder: Path, syncs: PendingSyncs | None) -> None:
    """Fsync `folder` now, or leave it to the batch's `syncs`."""
    if syncs is None:
        fsync_dir(folder)
    else:
        syncs.folder(folder)


def temp_path(final: Path) -> Path:
    return final.with_name(f".{final.name}{TEMP_SUFFIX}")


def atomic_write(final: Path, data: bytes, syncs: PendingSyncs | None = None) -> None:
    """Write `data` to `final` all at once (replacing a previous version of *our own* file). The data is fsynced
    before the rename; the folder now, or by `syncs` when a batch holds it."""
    temporary = temp_path(final)
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, final)
    _sync_folder(final.parent, syncs)


def write_cache(final: Path, data: bytes) -> None:
    """Write a file that is made again when missing (a thumbnail) whole under its name, without an fsync: a power cut
    may lose it or leave it empty, and its reader makes it again then (`is_cached`)."""
    temporary = temp_path(final)
    temporary.write_bytes(data)
    os.replace(temporary, final)


def is_cached(path: Path) -> bool:
    """Whether a file `write_cache` wrote survived whole (not lost, not left empty by a power cut)."""
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


def append_durably(path: Path, line: str, syncs: PendingSyncs | None = None) -> None:
    """Append `line`, fsynced now or by `syncs` when a batch holds it."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        if syncs is None:
            os.fsync(handle.fileno())
    if syncs is not None:
        syncs.file(path)


_SPECIAL_KINDS = {
    stat.S_IFIFO: "named pipe (FIFO)",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFDIR: "folder",
}


def read_scan_file(path: Path, max_bytes: int, linked_from_archive: bool = False) -> bytes:
    """The bytes of a file the service took into its own folder, read through one descriptor checked first: never
    through a symbolic link (O_NOFOLLOW), never blocking on a pipe or device (O_NONBLOCK, then the type), never a file
    that has another name somewhere else (a hard link from ``/etc`` would otherwise be read and archived), unless the
    service linked it itself from its archive (`linked_from_archive`: a reader's regions on an archived film)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except PermissionError as exc:
        raise UnreadableFileError(
            f"the service has no permission to read the file ({exc.strerror}): copy it in readable by the service user"
        ) from exc
    try:
        _check_scan_status(os.fstat(descriptor), max_bytes, linked_from_archive)
    except BaseException:
        os.close(descriptor)
        raise
    with os.fdopen(descriptor, "rb") as handle:  # a folder cannot even be wrapped: checked before
        return handle.read()


def _check_scan_status(status: os.stat_result, max_bytes: int, linked_from_archive: bool) -> None:
    if not stat.S_ISREG(status.st_mode):
        kind = _SPECIAL_KINDS.get(stat.S_IFMT(status.st_mode), "special file")
        raise NotAFileError(f"not a file but a {kind}: only regular files are scans; it was not read")
    if status.st_size > max_bytes:
        raise FileTooLargeError(
            f"the file is {status.st_size / 1e6:,.0f} MB, over the {max_bytes / 1e6:,.0f} MB that [ingest] "
            "max_pixels allows a scan; it was not read"
        )
    if status.st_nlink > 1 and not linked_from_archive:
        raise HardLinkError(
            f"the file has {status.st_nlink} names (hard links): another may lie outside the inbox, so it was not "
            "read; copy the scan into the inbox instead of linking it"
        )


def move_durably(source: Path, target: Path, syncs: PendingSyncs | None = None) -> None:
    """Rename (same file system) or copy, fsync and unlink (across file systems only; a link is copied as a link,
    never followed); both folders fsynced, now or by `syncs` when a batch holds them."""
    try:
        os.rename(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        temporary = temp_path(target)
        status = os.lstat(source)
        if stat.S_ISREG(status.st_mode) or stat.S_ISLNK(status.st_mode):
            shutil.copy2(source, temporary, follow_symlinks=False)
        else:  # a pipe, socket or device: made anew, never opened (a copy would block on it, or read a device)
            os.mknod(temporary, status.st_mode, status.st_rdev)
        if stat.S_ISREG(status.st_mode):
            with temporary.open("rb") as handle:
                os.fsync(handle.fileno())
        os.replace(temporary, target)
        fsync_dir(target.parent)
        source.unlink()
    _sync_folder(target.parent, syncs)
    _sync_folder(source.parent, syncs)


def link_durably(source: Path, target: Path) -> None:
    """A second name for an archived file (a hard link: no second copy of a film's megabytes); across file systems a
    copy, fsynced. Never follows a symbolic link; the target's folder is fsynced."""
    if not stat.S_ISREG(os.lstat(source).st_mode):
        raise IngestError(f"{source.name} is not a regular file: it is never linked or copied")
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        temporary = temp_path(target)
        shutil.copy2(source, temporary, follow_symlinks=False)
        with temporary.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    fsync_dir(target.parent)


MAX_STEM_BYTES = 200
"""A name the device writes keeps at most this much of the dropped name's stem (UTF-8 bytes), so that a companion
suffix (``.error.json``, ``.gradcam.jpg``...), a collision counter and a temporary's dots stay within the 255 bytes a
file name may have; the record keeps the name in full."""


def fit_stem(stem: str) -> str:
    """`stem` cut to MAX_STEM_BYTES, never inside a character."""
    return stem.encode("utf-8", "surrogateescape")[:MAX_STEM_BYTES].decode("utf-8", "ignore")


def unique_stem(folder: Path, stem: str, suffixes: tuple[str, ...], is_taken: Callable[[str], bool]) -> str:
    """`stem` (fitted), else `stem (2)`, `stem (3)`...: the first for which no `stem + suffix` exists in `folder` (a
    link counts) and `is_taken` (reservations not yet on disk) says no."""
    stem = fit_stem(stem)
    candidate, counter = stem, 1
    while is_taken(candidate) or any(os.path.lexists(folder / f"{candidate}{suffix}") for suffix in suffixes):
        counter += 1
        candidate = f"{stem} ({counter})"
    return candidate


def remove_temporaries(folder: Path) -> int:
    """Delete our leftover temporary files (a crash mid-write); returns how many."""
    removed = 0
    for path in folder.rglob(f".*{TEMP_SUFFIX}"):
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def free_megabytes(folder: Path) -> float:
    usage = shutil.disk_usage(folder)
    return usage.free / 1e6
