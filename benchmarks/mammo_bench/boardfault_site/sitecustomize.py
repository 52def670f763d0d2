"""Installs `mammo_bench.boardfault`'s fault in every ``mammo-edge`` command started with this folder on PYTHONPATH
(other Pythons, Ansible's modules among them, start untouched)."""

import sys
from pathlib import Path

if Path(sys.argv[0]).name == "mammo-edge":
    from mammo_bench.boardfault import install

    install()
