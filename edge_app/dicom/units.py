"""The systemd drop-in that lets each network unit reach only whom it must: the listener the configured source
networks, the forwarder the destination's addresses (resolved when the drop-in is written: systemd's IP filter takes
addresses, not names), the web app its one port (and, bound to loopback, localhost only). Written by
deploy/install.sh with ``mammo-edge network-dropin listen|forward|web``."""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse

from edge_app.config import Config, DicomSection, WebSection, is_loopback
from edge_app.errors import ConfigError

UNITS = {"listen": "mammo-edge-dicom.service", "forward": "mammo-edge-forward.service", "web": "mammo-edge-web.service"}


def allowed_addresses(dicom: DicomSection, unit: str) -> tuple[str, ...]:
    """What `unit` (``listen`` or ``forward``) may exchange packets with, besides localhost."""
    if unit == "listen":
        if not dicom.enabled:
            raise ConfigError("[dicom] enabled is false: the listener unit stays off")
        return dicom.allowed_networks or ("any",)
    forward = dicom.forward
    forward.require_destination("the forwarder unit stays off")
    host, port = forward.host, forward.port
    if forward.protocol == "dicomweb":
        url = urllib.parse.urlsplit(forward.url)
        host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    try:
        return (str(ipaddress.ip_address(host)),)
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise ConfigError(f"[dicom.forward] host {host!r} does not resolve here: {exc}") from exc
    return tuple(sorted({str(entry[4][0]) for entry in found}))


def web_dropin(web: WebSection) -> str:
    """The web app may bind its port only; bound to loopback, only localhost may reach it."""
    if not web.enabled:
        raise ConfigError("[web] enabled is false: the web unit stays off")
    peers = "" if is_loopback(web.bind_address) else " any"
    return f"SocketBindAllow=tcp:{web.port}\nIPAddressAllow=localhost{peers}\n"


def network_dropin(config: Config, unit: str) -> str:
    """The ``[Service]`` drop-in for `unit`: the unit file denies every address (and, for the web app, every port);
    this allows the needed ones."""
    if unit == "web":
        allowed = web_dropin(config.web)
    else:
        allowed = f"IPAddressAllow=localhost {' '.join(allowed_addresses(config.dicom, unit))}\n"
    origin = f"# {UNITS[unit]}: written by `mammo-edge network-dropin {unit}` from /etc/mammo-edge/config.toml"
    return f"{origin}\n[Service]\n{allowed}"
