"""``python fake_service.py ARGS``: ``mammo-edge ARGS`` with the fake model's runtime (tests/fakemodel.py), so a test
can SIGKILL the real service process many times a second without a real model's start-up cost."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]  # tests/, for fakemodel

from fakemodel import FAKE_RUNTIME  # noqa: E402

import edge_app.model as model_module  # noqa: E402 - after the path that finds fakemodel
from edge_app.cli import main  # noqa: E402

model_module.load_runtime = lambda name: FAKE_RUNTIME  # type: ignore[assignment]

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
