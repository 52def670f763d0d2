"""Every console tool's exit codes: 0 done, 1 done but a check failed or an input was not classified, 2 refused to
start with one line saying why (never a traceback). ``mammo-edge``'s are in test_refusals.py, the conversion gate's 1
in test_convert.py, ``mammo-data``'s in test_data_cli.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mammo_bench.cli import main as bench_main
from mammo_convert.cli import main as convert_main
from mammo_train.cli import eval_main, train_main
from mammo_train.data_cli import main as data_main

TOOLS: dict[str, Callable[[list[str]], int]] = {
    "mammo-train": train_main,
    "mammo-eval": eval_main,
    "mammo-convert": convert_main,
    "mammo-bench": bench_main,
    "mammo-data": data_main,
}


@pytest.mark.parametrize("tool", TOOLS)
def test_help_exits_0_and_a_bad_argument_exits_2(tool: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as helped:
        TOOLS[tool](["--help"])
    assert helped.value.code == 0 and capsys.readouterr().out.startswith("usage: ")
    with pytest.raises(SystemExit) as refused:
        TOOLS[tool](["--no-such-option"])
    assert refused.value.code == 2 and f"{tool}: error: " in capsys.readouterr().err


@pytest.mark.tensorflow
@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        ("mammo-train", ["--split", "{tmp}/none.csv", "--out", "{tmp}/run"], "split file {tmp}/none.csv not found"),
        ("mammo-train", ["--split", "{tmp}/s.csv", "--out", "{tmp}/r", "--arch", "vgg"], "unknown --arch vgg; choose"),
        ("mammo-eval", ["{tmp}"], "{tmp} is not a training run (no config.json)"),
        ("mammo-convert", ["{tmp}", "--out", "{tmp}/b"], "{tmp} is not a training run (no config.json)"),
        ("mammo-bench", ["soak", "{tmp}"], "{tmp} is not a model bundle: manifest.json not found"),
        ("mammo-data", ["audit", "{tmp}/missing"], "missing"),
    ],
)
def test_a_tool_that_cannot_start_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tool: str, arguments: list[str], message: str
) -> None:
    pytest.importorskip("tensorflow", reason="the training tools need the train extra")
    assert TOOLS[tool]([argument.format(tmp=tmp_path) for argument in arguments]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"{tool}") and message.format(tmp=tmp_path) in error and error.count("\n") == 1, error


@pytest.mark.slow
def test_mammo_train_and_mammo_eval_end_to_end_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`mammo-train`'s main on a tiny dataset (one small baseline, one epoch, eagerly), then `mammo-eval` on its run."""
    assert data_main(["synth", str(tmp_path / "data"), "--per-class", "20", "--size", "32", "--copies", "0"]) == 0
    arguments = [
        "--data",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / "run"),
        "--arch",
        "densenet121",
        "--by",
        "mass",
    ]
    arguments += ["--input-size", "32", "--weights", "none", "--epochs", "1", "--batch-size", "8", "--eager", "--quiet"]
    assert train_main(arguments) == 0
    assert (tmp_path / "run" / "model.keras").is_file() and (tmp_path / "run" / "metrics.json").is_file()
    assert eval_main([str(tmp_path / "run"), "--gradcam", "0"]) == 0
    assert "test: AUC" in capsys.readouterr().out
