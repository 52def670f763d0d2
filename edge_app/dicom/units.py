"""The systemd drop-in that lets each network unit reach only whom it must: the listener the configured source
networks, the forwarder the destination's addresses (resolved when the drop-in is written: systemd's IP filter takes
addresses, not names). Written by deploy/install.sh with ``mammo-edge network-dropin listen|forward``."""

from __future__ import annotations

import ipaddress
import socket

from edge_app.config import DicomSection
from edge_app.errors import ConfigError

UNITS = {"listen": "mammo-edge-dicom.service", "forward": "mammo-edge-forward.service"}


def allowed_addresses(dicom: DicomSection, unit: str) -> tuple[str, ...]:
    """What `unit` (``listen`` or ``forward``) may exchange packets with, besides localhost."""
    if unit == "listen":
        if not dicom.enabled:
            raise ConfigError("[dicom] enabled is false: the listener unit stays off")
        return dicom.allowed_networks or ("any",)
    host = dicom.forward.host
    if not host:
        raise ConfigError("[dicom.forward] host is empty: the forwarder unit stays off")
    try:
        return (str(ipaddress.ip_address(host)),)
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, dicom.forward.port, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise ConfigError(f"[dicom.forward] host {host!r} does not resolve here: {exc}") from exc
    return tuple(sorted({str(entry[4][0]) for entry in found}))


def network_dropin(dicom: DicomSection, unit: str) -> str:
    """The ``[Service]`` drop-in for `unit`: the unit file denies every address; this allows the needed ones."""
    addresses = " ".join(allowed_addresses(dicom, unit))
    return (
        f"# {UNITS[unit]}: written by `mammo-edge network-dropin {unit}` from /etc/mammo-edge/config.toml\n"
        f"[Service]\nIPAddressAllow=localhost {addresses}\n"
    )
