"""A staging root run as a board: its analysis service started, stopped and restarted as systemd would, so one machine
can stand in for a fleet (the rollout's test and `mammo-bench fleet`; Ansible's ``mammo_edge_restart_command``).

    python -m mammo_bench.staging restart ROOT     stop the service if it runs (SIGTERM, as systemd), start it again
    python -m mammo_bench.staging stop ROOT

The service is ``ROOT/opt/mammo-edge/venv/bin/mammo-edge run`` on ``ROOT/etc/mammo-edge/config.toml``, in a session
of its own, in the caller's environment (a board fault rides in on it); its pid is ``ROOT/run/mammo-edge.pid``, its
log ``ROOT/var/log/mammo-edge.log``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edge_app.errors import EXIT_OK, run_main
from edge_app.fsutil import atomic_write

PIDFILE = Path("run/mammo-edge.pid")
LOG = Path("var/log/mammo-edge.log")
STOP_SECONDS = 30.0  # systemd's default TimeoutStopSec is 90 s; the service stops within a second or two


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie nobody reaped has stopped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@dataclass(frozen=True)
class StagingDevice:
    root: Path

    @property
    def program(self) -> Path:
        return self.root / "opt/mammo-edge/venv/bin/mammo-edge"

    @property
    def config(self) -> Path:
        return self.root / "etc/mammo-edge/config.toml"

    def pid(self) -> int | None:
        try:
            pid = int((self.root / PIDFILE).read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) else None

    def stop(self) -> None:
        """SIGTERM (the service finishes the scan in hand and stops), SIGKILL after `STOP_SECONDS`."""
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        (self.root / PIDFILE).unlink(missing_ok=True)

    def start(self) -> int:
        (self.root / LOG).parent.mkdir(parents=True, exist_ok=True)
        (self.root / PIDFILE).parent.mkdir(parents=True, exist_ok=True)
        with (self.root / LOG).open("ab") as log:
            service = subprocess.Popen(
                [str(self.program), "run", "--config", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        atomic_write(self.root / PIDFILE, f"{service.pid}\n".encode())
        return service.pid

    def restart(self) -> int:
        self.stop()
        return self.start()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mammo_bench.staging", description=__doc__)
    parser.add_argument("action", choices=("restart", "stop"))
    parser.add_argument("root", type=Path, help="the staging root the device was installed into (install.sh --root)")
    args = parser.parse_args(argv)
    device = StagingDevice(args.root.resolve())

    def act() -> int:
        if args.action == "restart":
            print(f"started pid {device.restart()}")
        else:
            device.stop()
        return EXIT_OK

    return run_main("mammo_bench.staging", act)


if __name__ == "__main__":
    sys.exit(main())
