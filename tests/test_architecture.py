"""The import rules that keep the layers apart, read from the source (every import, including ones inside functions).

- `edge_app` (the device) never imports `train`, `convert` or `benchmarks`;
- `train` never imports `convert`, the device's daemon or its folder watcher, and its data pipeline uses the one
  preprocessing implementation in `edge_app`;
- `convert` never imports the daemon or the watcher; `benchmarks` (device side) never imports `convert`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEVICE_RUNTIME = ("edge_app.daemon", "edge_app.watcher", "edge_app.processor", "edge_app.journal")


def imported_modules(package: str, root: Path = REPO) -> dict[str, set[str]]:
    """Module file -> every module it imports (absolute names; the project uses no relative imports)."""
    found: dict[str, set[str]] = {}
    for path in sorted((root / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path}: relative import"
                names.add(node.module or "")
        found[path.relative_to(root).as_posix()] = names
    assert found, f"no modules under {package}"
    return found


def _offenders(package: str, forbidden: tuple[str, ...], root: Path = REPO) -> list[str]:
    return [
        f"{file} imports {name}"
        for file, names in imported_modules(package, root).items()
        for name in sorted(names)
        if any(name == prefix or name.startswith(prefix + ".") for prefix in forbidden)
    ]


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("edge_app", ("train", "convert", "benchmarks", "tensorflow", "keras")),
        ("train", ("convert", *DEVICE_RUNTIME)),
        ("convert", DEVICE_RUNTIME),
        ("benchmarks", ("convert",)),
    ],
)
def test_layers_import_only_downwards(package: str, forbidden: tuple[str, ...]) -> None:
    assert _offenders(package, forbidden) == []


def test_training_data_goes_through_the_device_preprocessing() -> None:
    assert "edge_app.preprocess" in imported_modules("train")["train/data.py"]


def test_the_rule_sees_imports_inside_functions(tmp_path: Path) -> None:
    """The check is not vacuous: a deferred import in a function body, and a plain one, are both found."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "late.py").write_text("import os\n\ndef late() -> None:\n    from convert.cli import main\n")
    (tmp_path / "pkg" / "plain.py").write_text("import convert\n")
    assert _offenders("pkg", ("convert",), tmp_path) == [
        "pkg/late.py imports convert.cli",
        "pkg/plain.py imports convert",
    ]
