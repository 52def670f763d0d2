"""The journal: SQLite (WAL, synchronous=FULL) holding one `ScanRecord` per scan, the daemon's only history.

Every state change is committed here before the file operation it announces, and the file operations are
idempotent, so after a crash or a power cut `ScanPipeline.resume` can take each unfinished record from its state.
Finished records are kept for `retention_days` (duplicate detection and `mammo-edge status` read them), then pruned:
the journal, like the process, does not grow without bound on a device that runs for months.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edge_app.service.lifecycle import FINAL_STATES, Failure, ScanRecord, ScanState, advance

SCHEMA_VERSION = 4  # 3 added sidecar_name and status; 4 answers, reader and source_name (reader submissions)
_COLUMNS = (
    "scan_id",
    "input_name",
    "state",
    "received",
    "updated",
    "sidecar_name",
    "status",
    "sha256",
    "result_stem",
    "settled_name",
    "duplicate_of",
    "label",
    "probability",
    "failure_stage",
    "failure_kind",
    "failure_reason",
    "answers",
    "reader",
    "source_name",
)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS scan_records (
    scan_id TEXT PRIMARY KEY,
    input_name TEXT NOT NULL,
    state TEXT NOT NULL,
    received REAL NOT NULL,
    updated REAL NOT NULL,
    sidecar_name TEXT,
    status TEXT,
    sha256 TEXT,
    result_stem TEXT UNIQUE,
    settled_name TEXT,
    duplicate_of TEXT,
    label TEXT,
    probability REAL,
    failure_stage TEXT,
    failure_kind TEXT,
    failure_reason TEXT,
    answers TEXT,
    reader TEXT,
    source_name TEXT
);
CREATE INDEX IF NOT EXISTS scan_records_sha256 ON scan_records (sha256, state);
CREATE INDEX IF NOT EXISTS scan_records_state ON scan_records (state, updated);
"""
_NAME_INDEXES = """
CREATE INDEX IF NOT EXISTS scan_records_input ON scan_records (input_name);
CREATE INDEX IF NOT EXISTS scan_records_sidecar ON scan_records (sidecar_name);
CREATE INDEX IF NOT EXISTS scan_records_answers ON scan_records (answers);
"""
_FINAL = tuple(state.value for state in FINAL_STATES)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM scan_records"


def _record(row: tuple[object, ...]) -> ScanRecord:
    values = dict(zip(_COLUMNS, row, strict=True))
    stage, kind, reason = values.pop("failure_stage"), values.pop("failure_kind"), values.pop("failure_reason")
    failure = None if stage is None else Failure(str(stage), str(kind), str(reason))
    return ScanRecord(**{**values, "state": ScanState(values["state"]), "failure": failure})  # type: ignore[arg-type]


def _row(record: ScanRecord) -> tuple[object, ...]:
    failure = record.failure
    return (
        record.scan_id,
        record.input_name,
        record.state.value,
        record.received,
        record.updated,
        record.sidecar_name,
        record.status,
        record.sha256,
        record.result_stem,
        record.settled_name,
        record.duplicate_of,
        record.label,
        record.probability,
        failure.stage if failure else None,
        failure.kind if failure else None,
        failure.reason if failure else None,
        record.answers,
        record.reader,
        record.source_name,
    )


