"""Timed interpreters: what one benchmark row measures (init, first invoke, steady-state invokes)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_app.macs import count_macs
from edge_app.model import set_input, set_inputs

SEED = 0


def feed_random(interpreter: Any) -> None:
    """Fixed pseudo-random inputs: image-like 0-255 for the classifier, non-negative maps for the Grad-CAM head.

    Latency of these graphs does not depend on values (no data-dependent control flow), only on shapes and dtypes.
    """
    rng = np.random.default_rng(SEED)
    details = interpreter.get_input_details()
    if len(details) == 1 and int(details[0]["shape"][-1]) == 1:
        set_input(interpreter, rng.integers(0, 256, details[0]["shape"]).astype(np.float32))
        return
    set_inputs(interpreter, {i: rng.random(d["shape"], np.float32) for i, d in enumerate(details)})


@dataclass(frozen=True)
class Case:
    """One row of the latency table: a bundle file at a thread count."""

    model: str
    role: str
    variant: str
    threads: int


@dataclass
class TimedInterpreter:
    case: Case
    interpreter: Any
    init_ms: float
    first_ms: float
    macs: int

    def invoke(self) -> float:
        """One invoke; its wall time in milliseconds."""
        started = time.perf_counter()
        self.interpreter.invoke()
        return (time.perf_counter() - started) * 1000


def start(case: Case, open_interpreter: Callable[[], Any], macs: Callable[[Any], int] = count_macs) -> TimedInterpreter:
    """Build the interpreter (timed: load + allocate), feed it, and time its first invoke; `macs` counts its
    multiply-accumulates (a peer's adapter is counted on the TFLite graph it was exported from)."""
    started = time.perf_counter()
    interpreter = open_interpreter()
    init_ms = (time.perf_counter() - started) * 1000
    feed_random(interpreter)
    started = time.perf_counter()
    interpreter.invoke()
    first_ms = (time.perf_counter() - started) * 1000
    return TimedInterpreter(case, interpreter, init_ms, first_ms, macs(interpreter))
