"""The tools that need TensorFlow say so plainly where only the device (``edge``) extra is installed: their
``--help`` works everywhere, running them without TensorFlow is one clear error."""

from __future__ import annotations

from importlib.util import find_spec

from edge_app.errors import MissingExtraError


def require_train_extra() -> None:
    missing = [name for name in ("tensorflow", "keras") if find_spec(name) is None]
    if missing:
        raise MissingExtraError(
            f"this tool needs the train extra ({', '.join(missing)} not installed): pip install 'mammo-edge[train]'"
        )
