"""The daemon's configuration: resolved once (CLI over environment over TOML file over defaults) into a frozen object.

Unknown keys are errors that name the key, in the file (``[model] bundel = ...``) and in the environment
(``MAMMO_EDGE_MODEL_BUNDEL``): a typo must never silently fall back to a default on a clinic's device.
Environment variables are ``MAMMO_EDGE_<SECTION>_<KEY>`` (``MAMMO_EDGE_MODEL_THREADS=4``); ``MAMMO_EDGE_CONFIG``
names the file.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import sys
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from edge_app.decode import DEFAULT_MAX_PIXELS
from edge_app.errors import ConfigError
from edge_app.regions import MAX_REGIONS
from edge_app.signing import trusted_keys
from edge_app.strict import checked_fields

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (JetPack 6)
    import tomli as tomllib

DEFAULT_CONFIG = Path("/etc/mammo-edge/config.toml")
ENV_PREFIX = "MAMMO_EDGE_"
PROPOSE_MODES = ("off", "suggest", "answer")
FORWARD_PROTOCOLS = ("dimse", "dicomweb")


@dataclass(frozen=True)
class ModelSection:
    bundle: Path = Path("/var/lib/mammo-edge/bundle")
    variant: str = "int8"
    runtime: str = "auto"
    threads: int = 2
    heatmaps: bool = True
    trusted_keys: tuple[str, ...] = ()  # public keys (.pub lines) whose signed bundles run here; none: not checked


@dataclass(frozen=True)
class PathsSection:
    inbox: Path = Path("/srv/mammo-edge/inbox")
    results: Path = Path("/srv/mammo-edge/results")
    archive: Path = Path("/srv/mammo-edge/archive")
    quarantine: Path = Path("/srv/mammo-edge/quarantine")
    state: Path = Path("/var/lib/mammo-edge/state")
    outbox: Path = Path("/var/lib/mammo-edge/outbox")  # DICOM answers waiting to be forwarded


@dataclass(frozen=True)
class IngestSection:
    settle_seconds: float = 2.0
    rescan_seconds: float = 30.0
    recursive: bool = False
    polling: bool = False
    queue_limit: int = 1000
    min_free_mb: int = 200
    max_pixels: int = DEFAULT_MAX_PIXELS
    sidecar_wait: float = 10.0  # seconds a scan without a region sidecar waits for one before it is answered


@dataclass(frozen=True)
class ScopeSection:
    """Which scans without regions are classified whole; 0 derives the limit from the bundle's training scope
    (half the smallest training patch, twice the largest, twice its physical size)."""

    min_side_px: int = 0
    max_side_px: int = 0
    max_extent_mm: float = 0.0


@dataclass(frozen=True)
class RegionsSection:
    """A film that came without regions: ``off`` answers it ``needs_roi`` as before; ``suggest`` (with a detector in
    the bundle) answers it ``needs_roi`` with the detector's candidates listed for the reader; ``answer`` classifies
    each candidate as a region the device marked. At most `max_candidates`, each scoring at least `min_score`."""

    propose: str = "suggest"
    max_candidates: int = 4
    min_score: float = 0.1


@dataclass(frozen=True)
class JournalSection:
    retention_days: float = 365.0


@dataclass(frozen=True)
class LogSection:
    level: str = "INFO"
    audit_max_mb: float = 64.0  # results.jsonl / results.csv start a new numbered segment past this; none is deleted


@dataclass(frozen=True)
class MetricsSection:
    """Besides ``state/metrics.prom`` (served by the web app at /metrics), the same text written here for
    node-exporter's textfile collector (e.g. ``/var/lib/prometheus/node-exporter/mammo_edge.prom``); none: not."""

    textfile: str = ""


