"""Peak RSS of one model alone: a fresh child process loads it, invokes it a few times and reports its high-water mark.

Variants run interleaved in one process for timing, so that process's peak holds all of them at once; memory per
model needs a process of its own. The figure includes Python, numpy and the runtime (as the daemon would).
Child: ``python -m benchmarks.memory MODEL THREADS RUNTIME`` prints ``{"peak_rss_mb": ...}``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.machine import peak_rss_mb
from benchmarks.runners import feed_random
from edge_app.runtime import load_runtime, make_interpreter

CHILD_INVOKES = 3


def model_peak_rss_mb(model: Path, threads: int, runtime: str) -> float:
    """Run the child for `model` and return its peak RSS in MB."""
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", str(model), str(threads), runtime],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        tail = completed.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"memory probe of {model.name} failed: {tail[0]}")
    return float(json.loads(completed.stdout.strip().splitlines()[-1])["peak_rss_mb"])


def main(argv: Sequence[str] | None = None) -> int:
    model, threads, runtime = (argv if argv is not None else sys.argv[1:])[:3]
    interpreter = make_interpreter(load_runtime(runtime), Path(model), int(threads))
    feed_random(interpreter)
    for _ in range(CHILD_INVOKES):
        interpreter.invoke()
    print(json.dumps({"peak_rss_mb": round(peak_rss_mb(), 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
