"""The settle stage: the input goes to ``archive/`` (classified) or ``quarantine/`` (refused), never deleted.

Its region sidecar goes beside it, under the same stem. The input keeps its path relative to the inbox
(``nested/scan__left.png`` is archived as exactly that); a name already used gets `` (2)``, `` (3)``... before the
suffix. Names are reserved in the record before anything is moved, and the move is skipped if a crash happened after
it, so settling twice is settling once.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from edge_app.fsutil import PendingSyncs, move_durably, unique_stem
from edge_app.regions import SIDECAR_SUFFIXES, sidecar_suffix
from edge_app.service.lifecycle import ScanRecord
from edge_app.service.writer import ERROR_SUFFIX


class Settler:
    def __init__(self, archive: Path, quarantine: Path, is_reserved: Callable[[str], bool]) -> None:
        self.archive = archive
        self.quarantine = quarantine
        self.is_reserved = is_reserved
        for folder in (archive, quarantine):
            folder.mkdir(parents=True, exist_ok=True)

    def folder_for(self, rejected: bool) -> Path:
        return self.quarantine if rejected else self.archive

    def reserve(self, input_name: str, rejected: bool) -> str:
        """A free name (relative path) for `input_name` in the archive, or in the quarantine beside its error file."""
        relative = PurePosixPath(input_name)
        folder = self.folder_for(rejected) / relative.parent
        suffix = relative.suffix
        companions = (suffix, *SIDECAR_SUFFIXES, *((suffix + ERROR_SUFFIX,) if rejected else ()))
        parent = "" if str(relative.parent) == "." else f"{relative.parent}/"
        stem = unique_stem(
            folder, relative.stem, companions, lambda candidate: self.is_reserved(f"{parent}{candidate}{suffix}")
        )
        return f"{parent}{stem}{suffix}"

    def settled_sidecar(self, record: ScanRecord) -> Path | None:
        """Where the scan's sidecar goes: beside the scan, under the scan's settled stem and its own kind's suffix
        (``a (2).roi.json``, ``a (2).sr.dcm``)."""
        if record.sidecar_name is None or record.settled_name is None:
            return None
        settled = PurePosixPath(record.settled_name)
        suffix = sidecar_suffix(record.sidecar_name)
        assert suffix is not None, record.sidecar_name  # intake pairs a scan only with a name a sidecar can have
        return self.folder_for(record.rejected) / settled.parent / f"{settled.stem}{suffix}"

    def settle(
        self, record: ScanRecord, claimed: Path, claimed_sidecar: Path, syncs: PendingSyncs | None = None
    ) -> Path:
        """Move the claimed input (and its sidecar) to the reserved place, unless a crash already moved them; returns
        where the input is (the folders fsynced now, or by `syncs` with the rest of a batch)."""
        assert record.settled_name is not None, "the settled name is reserved before settling"
        sidecar_target = self.settled_sidecar(record)
        if sidecar_target is not None and os.path.lexists(claimed_sidecar):
            sidecar_target.parent.mkdir(parents=True, exist_ok=True)
            move_durably(claimed_sidecar, sidecar_target, syncs)
        target = self.folder_for(record.rejected) / record.settled_name
        if os.path.lexists(claimed):
            target.parent.mkdir(parents=True, exist_ok=True)
            move_durably(claimed, target, syncs)
        return target