@dataclass(frozen=True)
class DicomForwardSection:
    """Where DICOM answers (SR and Secondary Capture) are sent: by C-STORE to ``ae_title@host:port`` (``dimse``) or
    by STOW-RS to ``url`` (``dicomweb``). Without a destination they are written, not sent."""

    protocol: str = "dimse"
    ae_title: str = "PACS"
    host: str = ""
    port: int = 104
    url: str = ""  # the DICOMweb service's base URL, e.g. https://pacs.example/dicom-web
    auth_file: str = ""  # basic or bearer credentials for `url` (a TOML file only the service may read)
    ca_file: str = ""  # the certificate authorities `url`'s certificate is verified against (default: the system's)
    tls_verify: bool = True
    timeout_seconds: float = 30.0
    retry_seconds: float = 10.0  # the first retry's delay; each failure doubles it, up to retry_max_seconds
    retry_max_seconds: float = 600.0

    @property
    def enabled(self) -> bool:
        """Whether there is a destination: the answers are queued in the outbox and forwarded."""
        return bool(self.url if self.protocol == "dicomweb" else self.host)

    def require_destination(self, consequence: str) -> None:
        """Refuse, naming the empty setting, where a command needs a destination and there is none."""
        if not self.enabled:
            setting = "url" if self.protocol == "dicomweb" else "host"
            raise ConfigError(f"[dicom.forward] {setting} is empty: {consequence}")

    @property
    def destination(self) -> str:
        """The destination as the status and the logs name it (never with credentials)."""
        return self.url if self.protocol == "dicomweb" else f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class DicomSection:
    """The DICOM node: ``mammo-edge dicom-listen`` (off unless enabled) and the answers written for DICOM scans."""

    enabled: bool = False
    ae_title: str = "MAMMO_EDGE"
    port: int = 11112
    bind_address: str = "0.0.0.0"
    allowed_ae_titles: tuple[str, ...] = ()  # calling AE titles allowed to associate (none: nobody)
    allowed_networks: tuple[str, ...] = ()  # source address ranges, e.g. "10.1.2.0/24" (none: any address)
    max_associations: int = 4
    answers: bool = True  # write an SR and a Secondary Capture into the results for every analysed DICOM scan
    forward: DicomForwardSection = DicomForwardSection()


@dataclass(frozen=True)
class WebSection:
    """The reader's web app, ``mammo-edge serve`` (off unless enabled). On any address but loopback it serves HTTPS
    only, with this certificate and key."""

    enabled: bool = False
    bind_address: str = "127.0.0.1"
    port: int = 8443
    tls_cert: str = ""
    tls_key: str = ""
    session_idle_minutes: float = 30.0
    session_max_hours: float = 12.0
    login_attempts: int = 5  # failed logins per account and per address within login_window_minutes
    login_window_minutes: float = 15.0


@dataclass(frozen=True)
class Config:
    model: ModelSection = ModelSection()
    paths: PathsSection = PathsSection()
    ingest: IngestSection = IngestSection()
    scope: ScopeSection = ScopeSection()
    regions: RegionsSection = RegionsSection()
    journal: JournalSection = JournalSection()
    log: LogSection = LogSection()
    dicom: DicomSection = DicomSection()
    web: WebSection = WebSection()
    metrics: MetricsSection = MetricsSection()

    def to_toml(self) -> str:
        """The effective configuration, as a TOML file that would reproduce it."""
        lines: list[str] = []
        for section in fields(self):
            _section_toml(section.name, getattr(self, section.name), lines)
        return "\n".join(lines)


def _section_toml(name: str, values: Any, lines: list[str]) -> None:
    lines.append(f"[{name}]")
    nested = []
    for item in fields(values):
        value = getattr(values, item.name)
        if is_dataclass(value):
            nested.append((f"{name}.{item.name}", value))
        else:
            lines.append(f"{item.name} = {_toml_value(value)}")
    lines.append("")
    for nested_name, nested_values in nested:
        _section_toml(nested_name, nested_values, lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, (str, Path)):
        return json.dumps(str(value))
    return str(value)


_SECTIONS: dict[str, Any] = {section.name: type(section.default) for section in fields(Config)}


def _convert(section: str, key: str, raw: Any, name: str) -> Any:
    """`raw` as the field's type, named as annotated (``bool``, ``int``, ``float``, ``Path``, ``str``, or
    ``tuple[str, ...]``: a TOML list of strings, or one comma-separated string from the environment)."""
    where = f"[{section}] {key}"
    try:
        if name == "tuple[str, ...]":
            items = raw.split(",") if isinstance(raw, str) else raw
            if not isinstance(items, list | tuple) or not all(isinstance(item, str) for item in items):
                raise ValueError
            return tuple(item.strip() for item in items if item.strip())
        if name == "bool":
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() in ("1", "true", "yes", "on"):
                return True
            if str(raw).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if name == "int":
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            return int(raw)
        if name == "float":
            value = float(raw)
            if not math.isfinite(value):  # NaN passes every `<` check, so it would switch a limit off
                raise ValueError
            return value
        if name == "Path":
            return Path(str(raw)).expanduser()
        return str(raw)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{where} must be {name}, got {raw!r}") from None


def _apply(config: Config, values: Mapping[str, Mapping[str, Any]], origin: str) -> Config:
    for section, items in checked_fields(Config, dict(values), origin, ConfigError, noun="section").items():
        updated = _apply_section(section, getattr(config, section), items, origin)
        config = replace(config, **{section: updated})
    return config


