"""The one place that finds a TFLite runtime and builds interpreters.

Order for ``auto``: LiteRT (``ai_edge_litert``), then ``tflite_runtime``. TensorFlow's own interpreter is used only
when asked for by name (``tensorflow``): the device never has TensorFlow, and importing it would cost seconds and
hundreds of MB.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from edge_app.errors import BundleError, ModelRefusedError, RuntimeUnavailableError

RUNTIMES: dict[str, tuple[str, str]] = {
    # name: (module holding Interpreter, distribution for the version)
    "ai_edge_litert": ("ai_edge_litert.interpreter", "ai-edge-litert"),
    "tflite_runtime": ("tflite_runtime.interpreter", "tflite-runtime"),
    "tensorflow": ("tensorflow.lite", "tensorflow"),
}
AUTO_ORDER = ("ai_edge_litert", "tflite_runtime")


@dataclass(frozen=True)
class Runtime:
    name: str
    version: str
    interpreter_class: Any

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"


def load_runtime(name: str = "auto") -> Runtime:
    """The runtime called `name`, or the first installed one for ``auto``."""
    candidates = AUTO_ORDER if name == "auto" else (name,)
    if name != "auto" and name not in RUNTIMES:
        raise RuntimeUnavailableError(f"unknown runtime {name!r}; choose auto, {', '.join(RUNTIMES)}")
    problems = []
    for candidate in candidates:
        module_name, distribution = RUNTIMES[candidate]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            problems.append(f"{candidate}: {exc}")
            continue
        return Runtime(candidate, metadata.version(distribution), module.Interpreter)
    raise RuntimeUnavailableError(
        "no TFLite runtime could be imported (" + "; ".join(problems) + "); install ai-edge-litert "
        "(pip install 'mammo-edge[edge]') or tflite-runtime"
    )


def installed_runtimes() -> list[Runtime]:
    """Every auto-order runtime importable in this process."""
    found = []
    for name in AUTO_ORDER:
        try:
            found.append(load_runtime(name))
        except RuntimeUnavailableError:
            continue
    return found


def make_interpreter(runtime: Runtime, model: Path, threads: int, sha256: str | None = None) -> Any:
    """An interpreter with tensors allocated, built from the file's bytes read once (and checked against `sha256`
    when given): a model file changed on disk afterwards can never reach the running interpreter, as it would through
    a memory map of the path. A model the runtime cannot run raises ModelRefusedError."""
    try:
        content = Path(model).read_bytes()
    except OSError as exc:
        raise ModelRefusedError(runtime.label, Path(model).name, exc.strerror or type(exc).__name__) from exc
    if sha256 is not None and hashlib.sha256(content).hexdigest() != sha256:
        raise BundleError(f"{Path(model).name} does not match its sha256 in the manifest (changed after the check)")
    try:
        interpreter = runtime.interpreter_class(model_content=content, num_threads=threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelRefusedError(runtime.label, Path(model).name, reason) from exc
    return interpreter
