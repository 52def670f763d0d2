"""The DICOM node's configuration, its systemd units and the network drop-ins written from it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edge_app.cli import main
from edge_app.config import Config, DicomForwardSection, DicomSection, WebSection, resolve_config
from edge_app.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
STOW = "[dicom.forward]\nprotocol = 'dicomweb'\n"


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_dicom_settings_from_the_file_the_environment_and_back() -> None:
    config = resolve_config(
        None,
        environ={
            "MAMMO_EDGE_DICOM_ENABLED": "yes",
            "MAMMO_EDGE_DICOM_ALLOWED_AE_TITLES": "MG_UNIT_1, PACS",
            "MAMMO_EDGE_DICOM_FORWARD_HOST": "10.1.2.3",
            "MAMMO_EDGE_DICOM_FORWARD_PORT": "4242",
        },
    )
    assert config.dicom.enabled and config.dicom.allowed_ae_titles == ("MG_UNIT_1", "PACS")
    assert config.dicom.forward == DicomForwardSection(host="10.1.2.3", port=4242)
    assert config.dicom.port == 11112 and config.dicom.forward.ae_title == "PACS"


def test_a_nested_section_round_trips_through_toml(tmp_path: Path) -> None:
    text = (
        '[dicom]\nenabled = true\nallowed_ae_titles = ["MG_1", "MG_2"]\nallowed_networks = ["10.0.0.0/8"]\n'
        '[dicom.forward]\nhost = "pacs"\nport = 11113\n'
    )
    config = resolve_config(_file(tmp_path, text), environ={})
    assert config.dicom.allowed_networks == ("10.0.0.0/8",) and config.dicom.forward.port == 11113
    assert resolve_config(_file(tmp_path, config.to_toml()), environ={}) == config
    assert '[dicom.forward]\nprotocol = "dimse"\nae_title = "PACS"\nhost = "pacs"' in config.to_toml()


@pytest.mark.parametrize(
    ("text", "environ", "message"),
    [
        ("[dicom.forward]\nhots = 'x'\n", {}, "[dicom.forward]: unknown key(s) 'hots' (known: protocol, ae_title,"),
        ("", {"MAMMO_EDGE_DICOM_FORWARD_HOTS": "x"}, "environment [dicom.forward]: unknown key(s) 'hots'"),
        ("[dicom]\nforward = 3\n", {}, "[dicom.forward] must be a table of keys and values, got int"),
        ("[dicom]\nport = 0\n", {}, "[dicom] port must be 1-65535, got 0"),
        ("[dicom.forward]\nport = 70000\n", {}, "[dicom.forward] port must be 1-65535, got 70000"),
        ("[dicom]\nae_title = 'A_TITLE_LONGER_THAN_16'\n", {}, "[dicom] ae_title: 'A_TITLE_LONGER_THAN_16' is not"),
        ('[dicom]\nallowed_ae_titles = ["OK", "BAD\\\\"]\n', {}, "[dicom] allowed_ae_titles: 'BAD\\\\' is not an AE"),
        ("[dicom]\nallowed_ae_titles = 'MG'\n", {}, None),
        ("[dicom]\nallowed_ae_titles = [1]\n", {}, "[dicom] allowed_ae_titles must be tuple[str, ...], got [1]"),
        ("[dicom]\nallowed_networks = ['10.0.0.0/33']\n", {}, "[dicom] allowed_networks: '10.0.0.0/33' is not"),
        ("[dicom]\nmax_associations = 0\n", {}, "[dicom] max_associations must be >= 1, got 0"),
        ("[dicom]\nenabled = true\n", {}, "[dicom] enabled = true but allowed_ae_titles is empty: nobody could"),
        ("[dicom.forward]\nretry_seconds = 20\nretry_max_seconds = 10\n", {}, "retry_max_seconds >= retry_seconds"),
        ("[paths]\noutbox = '/srv/mammo-edge/inbox/out'\n", {}, "inbox and outbox must be separate folders"),
        ("[dicom.forward]\nprotocol = 'http'\n", {}, "[dicom.forward] protocol must be dimse or dicomweb, got 'http'"),
        (STOW + "url = 'ftp://pacs/dicom-web'\n", {}, "url must be an http:// or https:// URL, got 'ftp://pacs/"),
        (STOW + "url = 'https:///dicom-web'\n", {}, "url must be an http:// or https:// URL, got 'https:///"),
        (STOW + "url = 'https://me:secret@pacs/dicom-web'\n", {}, "url must not hold credentials: put them in auth_"),
        (STOW + "url = 'https://pacs/dicom-web?x=1'\n", {}, "url is the service's base URL, without ? or #"),
        (STOW + "url = 'http://pacs/dicom-web'\nauth_file = 'a'\n", {}, "would send the credentials in clear"),
        (STOW + "url = 'http://pacs/dicom-web'\nca_file = 'ca.pem'\n", {}, "ca_file and tls_verify are for an https"),
        (STOW + "url = 'http://pacs/dicom-web'\ntls_verify = false\n", {}, "ca_file and tls_verify are for an https"),
        ("[dicom.forward]\nurl = 'https://pacs/dicom-web'\n", {}, 'ca_file are for protocol = "dicomweb"'),
    ],
)
def test_errors_name_the_dicom_key(tmp_path: Path, text: str, environ: dict[str, str], message: str | None) -> None:
    if message is None:  # one string is a list of one title (as from the environment)
        assert resolve_config(_file(tmp_path, text), environ=environ).dicom.allowed_ae_titles == ("MG",)
        return
    with pytest.raises(ConfigError) as caught:
        resolve_config(_file(tmp_path, text), environ=environ)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("dicom", "unit", "allowed"),
    [
        (
            DicomSection(enabled=True, allowed_ae_titles=("MG",), allowed_networks=("10.1.2.0/24", "192.168.7.9")),
            "listen",
            "10.1.2.0/24 192.168.7.9",
        ),
        (DicomSection(enabled=True, allowed_ae_titles=("MG",)), "listen", "any"),
        (DicomSection(forward=DicomForwardSection(host="10.9.8.7")), "forward", "10.9.8.7"),
        (DicomSection(forward=DicomForwardSection(host="localhost")), "forward", None),
        (
            DicomSection(forward=DicomForwardSection(protocol="dicomweb", url="https://10.9.8.6:8443/dicom-web")),
            "forward",
            "10.9.8.6",
        ),
    ],
)
def test_network_dropins_allow_only_the_configured_peers(
    tmp_path: Path, dicom: DicomSection, unit: str, allowed: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _file(tmp_path, Config(dicom=dicom).to_toml())
    assert main(["network-dropin", unit, "--config", str(config)]) == 0
    printed = capsys.readouterr().out
    line = next(line for line in printed.splitlines() if line.startswith("IPAddressAllow="))
    if allowed is None:  # a name: its addresses, resolved now
        assert re.fullmatch(r"IPAddressAllow=localhost( (127\.0\.0\.1|::1))+", line), line
    else:
        assert line == f"IPAddressAllow=localhost {allowed}"
    assert printed.startswith("# mammo-edge-") and "\n[Service]\n" in printed


@pytest.mark.parametrize(
    ("web", "allowed"),
    [
        (WebSection(enabled=True, port=8443), "IPAddressAllow=localhost"),
        (
            WebSection(enabled=True, bind_address="10.0.0.5", port=443, tls_cert="c", tls_key="k"),
            "IPAddressAllow=localhost any",
        ),
    ],
)
def test_the_web_units_dropin_allows_its_one_port(
    tmp_path: Path, web: WebSection, allowed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The unit denies every port and address; the drop-in allows its port, and peers only off loopback."""
    config = _file(tmp_path, Config(web=web).to_toml())
    assert main(["network-dropin", "web", "--config", str(config)]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[1:] == ["[Service]", f"SocketBindAllow=tcp:{web.port}", allowed]
    unit = _unit("mammo-edge-web.service")
    assert unit["SocketBindDeny"] == ["any"] and unit["IPAddressDeny"] == ["any"]


@pytest.mark.parametrize(
    ("unit", "message"),
    [("listen", "enabled is false"), ("forward", "host is empty"), ("web", "[web] enabled is false")],
)
def test_no_dropin_for_a_unit_the_config_leaves_off(
    tmp_path: Path, unit: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["network-dropin", unit, "--config", str(_file(tmp_path, ""))]) == 2
    assert message in capsys.readouterr().err


def _unit(name: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in (REPO / "systemd" / name).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            values.setdefault(key, []).append(value)
    return values


def test_only_the_dicom_units_reach_the_network() -> None:
    daemon = _unit("mammo-edge.service")
    assert daemon["RestrictAddressFamilies"] == ["AF_UNIX"] and daemon["PrivateNetwork"] == ["yes"]
    assert daemon["IPAddressDeny"] == ["any"]
    for name, command in (
        ("mammo-edge-dicom.service", "dicom-listen"),
        ("mammo-edge-forward.service", "dicom-forward"),
    ):
        unit = _unit(name)
        assert unit["ExecStart"][0].endswith(f"mammo-edge {command} --config /etc/mammo-edge/config.toml")
        assert unit["IPAddressDeny"] == ["any"] and unit["IPAddressAllow"] == ["localhost"]  # the drop-in adds peers
        assert unit["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"] and unit["CapabilityBoundingSet"] == [""]
        assert unit["Type"] == ["notify"] and unit["Restart"] == ["on-failure"] and unit["User"] == ["mammo-edge"]
    assert _unit("mammo-edge-forward.service")["ReadWritePaths"] == [str(Config().paths.outbox)]
    listener_paths = _unit("mammo-edge-dicom.service")["ReadWritePaths"][0].split()
    assert listener_paths == [str(Config().paths.inbox), str(Config().paths.state)]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
@pytest.mark.parametrize("name", ["mammo-edge-dicom.service", "mammo-edge-forward.service"])
def test_the_dicom_units_are_hardened(name: str) -> None:
    output = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(REPO / "systemd" / name)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    exposure = float(re.search(r"Overall exposure level for \S+: (\d+\.\d+)", output).group(1))  # type: ignore[union-attr]
    assert exposure <= 2.0, output


def test_the_forwarders_peer_is_its_address_as_given_or_the_tcp_addresses_its_name_resolves_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An address is taken as written (nothing looked up); a name is resolved for TCP on the forwarder's port, each
    address once, sorted; a name that does not resolve, and a unit the config leaves off, are refused by name."""
    import socket

    from edge_app.dicom.units import allowed_addresses, web_dropin

    asked: list[tuple[object, ...]] = []

    def resolve(host: str, port: int, proto: int = 0) -> list[tuple[object, ...]]:
        asked.append((host, port, proto))
        if host == "nowhere.invalid":
            raise socket.gaierror(-2, "Name or service not known")
        return [(2, 1, 6, "", ("10.0.0.9", port)), (2, 1, 6, "", ("10.0.0.2", port)), (2, 1, 6, "", ("10.0.0.9", port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    forward = DicomForwardSection(host="10.9.8.7", port=11112)
    assert allowed_addresses(DicomSection(forward=forward), "forward") == ("10.9.8.7",) and asked == []
    named = DicomSection(forward=DicomForwardSection(host="pacs.clinic", port=4242))
    assert allowed_addresses(named, "forward") == ("10.0.0.2", "10.0.0.9")
    assert asked == [("pacs.clinic", 4242, socket.IPPROTO_TCP)]
    for url, port in (("https://pacs.clinic/dicom-web", 443), ("http://pacs.clinic/dicom-web", 80)):
        stow = DicomSection(forward=DicomForwardSection(protocol="dicomweb", url=url))
        assert allowed_addresses(stow, "forward") == ("10.0.0.2", "10.0.0.9")  # the URL's host, its scheme's port
        assert asked[-1] == ("pacs.clinic", port, socket.IPPROTO_TCP)
    with pytest.raises(
        ConfigError, match=r"^\[dicom.forward\] host 'nowhere.invalid' does not resolve here: .*Name or service not"
    ):
        allowed_addresses(DicomSection(forward=DicomForwardSection(host="nowhere.invalid")), "forward")
    refusals = [
        (lambda: allowed_addresses(DicomSection(), "listen"), "[dicom] enabled is false: the listener unit stays off"),
        (
            lambda: allowed_addresses(DicomSection(), "forward"),
            "[dicom.forward] host is empty: the forwarder unit stays off",
        ),
        (
            lambda: allowed_addresses(DicomSection(forward=DicomForwardSection(protocol="dicomweb")), "forward"),
            "[dicom.forward] url is empty: the forwarder unit stays off",
        ),
        (lambda: web_dropin(WebSection()), "[web] enabled is false: the web unit stays off"),
    ]
    for call, message in refusals:
        with pytest.raises(ConfigError) as refused:
            call()
        assert str(refused.value) == message