def _apply_section(name: str, current: Any, items: Any, origin: str) -> Any:
    """`current` (a section) with `items` applied; a nested section (``[dicom.forward]``) is a table inside it."""
    known = {item.name: str(item.type) for item in fields(current)}  # annotations are strings in this module
    checked = checked_fields(
        type(current), dict(items) if isinstance(items, Mapping) else items, f"{origin} [{name}]", ConfigError
    )
    updates = {
        key: _apply_section(f"{name}.{key}", getattr(current, key), raw, origin)
        if is_dataclass(getattr(current, key))
        else _convert(name, key, raw, known[key])
        for key, raw in checked.items()
    }
    return replace(current, **updates)


def _from_environment(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """``MAMMO_EDGE_<SECTION>_<KEY>``; a nested section's key is ``MAMMO_EDGE_DICOM_FORWARD_HOST``."""
    values: dict[str, dict[str, Any]] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section = next((s for s in _SECTIONS if rest.startswith(s + "_")), None)
        if section is None:
            raise ConfigError(f"environment: unknown variable {name} (expected {ENV_PREFIX}<SECTION>_<KEY>)")
        key = rest[len(section) + 1 :]
        table = values.setdefault(section, {})
        nested = next(
            (
                item.name
                for item in fields(_SECTIONS[section])
                if is_dataclass(item.default) and key.startswith(item.name + "_")
            ),
            None,
        )
        if nested is None:
            table[key] = raw
        else:
            table.setdefault(nested, {})[key[len(nested) + 1 :]] = raw
    return values


def _validate(config: Config) -> Config:
    if config.model.threads < 1:
        raise ConfigError(f"[model] threads must be >= 1, got {config.model.threads}")
    if config.model.variant not in ("int8", "float32", "float16", "dynamic"):
        raise ConfigError(f"[model] variant must be int8, float32, float16 or dynamic, got {config.model.variant!r}")
    if config.ingest.settle_seconds < 0 or config.ingest.rescan_seconds <= 0:
        raise ConfigError("[ingest] settle_seconds must be >= 0 and rescan_seconds > 0")
    if config.ingest.queue_limit < 1:
        raise ConfigError(f"[ingest] queue_limit must be >= 1, got {config.ingest.queue_limit}")
    if config.ingest.max_pixels < 1:
        raise ConfigError(f"[ingest] max_pixels must be >= 1, got {config.ingest.max_pixels}")
    if config.ingest.sidecar_wait < 0:
        raise ConfigError(f"[ingest] sidecar_wait must be >= 0, got {config.ingest.sidecar_wait}")
    scope = config.scope
    if scope.min_side_px < 0 or scope.max_side_px < 0 or scope.max_extent_mm < 0:
        raise ConfigError("[scope] limits must be >= 0 (0: derived from the model bundle)")
    if scope.min_side_px and scope.max_side_px and scope.min_side_px > scope.max_side_px:
        raise ConfigError(f"[scope] min_side_px {scope.min_side_px} exceeds max_side_px {scope.max_side_px}")
    trusted_keys(config.model.trusted_keys)
    regions = config.regions
    if regions.propose not in PROPOSE_MODES:
        raise ConfigError(f"[regions] propose must be off, suggest or answer, got {regions.propose!r}")
    if not 1 <= regions.max_candidates <= MAX_REGIONS:
        raise ConfigError(f"[regions] max_candidates must be 1-{MAX_REGIONS}, got {regions.max_candidates}")
    if not 0 <= regions.min_score <= 1:
        raise ConfigError(f"[regions] min_score must be 0-1, got {regions.min_score}")
    if config.log.audit_max_mb <= 0:
        raise ConfigError(f"[log] audit_max_mb must be > 0, got {config.log.audit_max_mb}")
    if config.journal.retention_days <= 0:
        raise ConfigError(f"[journal] retention_days must be > 0, got {config.journal.retention_days}")
    _validate_dicom(config.dicom)
    _validate_web(config.web)
    textfile = config.metrics.textfile
    if textfile and not textfile.endswith(".prom"):
        raise ConfigError(f"[metrics] textfile must end in .prom (what node-exporter reads): {textfile!r}")
    folders = {
        name: getattr(config.paths, name).resolve() for name in ("inbox", "results", "archive", "quarantine", "outbox")
    }
    for name, path in folders.items():
        for other, other_path in folders.items():
            if name < other and (
                path == other_path or other_path.is_relative_to(path) or path.is_relative_to(other_path)
            ):
                raise ConfigError(f"[paths] {name} and {other} must be separate folders ({path}, {other_path})")
    return config


def _validate_dicom(dicom: DicomSection) -> None:
    for where, port in (("[dicom] port", dicom.port), ("[dicom.forward] port", dicom.forward.port)):
        if not 1 <= port <= 65535:
            raise ConfigError(f"{where} must be 1-65535, got {port}")
    for where, title in [("[dicom] ae_title", dicom.ae_title), ("[dicom.forward] ae_title", dicom.forward.ae_title)] + [
        ("[dicom] allowed_ae_titles", title) for title in dicom.allowed_ae_titles
    ]:
        if not 1 <= len(title) <= 16 or not title.isascii() or "\\" in title or not title.isprintable():
            raise ConfigError(f"{where}: {title!r} is not an AE title (1-16 printable ASCII characters, no backslash)")
    for network in dicom.allowed_networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ConfigError(f"[dicom] allowed_networks: {network!r} is not an address or network") from None
    if dicom.enabled and not dicom.allowed_ae_titles:
        raise ConfigError("[dicom] enabled = true but allowed_ae_titles is empty: nobody could send; name the senders")
    if dicom.max_associations < 1:
        raise ConfigError(f"[dicom] max_associations must be >= 1, got {dicom.max_associations}")
    forward = dicom.forward
    if forward.timeout_seconds <= 0 or forward.retry_seconds <= 0 or forward.retry_max_seconds < forward.retry_seconds:
        raise ConfigError(
            "[dicom.forward] timeout_seconds and retry_seconds must be > 0, retry_max_seconds >= retry_seconds"
        )
    if forward.protocol not in FORWARD_PROTOCOLS:
        raise ConfigError(f"[dicom.forward] protocol must be dimse or dicomweb, got {forward.protocol!r}")
    if forward.protocol == "dicomweb":
        _validate_dicomweb(forward)
    elif forward.url or forward.auth_file or forward.ca_file:
        raise ConfigError('[dicom.forward] url, auth_file and ca_file are for protocol = "dicomweb"')


def _validate_dicomweb(forward: DicomForwardSection) -> None:
    """A STOW-RS destination: an http(s) URL without credentials in it; credentials travel encrypted (https) unless
    the server is on this machine; a CA file only where there is TLS to verify."""
    if not forward.url:
        return
    url = urllib.parse.urlsplit(forward.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ConfigError(f"[dicom.forward] url must be an http:// or https:// URL, got {forward.url!r}")
    if url.username or url.password:
        raise ConfigError("[dicom.forward] url must not hold credentials: put them in auth_file")
    if url.query or url.fragment:
        raise ConfigError(f"[dicom.forward] url is the service's base URL, without ? or #: {forward.url!r}")
    if forward.auth_file and url.scheme == "http" and not is_loopback(url.hostname):
        raise ConfigError("[dicom.forward] auth_file over http:// would send the credentials in clear: use https://")
    if (forward.ca_file or not forward.tls_verify) and url.scheme != "https":
        raise ConfigError("[dicom.forward] ca_file and tls_verify are for an https:// url")


def is_loopback(address: str) -> bool:
    """Whether `address` (an IP address or ``localhost``) reaches this machine only."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _validate_web(web: WebSection) -> None:
    if not 1 <= web.port <= 65535:
        raise ConfigError(f"[web] port must be 1-65535, got {web.port}")
    try:
        ipaddress.ip_address(web.bind_address)
    except ValueError:
        if web.bind_address != "localhost":
            raise ConfigError(f"[web] bind_address: {web.bind_address!r} is not an IP address") from None
    if bool(web.tls_cert) != bool(web.tls_key):
        raise ConfigError("[web] tls_cert and tls_key go together: set both, or neither")
    if not is_loopback(web.bind_address) and not web.tls_cert:
        raise ConfigError(
            f"[web] bind_address {web.bind_address} is reachable from the network: it is served over HTTPS only, so "
            "set tls_cert and tls_key (install.sh makes a self-signed device certificate)"
        )
    if web.session_idle_minutes <= 0 or web.session_max_hours <= 0:
        raise ConfigError("[web] session_idle_minutes and session_max_hours must be > 0")
    if web.login_attempts < 1 or web.login_window_minutes <= 0:
        raise ConfigError("[web] login_attempts must be >= 1 and login_window_minutes > 0")


def read_toml(path: Path | str) -> dict[str, Any]:
    """A config file's tables as written (before any check: the installer reads [web] from it this way)."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def resolve_config(
    file: Path | None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Defaults, then the TOML `file` (if it exists or was named), then the environment, then `overrides` (CLI)."""
    environ = os.environ if environ is None else environ
    named = file is not None or ENV_PREFIX + "CONFIG" in environ
    path = Path(file) if file is not None else Path(environ.get(ENV_PREFIX + "CONFIG", str(DEFAULT_CONFIG)))
    config = Config()
    if path.is_file():
        config = _apply(config, read_toml(path), str(path))
    elif named:
        raise ConfigError(f"config file {path} not found")
    config = _apply(config, _from_environment(environ), "environment")
    config = _apply(config, {k: v for k, v in (overrides or {}).items() if v}, "command line")
    return _validate(config)
