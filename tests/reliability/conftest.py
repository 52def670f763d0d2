"""The reliability suite runs the real service code on the fake model (tests/fakemodel.py): what it tests is the
service around the model, at a speed that lets it take thousands of scans."""

from __future__ import annotations

import pytest
from fakemodel import FAKE_RUNTIME

import edge_app.model as model_module


@pytest.fixture(autouse=True)
def fake_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_module, "load_runtime", lambda name: FAKE_RUNTIME)


@pytest.fixture
def long_mode(request: pytest.FixtureRequest) -> bool:
    """``pytest --long``: fuzzing, load and soak at their full size (minutes to hours); CI runs the short sizes."""
    return bool(request.config.getoption("--long"))
