"""The import rules that keep the layers apart, read from the source (every import, including ones inside functions).

- `edge_app` (the device) never imports the tools (`mammo_train`, `mammo_convert`, `mammo_bench`) or TensorFlow;
  inside it, the pixel and model modules never import the service (`edge_app.service`) or the CLI;
- the scan's lifecycle (`edge_app.service`) never imports the DICOM node (`edge_app.dicom`) or the web app
  (`edge_app.web`): the node's answers are a sink the CLI hands to the writer, its listener only writes into the
  inbox, and the web app only reads the journal and results and puts readers' submissions in their queue;
- the web app never imports the DICOM node or the CLI;
- `mammo_train` never imports `mammo_convert` or the device service, and its data pipeline uses the one
  preprocessing implementation in `edge_app`; `mammo_convert` never imports the device service;
- `mammo_bench` never imports `mammo_convert`, imports nothing from `edge_app.cli` and no private `edge_app` name,
  and on the device path (everything but the Keras bench) nothing from `mammo_train`;
- `mammo_deploy` (the offline archive) needs only the device code: never the training, conversion or benchmark
  tools, TensorFlow or the device service;
- no package claims a generic top-level name (`train`, `convert`, `benchmarks`, `deploy`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {
    "edge_app": REPO / "edge_app",
    "mammo_train": REPO / "train" / "mammo_train",
    "mammo_convert": REPO / "convert" / "mammo_convert",
    "mammo_bench": REPO / "benchmarks" / "mammo_bench",
    "mammo_deploy": REPO / "deploy" / "mammo_deploy",
}
TOOLS = ("mammo_train", "mammo_convert", "mammo_bench", "mammo_deploy", "train", "convert", "benchmarks", "deploy")
DEVICE_SERVICE = ("edge_app.service", "edge_app.cli")
PIXEL_AND_MODEL = (
    "decode",
    "preprocess",
    "gradcam",
    "model",
    "manifest",
    "runtime",
    "samples",
    "probe",
    "selftest",
    "store",
    "regions",
    "dicomregions",
)


def imports(folder: Path, root: Path) -> dict[str, set[str]]:
    """Module file -> every module it imports, and `module:name` for each name taken with `from module import`."""
    found: dict[str, set[str]] = {}
    for path in sorted(folder.rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path}: relative import"
                names.add(node.module or "")
                names.update(f"{node.module}:{alias.name}" for alias in node.names)
        found[path.relative_to(root).as_posix()] = names
    assert found, f"no modules under {folder}"
    return found


def offenders(folder: Path, forbidden: tuple[str, ...], root: Path = REPO) -> list[str]:
    return [
        f"{file} imports {name}"
        for file, names in imports(folder, root).items()
        for name in sorted(names)
        if ":" not in name and any(name == prefix or name.startswith(prefix + ".") for prefix in forbidden)
    ]


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("edge_app", (*TOOLS, "tensorflow", "keras")),
        ("mammo_train", ("mammo_convert", "mammo_bench", *DEVICE_SERVICE)),
        ("mammo_convert", ("mammo_bench", *DEVICE_SERVICE)),
        ("mammo_bench", ("mammo_convert", "edge_app.cli")),
        ("mammo_deploy", ("mammo_train", "mammo_convert", "mammo_bench", "tensorflow", *DEVICE_SERVICE)),
    ],
)
def test_layers_import_only_downwards(package: str, forbidden: tuple[str, ...]) -> None:
    assert offenders(FOLDERS[package], forbidden) == []


@pytest.mark.parametrize("module", PIXEL_AND_MODEL)
def test_pixels_and_model_know_nothing_of_the_service(module: str) -> None:
    names = imports(REPO / "edge_app", REPO)[f"edge_app/{module}.py"]
    assert not [name for name in names if name.startswith(DEVICE_SERVICE)]


def test_the_lifecycle_knows_nothing_of_the_dicom_node_or_the_web_app() -> None:
    assert offenders(REPO / "edge_app" / "service", ("edge_app.dicom", "edge_app.web")) == []
    assert offenders(REPO / "edge_app" / "web", ("edge_app.dicom", "edge_app.cli")) == []
    everything = imports(REPO / "edge_app", REPO)
    assert any(file.startswith("edge_app/dicom/") for file in everything)  # they are there
    assert any(file.startswith("edge_app/web/") for file in everything)


def test_device_benchmarks_need_no_training_code_and_no_private_names() -> None:
    found = imports(FOLDERS["mammo_bench"], REPO)
    device_path = {file: names for file, names in found.items() if not file.endswith("keras_bench.py")}
    assert not [f"{f} imports {n}" for f, names in device_path.items() for n in names if n.startswith("mammo_train")]
    private = [
        f"{file} imports {name}"
        for file, names in found.items()
        for name in names
        if name.startswith("edge_app") and ":" in name and name.split(":")[1].startswith("_")
    ]
    assert private == []


def test_training_data_goes_through_the_device_preprocessing() -> None:
    assert "edge_app.preprocess" in imports(FOLDERS["mammo_train"], REPO)["train/mammo_train/data.py"]


def test_no_generic_top_level_names_are_installed() -> None:
    """What `pip install` puts on sys.path: the packages setuptools finds with the project's own settings."""
    from setuptools import find_packages

    settings = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    top = {
        name.split(".")[0]
        for where in settings["where"]
        for name in find_packages(str(REPO / where), include=settings["include"])
    }
    assert top == {"edge_app", "mammo_train", "mammo_convert", "mammo_bench", "mammo_deploy"}


def test_the_rule_finds_deferred_and_plain_imports(tmp_path: Path) -> None:
    """The check is not vacuous: a deferred import in a function body, and a plain one, are both found."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "late.py").write_text("import os\n\ndef late() -> None:\n    from convert.cli import main\n")
    (tmp_path / "pkg" / "plain.py").write_text("import convert\n")
    assert offenders(tmp_path / "pkg", ("convert",), tmp_path) == [
        "pkg/late.py imports convert.cli",
        "pkg/plain.py imports convert",
    ]
