"""The journal: SQLite (WAL, synchronous=FULL) holding one `ScanRecord` per scan, the daemon's only history.

Every state change is committed here before the file operation it announces, and the file operations are
idempotent, so after a crash or a power cut `ScanPipeline.resume` can take each unfinished record from its state.
Finished records are kept for `retention_days` (duplicate detection and `mammo-edge status` read them), then pruned:
the journal, like the process, does not grow without bound on a device that runs for months.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edge_app.service.lifecycle import FINAL_STATES, Failure, ScanRecord, ScanState, advance

SCHEMA_VERSION = 3  # 3 added sidecar_name and status
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
    failure_reason TEXT
);
CREATE INDEX IF NOT EXISTS scan_records_sha256 ON scan_records (sha256, state);
CREATE INDEX IF NOT EXISTS scan_records_state ON scan_records (state, updated);
"""
_NAME_INDEXES = """
CREATE INDEX IF NOT EXISTS scan_records_input ON scan_records (input_name);
CREATE INDEX IF NOT EXISTS scan_records_sidecar ON scan_records (sidecar_name);
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
    )


class Journal:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One thread at a time uses a journal (the one that runs the daemon's loop, which need not be the one that
        # built it); the watcher's threads never touch it.
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        present = {row[1] for row in self._db.execute("PRAGMA table_info(scan_records)")}
        for column in ("sidecar_name", "status"):  # a journal written by schema 2 gains the columns, empty
            if column not in present:
                self._db.execute(f"ALTER TABLE scan_records ADD COLUMN {column} TEXT")
        self._db.executescript(_NAME_INDEXES)  # after the columns a schema 2 journal gains
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    # -- writing: every change of a record goes through `insert` or `advance` ---------------------------------
    def insert(self, record: ScanRecord) -> ScanRecord:
        """Store a new record (RECEIVED, before its file is claimed)."""
        if record.state is not ScanState.RECEIVED:
            raise ValueError(f"a new record starts as received, not {record.state.value}")
        self._db.execute(
            f"INSERT INTO scan_records ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})", _row(record)
        )
        return record

    def advance(self, record: ScanRecord, state: ScanState, **changes: Any) -> ScanRecord:
        """Move `record` to `state` (checked by `lifecycle.advance`) and make it durable; returns the new record."""
        moved = advance(record, state, **changes)
        assignments = ", ".join(f"{column} = ?" for column in _COLUMNS[1:])
        self._db.execute(f"UPDATE scan_records SET {assignments} WHERE scan_id = ?", (*_row(moved)[1:], moved.scan_id))
        return moved

    def prune(self, retention_days: float, now: float | None = None) -> int:
        """Delete finished records last changed more than `retention_days` ago; returns how many."""
        cutoff = (time.time() if now is None else now) - retention_days * 86400
        placeholders = ", ".join("?" * len(_FINAL))
        cursor = self._db.execute(
            f"DELETE FROM scan_records WHERE state IN ({placeholders}) AND updated < ?", (*_FINAL, cutoff)
        )
        return cursor.rowcount

    # -- reading -----------------------------------------------------------------------------------------------
    def get(self, scan_id: str) -> ScanRecord | None:
        row = self._db.execute(f"{_SELECT} WHERE scan_id = ?", (scan_id,)).fetchone()
        return None if row is None else _record(row)

    def unfinished(self) -> list[ScanRecord]:
        """Records a crash left between states, oldest first."""
        placeholders = ", ".join("?" * len(_FINAL))
        rows = self._db.execute(f"{_SELECT} WHERE state NOT IN ({placeholders}) ORDER BY received", _FINAL)
        return [_record(row) for row in rows]

    def since(self, received: float) -> Iterator[ScanRecord]:
        """Records received at or after `received`, oldest first (read lazily)."""
        for row in self._db.execute(f"{_SELECT} WHERE received >= ? ORDER BY received", (received,)):
            yield _record(row)

    def result_stem_taken(self, stem: str) -> bool:
        return self._db.execute("SELECT 1 FROM scan_records WHERE result_stem = ?", (stem,)).fetchone() is not None

    def knows_name(self, name: str) -> bool:
        """Whether a scan or a region sidecar of this name (relative to the inbox) was received before."""
        found = self._db.execute(
            "SELECT 1 FROM scan_records WHERE input_name = ? OR sidecar_name = ? LIMIT 1", (name, name)
        ).fetchone()
        return found is not None

    def settled_name_taken(self, name: str) -> bool:
        found = self._db.execute("SELECT 1 FROM scan_records WHERE settled_name = ?", (name,)).fetchone()
        return found is not None

    def first_result_for(self, sha256: str) -> str | None:
        """The result file of the first classified scan with this content (None if there is none)."""
        row = self._db.execute(
            "SELECT result_stem FROM scan_records WHERE sha256 = ? AND result_stem IS NOT NULL "
            "AND duplicate_of IS NULL AND (status = 'classified' OR status IS NULL) "  # NULL: schema 2, classified
            "AND state IN ('written', 'archived') "
            "ORDER BY received LIMIT 1",
            (sha256,),
        ).fetchone()
        return None if row is None else f"{row[0]}.json"

    def counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT state, COUNT(*) FROM scan_records GROUP BY state").fetchall()
        counts = {state: count for state, count in rows}
        counts["duplicates"] = self._db.execute(
            "SELECT COUNT(*) FROM scan_records WHERE duplicate_of IS NOT NULL"
        ).fetchone()[0]
        return counts

    def last_finished(self) -> ScanRecord | None:
        placeholders = ", ".join("?" * len(_FINAL))
        row = self._db.execute(
            f"{_SELECT} WHERE state IN ({placeholders}) ORDER BY updated DESC LIMIT 1", _FINAL
        ).fetchone()
        return None if row is None else _record(row)
