"""``mammo-edge serve``: the web app under uvicorn, HTTPS when a certificate is configured (and always off loopback:
the configuration refuses a network address without one), stopped cleanly by SIGTERM like every service here."""

from __future__ import annotations

import asyncio
import logging
import threading

import uvicorn

from edge_app.config import Config
from edge_app.errors import ConfigError
from edge_app.systemd import notify, watchdog_interval
from edge_app.web.accounts import AccountStore
from edge_app.web.app import create_app, web_folder

log = logging.getLogger(__name__)
STOP_POLL_SECONDS = 0.2


def accounts_for(config: Config) -> AccountStore:
    """The accounts, tokens and sessions of this device (``<state>/web/accounts.sqlite3``, mode 0600)."""
    web = config.web
    return AccountStore(web_folder(config) / "accounts.sqlite3", web.session_idle_minutes, web.session_max_hours)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the command's (installed before the configuration is read) decide."""

    def install_signal_handlers(self) -> None:
        return


def serve(config: Config, stopping: threading.Event) -> None:
    web = config.web
    if not web.enabled:
        raise ConfigError("[web] enabled is false: the web app is off (set it to true to serve)")
    accounts = accounts_for(config)
    if not accounts.users() and not accounts.tokens():
        log.warning("no account or token yet: nobody can log in (mammo-edge web-user add NAME)")
    settings = uvicorn.Config(
        create_app(config, accounts),
        host=web.bind_address,
        port=web.port,
        ssl_certfile=web.tls_cert or None,
        ssl_keyfile=web.tls_key or None,
        log_config=None,
        access_log=False,  # paths name scans; who did what is in the web audit log
        server_header=False,
        proxy_headers=False,
        lifespan="off",
    )
    server = _Server(settings)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if server.started:
            scheme = "https" if web.tls_cert else "http"
            log.info("serving the web app on %s://%s:%d", scheme, web.bind_address, web.port)
            notify("READY=1")
        interval = watchdog_interval()
        last_ping = loop.time()
        while not stopping.is_set() and not task.done():
            if interval is not None and loop.time() - last_ping >= interval:
                notify("WATCHDOG=1")
                last_ping = loop.time()
            await asyncio.sleep(STOP_POLL_SECONDS)
        server.should_exit = True
        await task

    try:
        asyncio.run(run())
    finally:
        notify("STOPPING=1")
        accounts.close()
