"""systemd integration without dependencies: sd_notify over $NOTIFY_SOCKET, and the watchdog interval.

Every function is a no-op when the process is not run by systemd (no ``NOTIFY_SOCKET``). Notifications are best
effort: a notify socket whose queue is full (the kernel holds 10 datagrams by default) or that has gone away must
never stall or crash the daemon, so sends do not block and failures are dropped (logged at debug level).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

SERVICE_UNIT = "mammo-edge.service"
SYSTEMD_RUNTIME = Path("/run/systemd/system")  # present exactly when systemd is the init system (sd_booted)


def notify(message: str) -> bool:
    """Send one sd_notify message (``READY=1``, ``WATCHDOG=1``, ``STATUS=...``, ``STOPPING=1``)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as connection:
            connection.setblocking(False)
            connection.connect(address)
            connection.send(message.encode())
    except OSError as exc:
        log.debug("sd_notify %r not delivered: %s", message.split("=", maxsplit=1)[0], exc)
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between ``WATCHDOG=1`` pings: half of ``WATCHDOG_USEC``, or None if no watchdog is set for us."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and int(pid) != os.getpid()):
        return None
    return int(usec) / 2e6


def restart_service(unit: str) -> str:
    """Restart `unit` if systemd runs it (``try-restart``: a stopped unit stays stopped); the line says what happened,
    or, without systemd (a container, a staging root), what to do instead."""
    if not SYSTEMD_RUNTIME.is_dir() or shutil.which("systemctl") is None:
        return f"systemd is not running here: restart {unit} to serve the new model"
    done = subprocess.run(["systemctl", "try-restart", unit], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return f"systemctl try-restart {unit} failed ({done.stderr.strip()}): the model is linked; restart it by hand"
    return f"{unit} restarted if it was running"
