"""Every ``mammo-edge`` command a staging device of the fleet test runs (its installer's, Ansible's, its service):
the fake model's runtime (tests/fakemodel.py) instead of LiteRT, and the board fault its inventory asks for, if any
(`mammo_bench.boardfault`). On PYTHONPATH with tests/ itself; other Pythons (Ansible's modules) start untouched."""

import sys
from pathlib import Path

if Path(sys.argv[0]).name == "mammo-edge":
    from fakemodel import FAKE_RUNTIME

    import edge_app.model
    from mammo_bench.boardfault import install

    edge_app.model.load_runtime = lambda name="auto": FAKE_RUNTIME  # type: ignore[assignment,misc]
    install()
