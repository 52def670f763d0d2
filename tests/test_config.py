"""Configuration: CLI over environment over file over defaults; unknown keys named; check-config."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_app.cli import main
from edge_app.config import Config, resolve_config
from edge_app.errors import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_layers_override_in_order(tmp_path: Path) -> None:
    file = _write(tmp_path, '[model]\nthreads = 3\nbundle = "/b"\n[ingest]\nsettle_seconds = 5\n')
    config = resolve_config(file, environ={})
    assert (config.model.threads, config.model.bundle, config.ingest.settle_seconds) == (3, Path("/b"), 5.0)
    config = resolve_config(file, environ={"MAMMO_EDGE_MODEL_THREADS": "4", "MAMMO_EDGE_INGEST_POLLING": "yes"})
    assert config.model.threads == 4 and config.ingest.polling is True
    config = resolve_config(file, {"model": {"threads": 1}}, environ={"MAMMO_EDGE_MODEL_THREADS": "4"})
    assert config.model.threads == 1 and config.model.bundle == Path("/b")


@pytest.mark.parametrize(
    ("text", "environ", "message"),
    [
        ("[model]\nbundel = '/x'\n", {}, "[model]: unknown key(s) 'bundel' (known: bundle, variant,"),
        ("[modle]\nthreads = 2\n", {}, "unknown section(s) 'modle' (known: model, paths, ingest, scope, journal, log)"),
        ("", {"MAMMO_EDGE_MODEL_THREDS": "2"}, "environment [model]: unknown key(s) 'threds'"),
        ("", {"MAMMO_EDGE_COLOUR": "red"}, "unknown variable MAMMO_EDGE_COLOUR"),
        ("[model]\nthreads = 'many'\n", {}, "[model] threads must be int"),
        ("[model]\nthreads = 0\n", {}, "threads must be >= 1"),
        ("[paths]\ninbox = '/srv/x'\nresults = '/srv/x/results'\n", {}, "inbox and results must be separate"),
        ("[model\n", {}, "not valid TOML"),
    ],
)
def test_errors_name_the_problem(tmp_path: Path, text: str, environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_config(_write(tmp_path, text), environ=environ)
    assert message in str(caught.value)


def test_named_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        resolve_config(tmp_path / "missing.toml", environ={})


def test_check_config_names_the_bad_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(_write(tmp_path, "[ingest]\nsettle = 1\n"))]) == 2
    assert "[ingest]: unknown key(s) 'settle' (known: settle_seconds," in capsys.readouterr().err


def test_effective_config_round_trips(tmp_path: Path) -> None:
    config = resolve_config(_write(tmp_path, "[model]\nthreads = 3\n[ingest]\nrecursive = true\n"), environ={})
    assert resolve_config(_write(tmp_path, config.to_toml()), environ={}) == config


def test_one_validation_rule_for_config_manifest_settings_and_preprocessing() -> None:
    """The same wording, each in its own error class, wherever a document is read (no TensorFlow needed)."""
    from edge_app.errors import BundleError, DataError
    from edge_app.manifest import manifest_from_dict
    from edge_app.preprocess import PreprocessConfig
    from mammo_train.runfiles import RunSettings

    with pytest.raises(BundleError, match=r"^manifest top level: missing key\(s\) 'architecture', 'backbones'"):
        manifest_from_dict({"schema_version": 2, "name": "m"})
    with pytest.raises(ConfigError, match=r"^preprocessing: unknown key\(s\) 'sharpen' \(known: input_size, clahe,"):
        PreprocessConfig.from_dict({"input_size": 96, "sharpen": True})
    with pytest.raises(DataError, match=r"^run settings: unknown key\(s\) 'epoch' \(known: arch, input_size,"):
        RunSettings.from_dict({"epoch": 3})
    with pytest.raises(ConfigError, match=r"\[log\] must be a table of keys and values, got str"):
        resolve_config(None, {"log": "loud"}, environ={})  # type: ignore[dict-item]


def test_the_shipped_config_file_states_every_default() -> None:
    """deploy/config.toml documents each key at its default: a default changed in code without the file (or the
    file without the code) fails here, and so does a key missing from the file."""
    from dataclasses import fields

    import tomllib

    shipped = Path(__file__).resolve().parents[1] / "deploy" / "config.toml"
    assert resolve_config(shipped, environ={}) == Config()
    written = tomllib.loads(shipped.read_text())
    expected = {section.name: {item.name for item in fields(type(section.default))} for section in fields(Config)}
    assert {name: set(values) for name, values in written.items()} == expected
