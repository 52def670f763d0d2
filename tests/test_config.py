"""Configuration: CLI over environment over file over defaults; unknown keys named; check-config."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from edge_app.cli import main
from edge_app.config import Config, is_loopback, resolve_config
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
        (
            "[modle]\nthreads = 2\n",
            {},
            "unknown section(s) 'modle' (known: model, paths, ingest, scope, regions, journal, log, dicom, web, "
            "metrics)",
        ),
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


def _resolve(**sections: dict[str, Any]) -> Config:
    return resolve_config(None, sections, environ={})


@pytest.mark.parametrize(
    ("section", "key", "bad", "message", "edge"),
    [
        ("model", "threads", 0, "[model] threads must be >= 1, got 0", 1),
        (
            "model",
            "variant",
            "int4",
            "[model] variant must be int8, float32, float16 or dynamic, got 'int4'",
            "float16",
        ),
        ("ingest", "settle_seconds", -0.5, "[ingest] settle_seconds must be >= 0 and rescan_seconds > 0", 0.0),
        ("ingest", "rescan_seconds", 0.0, "[ingest] settle_seconds must be >= 0 and rescan_seconds > 0", 0.01),
        ("ingest", "queue_limit", 0, "[ingest] queue_limit must be >= 1, got 0", 1),
        ("ingest", "max_pixels", 0, "[ingest] max_pixels must be >= 1, got 0", 1),
        ("ingest", "sidecar_wait", -1.0, "[ingest] sidecar_wait must be >= 0, got -1.0", 0.0),
        ("scope", "min_side_px", -1, "[scope] limits must be >= 0 (0: derived from the model bundle)", 0),
        ("scope", "max_side_px", -1, "[scope] limits must be >= 0 (0: derived from the model bundle)", 0),
        ("scope", "max_extent_mm", -0.1, "[scope] limits must be >= 0 (0: derived from the model bundle)", 0.0),
        ("journal", "retention_days", 0.0, "[journal] retention_days must be > 0, got 0.0", 0.001),
        ("model", "variant", "DYNAMIC", "[model] variant must be int8, float32, float16 or dynamic", "dynamic"),
        ("log", "audit_max_mb", 0.0, "[log] audit_max_mb must be > 0, got 0.0", 0.5),
        ("dicom", "port", 0, "[dicom] port must be 1-65535, got 0", 1),
        ("dicom", "port", 65536, "[dicom] port must be 1-65535, got 65536", 65535),
        ("dicom", "ae_title", "", "[dicom] ae_title: '' is not an AE title (1-16 printable ASCII", "A"),
        ("dicom", "ae_title", "A" * 17, f"[dicom] ae_title: {'A' * 17!r} is not an AE title", "A" * 16),
        ("dicom", "max_associations", 0, "[dicom] max_associations must be >= 1, got 0", 1),
        ("dicom", "enabled", True, "[dicom] enabled = true but allowed_ae_titles is empty: nobody could send", False),
        ("web", "port", 0, "[web] port must be 1-65535, got 0", 1),
        ("web", "port", 65536, "[web] port must be 1-65535, got 65536", 65535),
        ("web", "bind_address", "nowhere", "[web] bind_address: 'nowhere' is not an IP address", "localhost"),
        ("web", "tls_key", "/k", "[web] tls_cert and tls_key go together: set both, or neither", ""),
        ("web", "session_idle_minutes", 0.0, "[web] session_idle_minutes and session_max_hours must be > 0", 0.5),
        ("web", "session_max_hours", 0.0, "[web] session_idle_minutes and session_max_hours must be > 0", 0.5),
        ("web", "login_attempts", 0, "[web] login_attempts must be >= 1 and login_window_minutes > 0", 1),
        ("web", "login_window_minutes", 0.0, "[web] login_attempts must be >= 1 and login_window_minutes > 0", 0.5),
        ("regions", "propose", "auto", "[regions] propose must be off, suggest or answer, got 'auto'", "answer"),
        ("regions", "max_candidates", 0, "[regions] max_candidates must be 1-16, got 0", 1),
        ("regions", "max_candidates", 17, "[regions] max_candidates must be 1-16, got 17", 16),
        ("regions", "min_score", -0.01, "[regions] min_score must be 0-1, got -0.01", 0.0),
        ("regions", "min_score", 1.01, "[regions] min_score must be 0-1, got 1.01", 1.0),
    ],
)
def test_every_limit_is_checked_at_its_edge(section: str, key: str, bad: Any, message: str, edge: Any) -> None:
    """Each key's first invalid value is refused with its name; the last valid one is taken."""
    with pytest.raises(ConfigError) as caught:
        _resolve(**{section: {key: bad}})
    assert str(caught.value).startswith(message)
    assert getattr(getattr(_resolve(**{section: {key: edge}}), section), key) == edge