class Journal:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The daemon's loop and its writer thread share the journal, one statement (or one `batch`) at a time
        # (`_lock`); the watcher's threads never touch it.
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        present = {row[1] for row in self._db.execute("PRAGMA table_info(scan_records)")}
        for column in ("sidecar_name", "status", "answers", "reader", "source_name"):  # an older journal gains them
            if column not in present:
                self._db.execute(f"ALTER TABLE scan_records ADD COLUMN {column} TEXT")
        self._db.executescript(_NAME_INDEXES)  # after the columns a schema 2 journal gains
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """The statements this thread makes inside commit together: one sync of the write-ahead log for a batch of
        moves instead of one per move (a read inside sees the batch's own changes). An exception rolls them all
        back, and each record is taken again from its state before the batch. Inside a batch, a batch joins it."""
        with self._lock:
            if self._db.in_transaction:
                yield
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _change(self, sql: str, parameters: Sequence[object] = ()) -> int:
        with self._lock:
            return int(self._db.execute(sql, parameters).rowcount)

    def _rows(self, sql: str, parameters: Sequence[object] = ()) -> list[Any]:
        with self._lock:
            return list(self._db.execute(sql, parameters).fetchall())

    def _first(self, sql: str, parameters: Sequence[object] = ()) -> Any:
        with self._lock:
            return self._db.execute(sql, parameters).fetchone()

    # -- writing: every change of a record goes through `insert` or `advance` ---------------------------------
    def insert(self, record: ScanRecord) -> ScanRecord:
        """Store a new record (RECEIVED, before its file is claimed)."""
        if record.state is not ScanState.RECEIVED:
            raise ValueError(f"a new record starts as received, not {record.state.value}")
        self._change(
            f"INSERT INTO scan_records ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})", _row(record)
        )
        return record

    def advance(self, record: ScanRecord, state: ScanState, **changes: Any) -> ScanRecord:
        """Move `record` to `state` (checked by `lifecycle.advance`) and make it durable; returns the new record."""
        moved = advance(record, state, **changes)
        assignments = ", ".join(f"{column} = ?" for column in _COLUMNS[1:])
        self._change(f"UPDATE scan_records SET {assignments} WHERE scan_id = ?", (*_row(moved)[1:], moved.scan_id))
        return moved

    def prune(self, retention_days: float, now: float | None = None) -> int:
        """Delete finished records last changed more than `retention_days` ago; returns how many."""
        cutoff = (time.time() if now is None else now) - retention_days * 86400
        placeholders = ", ".join("?" * len(_FINAL))
        return self._change(
            f"DELETE FROM scan_records WHERE state IN ({placeholders}) AND updated < ?", (*_FINAL, cutoff)
        )

    # -- reading -----------------------------------------------------------------------------------------------
    def get(self, scan_id: str) -> ScanRecord | None:
        row = self._first(f"{_SELECT} WHERE scan_id = ?", (scan_id,))
        return None if row is None else _record(row)

    def unfinished(self) -> list[ScanRecord]:
        """Records a crash left between states, oldest first."""
        placeholders = ", ".join("?" * len(_FINAL))
        return [
            _record(row)
            for row in self._rows(f"{_SELECT} WHERE state NOT IN ({placeholders}) ORDER BY received", _FINAL)
        ]

    def since(self, received: float) -> list[ScanRecord]:
        """Records received at or after `received`, oldest first."""
        return [_record(row) for row in self._rows(f"{_SELECT} WHERE received >= ? ORDER BY received", (received,))]

    def result_stem_taken(self, stem: str) -> bool:
        return self._first("SELECT 1 FROM scan_records WHERE result_stem = ?", (stem,)) is not None

    def knows_name(self, name: str) -> bool:
        """Whether a scan or a region sidecar of this name (relative to the inbox) was received before."""
        found = self._first("SELECT 1 FROM scan_records WHERE input_name = ? OR sidecar_name = ? LIMIT 1", (name, name))
        return found is not None

    def settled_name_taken(self, name: str) -> bool:
        found = self._first("SELECT 1 FROM scan_records WHERE settled_name = ?", (name,))
        return found is not None

    def first_result_for(self, sha256: str) -> str | None:
        """The result file of the first classified scan with this content (None if there is none)."""
        row = self._first(
            "SELECT result_stem FROM scan_records WHERE sha256 = ? AND result_stem IS NOT NULL "
            "AND duplicate_of IS NULL AND (status = 'classified' OR status IS NULL) "  # NULL: schema 2, classified
            "AND state IN ('analysed', 'written', 'archived') "  # analysed: its result is being written, in order
            "ORDER BY received LIMIT 1",
            (sha256,),
        )
        return None if row is None else f"{row[0]}.json"

    def listed(self, status: str | None, limit: int, before: float | None = None) -> list[ScanRecord]:
        """Newest first: finished records of one `status` (``needs_roi``, ``classified``, ``rejected``), or those not
        finished yet (``waiting``), or all; received before `before` (the last one of the previous page), at most
        `limit`. A finished record's file is where it will stay (archive or quarantine)."""
        final = f"state IN ({', '.join('?' * len(_FINAL))})"
        conditions = {
            None: "1",
            "needs_roi": f"status = 'needs_roi' AND {final}",
            "classified": f"status = 'classified' AND {final}",
            "rejected": f"failure_stage IS NOT NULL AND {final}",
            "waiting": f"NOT {final}",
        }
        if status not in conditions:
            raise ValueError(f"unknown status {status!r}")
        parameters: list[object] = [] if status is None else list(_FINAL)
        where = conditions[status]
        if before is not None:
            where += " AND received < ?"
            parameters.append(before)
        rows = self._rows(f"{_SELECT} WHERE {where} ORDER BY received DESC LIMIT ?", (*parameters, limit))
        return [_record(row) for row in rows]

    def answered_by(self, scan_id: str) -> list[ScanRecord]:
        """The records that answer reader marks on scan `scan_id`'s film, oldest first."""
        return [_record(row) for row in self._rows(f"{_SELECT} WHERE answers = ? ORDER BY received", (scan_id,))]

    def counts(self) -> dict[str, int]:
        counts = {
            str(state): int(count)
            for state, count in self._rows("SELECT state, COUNT(*) FROM scan_records GROUP BY state")
        }
        duplicates = self._first("SELECT COUNT(*) FROM scan_records WHERE duplicate_of IS NOT NULL")
        counts["duplicates"] = int(duplicates[0]) if duplicates else 0
        return counts

    def last_finished(self) -> ScanRecord | None:
        placeholders = ", ".join("?" * len(_FINAL))
        row = self._first(f"{_SELECT} WHERE state IN ({placeholders}) ORDER BY updated DESC LIMIT 1", _FINAL)
        return None if row is None else _record(row)
