"""The one place that finds a TFLite runtime and builds interpreters.

Order for ``auto``: LiteRT (``ai_edge_litert``), then ``tflite_runtime``. TensorFlow's own interpreter is used only
when asked for by name (``tensorflow``): the device never has TensorFlow, and importing it would cost seconds and
hundreds of MB.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from edge_app.errors import ModelRefusedError, RuntimeUnavailableError

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


def make_interpreter(runtime: Runtime, model: Path, threads: int) -> Any:
    """An interpreter with tensors allocated; a model the runtime cannot run raises ModelRefusedError."""
    try:
        interpreter = runtime.interpreter_class(model_path=str(model), num_threads=threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelRefusedError(runtime.label, Path(model).name, reason) from exc
    return interpreter
