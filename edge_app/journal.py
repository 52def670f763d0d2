"""The state journal (SQLite, WAL) that makes processing exactly-once across crashes and power cuts.

A scan moves through these states; each step is durable before the next starts, and `recover` finishes whatever a
crash interrupted, so every input ends with exactly one result or one quarantine entry:

``claimed`` (input renamed into ``state/processing/<id>__<name>``; not yet in the journal) ->
``writing`` (result names reserved) -> ``done`` (result files durable) -> ``archived`` (input moved to archive),
or ``quarantining`` (names reserved) -> ``quarantined`` (error file durable, input moved to quarantine).
Audit-log lines are appended once per scan (``audited``).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scans (
    id TEXT PRIMARY KEY,
    input_name TEXT NOT NULL,
    sha256 TEXT,
    status TEXT NOT NULL,
    stem TEXT UNIQUE,
    final_input_name TEXT,
    duplicate_of TEXT,
    label TEXT,
    probability REAL,
    audited INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS scans_sha256 ON scans (sha256, status);
"""


@dataclass(frozen=True)
class ScanRecord:
    id: str
    input_name: str
    sha256: str | None
    status: str
    stem: str | None
    final_input_name: str | None
    duplicate_of: str | None
    label: str | None
    probability: float | None
    audited: bool


class Journal:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def get(self, scan_id: str) -> ScanRecord | None:
        row = self._db.execute(
            "SELECT id, input_name, sha256, status, stem, final_input_name, duplicate_of, label, probability, audited "
            "FROM scans WHERE id = ?",
            (scan_id,),
        ).fetchone()
        if row is None:
            return None
        return ScanRecord(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], bool(row[9]))

    def reserved_stems(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT stem FROM scans WHERE stem IS NOT NULL")}

    def first_result_for(self, sha256: str) -> str | None:
        """The result stem of the first successfully classified scan with this content."""
        row = self._db.execute(
            "SELECT stem FROM scans WHERE sha256 = ? AND status IN ('done', 'archived') AND duplicate_of IS NULL "
            "ORDER BY created LIMIT 1",
            (sha256,),
        ).fetchone()
        return row[0] if row else None

    def reserve(
        self,
        scan_id: str,
        input_name: str,
        sha256: str | None,
        status: str,
        stem: str | None,
        final_input_name: str,
        duplicate_of: str | None,
    ) -> None:
        now = time.time()
        self._db.execute(
            "INSERT OR REPLACE INTO scans (id, input_name, sha256, status, stem, final_input_name, duplicate_of, "
            "audited, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
            (scan_id, input_name, sha256, status, stem, final_input_name, duplicate_of, now, now),
        )

    def set_status(self, scan_id: str, status: str, label: str | None = None, probability: float | None = None) -> None:
        self._db.execute(
            "UPDATE scans SET status = ?, label = COALESCE(?, label), probability = COALESCE(?, probability), "
            "updated = ? WHERE id = ?",
            (status, label, probability, time.time(), scan_id),
        )

    def mark_audited(self, scan_id: str) -> None:
        self._db.execute("UPDATE scans SET audited = 1 WHERE id = ?", (scan_id,))

    def unfinished(self) -> list[ScanRecord]:
        """Scans whose files may still have to be moved or audited."""
        ids = [
            row[0]
            for row in self._db.execute(
                "SELECT id FROM scans WHERE status NOT IN ('archived', 'quarantined') OR audited = 0 ORDER BY created"
            )
        ]
        return [record for record in (self.get(i) for i in ids) if record is not None]

    def counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT status, COUNT(*) FROM scans GROUP BY status").fetchall()
        counts = {status: count for status, count in rows}
        counts["duplicates"] = self._db.execute("SELECT COUNT(*) FROM scans WHERE duplicate_of IS NOT NULL").fetchone()[
            0
        ]
        return counts

    def last(self) -> ScanRecord | None:
        row = self._db.execute(
            "SELECT id FROM scans WHERE status IN ('archived', 'quarantined') ORDER BY updated DESC LIMIT 1"
        ).fetchone()
        return self.get(row[0]) if row else None
