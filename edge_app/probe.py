"""``python -m edge_app.probe FILE...``: which installed TFLite runtimes can load and run each file (JSON out).

The conversion gate runs this in other Python environments too (e.g. one with tflite-runtime and numpy < 2),
so the manifest records every runtime a file was verified with.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_app.errors import ModelRefusedError
from edge_app.runtime import installed_runtimes, make_interpreter


def probe(files: Sequence[Path]) -> dict[str, dict[str, str]]:
    """file name -> runtime label -> "ok" or the reason it failed (load, allocate or one invoke on zeros)."""
    results: dict[str, dict[str, str]] = {}
    for file in files:
        outcomes = results.setdefault(Path(file).name, {})
        for runtime in installed_runtimes():
            try:
                interpreter = make_interpreter(runtime, Path(file), threads=1)
                for detail in interpreter.get_input_details():
                    interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
                interpreter.invoke()
                outcomes[runtime.label] = "ok"
            except ModelRefusedError as exc:
                outcomes[runtime.label] = exc.reason  # the file and the runtime are the keys already
            except (ValueError, RuntimeError) as exc:
                outcomes[runtime.label] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return results


def main(argv: Sequence[str] | None = None) -> int:
    files = [Path(arg) for arg in (sys.argv[1:] if argv is None else argv)]
    print(json.dumps(probe(files)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
