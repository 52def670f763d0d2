"""One validation rule for every structured document the project reads (the device config, the model manifest, a
training run's settings, the preprocessing): a key the dataclass does not know is refused by name, with the keys it
does know, and so is a missing required key. Each caller passes its own `MammoEdgeError` subclass, so the error
says where it came from and every tool maps it to the same exit code."""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any

from edge_app.errors import MammoEdgeError


def checked_fields(
    cls: type, values: Any, where: str, error: type[MammoEdgeError], noun: str = "key"
) -> dict[str, Any]:
    """`values` as a dict whose keys are fields of dataclass `cls` (those without defaults required); `noun` names
    what a key is to the reader (a config file's top-level keys are its sections)."""
    if not isinstance(values, dict):
        raise error(f"{where} must be a table of keys and values, got {type(values).__name__}")
    known = [item.name for item in fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise error(f"{where}: unknown {noun}(s) {', '.join(map(repr, unknown))} (known: {', '.join(known)})")
    required = {item.name for item in fields(cls) if item.default is MISSING and item.default_factory is MISSING}
    missing = sorted(required - set(values))
    if missing:
        raise error(f"{where}: missing {noun}(s) {', '.join(map(repr, missing))}")
    return dict(values)
