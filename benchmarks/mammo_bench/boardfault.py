"""A board that fails one model version, for a fleet rollout's drills: the rollout must stop at it and roll it back.

``MAMMO_BENCH_BOARD_FAULT`` names the fault and the model version it strikes:

- ``answers:VERSION``: every answer of that version comes out inverted (p -> 1 - p), as on a board whose kernels
  miscompute it. The bundle's self-test catches it when the model is installed.
- ``service:VERSION``: the analysis service dies as it loads that version, as on a board without the memory for it.
  The install and its self-test pass; the health check after the restart catches it.

Put ``mammo_bench/boardfault_site`` on ``PYTHONPATH`` with the variable set (Ansible's ``mammo_edge_environment`` for
that host): its ``sitecustomize`` installs the fault in every ``mammo-edge`` command the device runs. Other versions run
untouched.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from edge_app.errors import DataError

FAULT_VARIABLE = "MAMMO_BENCH_BOARD_FAULT"
FAULTS = ("answers", "service")


def board_fault(kind: str, version: str) -> dict[str, str]:
    """The environment that gives a device `kind` of fault on model `version`."""
    if kind not in FAULTS:
        raise DataError(f"unknown board fault {kind!r}; choose from {', '.join(FAULTS)}")
    return {FAULT_VARIABLE: f"{kind}:{version}"}


def install() -> None:
    """Make the fault `MAMMO_BENCH_BOARD_FAULT` names happen in this process (nothing when it is unset)."""
    setting = os.environ.get(FAULT_VARIABLE)
    if not setting:
        return
    kind, _, version = setting.partition(":")
    if kind not in FAULTS or not version:
        raise DataError(f"{FAULT_VARIABLE}={setting!r}: expected one of {', '.join(FAULTS)}, a colon and a version")
    from edge_app.model import EdgeModel, Prediction

    honest_init = EdgeModel.__init__

    def faulty_init(model: EdgeModel, *args: Any, **kwargs: Any) -> None:
        honest_init(model, *args, **kwargs)
        if model.manifest.version != version:
            return
        if kind == "service" and sys.argv[1:2] == ["run"]:
            raise MemoryError(f"board fault: the analysis service cannot hold model {version} on this board")
        if kind == "answers":
            honest = model.predict_batch
            labels = model.manifest.labels
            threshold = model.manifest.threshold

            def miscomputed(images: Sequence[Any], heatmap: bool = True) -> list[Prediction]:
                inverted = []
                for prediction in honest(images, heatmap):
                    probability = 1.0 - prediction.probability
                    label = labels[int(probability >= threshold)]
                    inverted.append(replace(prediction, logit=-prediction.logit, probability=probability, label=label))
                return inverted

            model.predict_batch = miscomputed  # type: ignore[method-assign]

    EdgeModel.__init__ = faulty_init  # type: ignore[method-assign,assignment]
