"""``mammo-bench ci-run``: what `.ci/run` costs from a clean clone, on this host and as on an AVX2-only one.

CI runs on whichever machine a submission gets, and those differ: some have AVX-512 and VNNI, some AVX2 only, where
TensorFlow trains far slower. Each ``--isa`` clones the repository's HEAD into a fresh folder (beside a link to the
checkout's ``../shared``, so the tests on real films run as in CI's clone) and runs ``.ci/run`` there (``make
test``: the venvs, ruff, mypy and every test), timed from the clone; ``avx2`` sets oneDNN's own
``ONEDNN_MAX_CPU_ISA=AVX2``, so TensorFlow computes as it does on such a host. The file keeps one run per host kind
(a new measurement of a kind replaces the old one); the README quotes the slowest.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edge_app.errors import DataError
from mammo_bench.machine import machine_info

ISA_ENVIRONMENT = {"native": {}, "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"}}
_OUTCOME = re.compile(r"(\d+) (passed|failed|errors?|skipped)")
_SUMMARY = re.compile(r"^=+ (.*) in [\d.]+s(?: \([\d:]+\))? =+$", re.M)


def outcome_counts(output: str) -> dict[str, int]:
    """pytest's closing line (``= 1 failed, 700 passed, 2 errors in 1500.0s =``) as counts of each outcome."""
    summaries = _SUMMARY.findall(output)
    if not summaries:
        raise DataError("the run printed no pytest summary line (it stopped before the tests ended)")
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    for number, outcome in _OUTCOME.findall(summaries[-1]):
        counts["errors" if outcome.startswith("error") else outcome] = int(number)
    return counts


def clean_clone_run(repo: Path, isa: str, log: Path) -> dict[str, Any]:
    """Clone `repo`'s HEAD into a temporary folder, run `.ci/run` there with `isa`'s environment; its figures."""
    if isa not in ISA_ENVIRONMENT:
        raise DataError(f"unknown --isa {isa!r}; choose from {', '.join(ISA_ENVIRONMENT)}")
    commit = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="mammo-ci-") as folder:
        clone = Path(folder) / "clone"
        shared = repo.parent / "shared"
        if shared.is_dir():  # the checkout's layout: tests read the real films from ../shared, as CI's clone does
            (Path(folder) / "shared").symlink_to(shared)
        started = time.monotonic()
        subprocess.run(["git", "clone", "--quiet", str(repo), str(clone)], check=True)
        with log.open("w") as handle:
            code = subprocess.run(
                ["bash", str(clone / ".ci" / "run")],
                cwd=clone,
                env={**os.environ, **ISA_ENVIRONMENT[isa]},
                stdout=handle,
                stderr=subprocess.STDOUT,
                check=False,
            ).returncode
        seconds = time.monotonic() - started
    output = log.read_text(errors="replace")
    return {
        "isa": isa,
        "environment": ISA_ENVIRONMENT[isa],
        "commit": commit,
        "seconds": round(seconds),
        "exit_code": code,
        **outcome_counts(output),
        "seed": _seed(output),
        "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _seed(output: str) -> str | None:
    found = re.search(r"--randomly-seed=(\d+)", output)
    return found.group(1) if found else None


def record_runs(out: Path, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """`out` with `runs` in it, each replacing an earlier run of its host kind; the slowest is the README's."""
    document: dict[str, Any] = json.loads(out.read_text()) if out.is_file() else {}
    kept = [run for run in document.get("runs", []) if run["isa"] not in {new["isa"] for new in runs}]
    merged = sorted([*kept, *runs], key=lambda run: list(ISA_ENVIRONMENT).index(run["isa"]))
    updated = {
        "what": "bash .ci/run (make test) from a clean clone of the commit, wall time from the clone; one run per "
        "host kind (avx2: TensorFlow limited to AVX2 by ONEDNN_MAX_CPU_ISA); the README quotes the slowest",
        "tool": "mammo-bench ci-run",
        "machine": machine_info(),
        "runs": merged,
        "seconds": max(run["seconds"] for run in merged),
    }
    out.write_text(json.dumps(updated, indent=2) + "\n")
    return updated