def test_scope_limits_may_meet_but_not_cross() -> None:
    assert _resolve(scope={"min_side_px": 64, "max_side_px": 64}).scope.max_side_px == 64
    with pytest.raises(ConfigError, match=r"^\[scope\] min_side_px 65 exceeds max_side_px 64$"):
        _resolve(scope={"min_side_px": 65, "max_side_px": 64})
    assert _resolve(scope={"min_side_px": 900}).scope.min_side_px == 900  # max 0 (derived): nothing to cross


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("1", True),
        ("TRUE", True),
        ("Yes", True),
        ("on", True),
        ("0", False),
        ("False", False),
        ("NO", False),
        ("off", False),
    ],
)
def test_booleans_from_the_environment(raw: str, value: bool) -> None:
    assert resolve_config(None, environ={"MAMMO_EDGE_INGEST_POLLING": raw}).ingest.polling is value


@pytest.mark.parametrize(
    ("variable", "raw", "message"),
    [
        ("MAMMO_EDGE_INGEST_POLLING", "maybe", "[ingest] polling must be bool, got 'maybe'"),
        ("MAMMO_EDGE_MODEL_THREADS", "2.5", "[model] threads must be int, got '2.5'"),
        ("MAMMO_EDGE_INGEST_SETTLE_SECONDS", "soon", "[ingest] settle_seconds must be float, got 'soon'"),
    ],
)
def test_environment_values_of_the_wrong_type_are_named(variable: str, raw: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_config(None, environ={variable: raw})
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("raw", "message"),
    [(True, "[model] threads must be int, got True"), (2.5, "[model] threads must be int, got 2.5")],
)
def test_a_bool_or_a_fraction_is_not_an_int(raw: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _resolve(model={"threads": raw})
    assert str(caught.value) == message
    assert _resolve(model={"threads": 3.0}).model.threads == 3  # a whole float is an int


def test_values_are_converted_to_the_fields_types(tmp_path: Path) -> None:
    config = _resolve(model={"bundle": "~/bundle", "heatmaps": "no"}, ingest={"settle_seconds": 3}, log={"level": 20})
    assert config.model.bundle == Path.home() / "bundle" and config.model.heatmaps is False
    assert config.ingest.settle_seconds == 3.0 and isinstance(config.ingest.settle_seconds, float)
    assert config.log.level == "20"


def test_empty_command_line_sections_change_nothing_and_the_environment_names_the_file(tmp_path: Path) -> None:
    assert resolve_config(None, {"model": {}}, environ={}) == Config()
    file = _write(tmp_path, "[model]\nthreads = 5\n")
    assert resolve_config(None, environ={"MAMMO_EDGE_CONFIG": str(file)}).model.threads == 5
    with pytest.raises(ConfigError, match=r"^config file .*absent.toml not found$"):
        resolve_config(None, environ={"MAMMO_EDGE_CONFIG": str(tmp_path / "absent.toml")})


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        ({"archive": "/srv/a", "quarantine": "/srv/a"}, "[paths] archive and quarantine must be separate folders"),
        ({"results": "/srv/r", "archive": "/srv/r/old"}, "[paths] archive and results must be separate folders"),
        ({"inbox": "/srv/i/sub", "quarantine": "/srv/i"}, "[paths] inbox and quarantine must be separate folders"),
    ],
)
def test_the_data_folders_must_not_overlap(paths: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _resolve(paths=paths)
    assert message in str(caught.value)
    assert _resolve(paths={"results": "/srv/r", "archive": "/srv/rr"}).paths.archive == Path("/srv/rr")  # a prefix


def test_the_effective_config_is_written_as_toml() -> None:
    text = _resolve(model={"heatmaps": False, "bundle": "/b"}).to_toml()
    assert '[model]\nbundle = "/b"\nvariant = "int8"\nruntime = "auto"\nthreads = 2\nheatmaps = false\n' in text
    assert "[ingest]\nsettle_seconds = 2.0\n" in text and "recursive = false\n" in text and text.endswith("\n")


def test_each_layer_names_itself_in_its_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = _write(tmp_path, "[modle]\nthreads = 2\n")
    with pytest.raises(ConfigError, match=rf"^{file}: unknown section\(s\) 'modle'"):
        resolve_config(file, environ={})
    with pytest.raises(ConfigError, match=r"^command line \[model\]: unknown key\(s\) 'bundel'"):
        resolve_config(None, {"model": {"bundel": "/b"}}, environ={})
    with pytest.raises(ConfigError, match=r"^environment \[model\]: unknown key\(s\) 'thred'"):
        resolve_config(None, environ={"PATH": "/bin", "MAMMO_EDGE_MODEL_THRED": "2"})
    # variables of other programs, before or after ours, are none of the config's business
    environ = {"HOME": "/root", "MAMMO_EDGE_MODEL_THREADS": "3", "XDG_RUNTIME_DIR": "/run"}
    assert resolve_config(None, environ=environ).model.threads == 3


def test_the_default_file_is_read_when_present_and_optional_when_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edge_app.config as config_module

    monkeypatch.setattr(config_module, "DEFAULT_CONFIG", tmp_path / "absent.toml")
    assert resolve_config(None, environ={}) == Config()  # no file at the default place: the defaults
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG", _write(tmp_path, "[model]\nthreads = 7\n"))
    assert resolve_config(None, environ={}).model.threads == 7


@pytest.mark.parametrize(
    ("forward", "message"),
    [
        ({"port": 0}, "[dicom.forward] port must be 1-65535, got 0"),
        ({"ae_title": "A" * 17}, f"[dicom.forward] ae_title: {'A' * 17!r} is not an AE title"),
        ({"timeout_seconds": 0.0}, "[dicom.forward] timeout_seconds and retry_seconds must be > 0, retry_max_seconds"),
        ({"retry_seconds": 0.0}, "[dicom.forward] timeout_seconds and retry_seconds must be > 0, retry_max_seconds"),
        ({"retry_seconds": 10.0, "retry_max_seconds": 9.9}, "[dicom.forward] timeout_seconds and retry_seconds"),
    ],
)
def test_the_forwarders_limits_are_named_under_their_own_section(forward: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _resolve(dicom={"forward": forward})
    assert str(caught.value).startswith(message)


def test_the_forwarders_smallest_valid_values_and_networks_given_by_any_address_in_them() -> None:
    edges = {"port": 1, "timeout_seconds": 0.5, "retry_seconds": 0.5, "retry_max_seconds": 0.5}
    config = _resolve(dicom={"forward": edges, "allowed_networks": ["10.1.2.3/24"]})
    assert config.dicom.forward == replace(config.dicom.forward, **edges)
    assert config.dicom.allowed_networks == ("10.1.2.3/24",)


@pytest.mark.parametrize(
    ("address", "loopback"),
    [("localhost", True), ("127.0.0.2", True), ("::1", True), ("10.0.0.1", False), ("device.local", False)],
)
def test_which_addresses_reach_this_machine_only(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback
