"""Peak RSS of one model alone: a fresh child process loads it, invokes it a few times and reports its high-water mark.

Variants run interleaved in one process for timing, so that process's peak holds all of them at once; memory per
model needs a process of its own. The figure includes Python, numpy and the runtime (as the daemon would).
Child: ``python -m mammo_bench.memory MODEL THREADS RUNTIME`` (a TFLite runtime or a peer's) prints
``{"peak_rss_mb": ...}``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from edge_app.runtime import load_runtime, make_interpreter
from mammo_bench.child import run_json_child
from mammo_bench.machine import peak_rss_mb
from mammo_bench.peers import ADAPTERS, open_peer
from mammo_bench.runners import feed_random

CHILD_INVOKES = 3


def model_peak_rss_mb(model: Path, threads: int, runtime: str) -> float:
    """Run the child for `model` and return its peak RSS in MB."""
    result = run_json_child("mammo_bench.memory", [str(model), str(threads), runtime], f"memory probe of {model.name}")
    return float(result["peak_rss_mb"])


def main(argv: Sequence[str] | None = None) -> int:
    model, threads, runtime = (argv if argv is not None else sys.argv[1:])[:3]
    if runtime in ADAPTERS:
        interpreter = open_peer(runtime, Path(model), int(threads))
    else:
        interpreter = make_interpreter(load_runtime(runtime), Path(model), int(threads))
    feed_random(interpreter)
    for _ in range(CHILD_INVOKES):
        interpreter.invoke()
    print(json.dumps({"peak_rss_mb": round(peak_rss_mb(), 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
