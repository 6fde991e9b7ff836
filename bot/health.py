"""`/healthz` and `/metrics` for operators, served on TUTOR_HTTP_PORT inside `tutor run`."""

from __future__ import annotations

import asyncio
import errno
import logging
from typing import Protocol

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from looper.metrics import refresh_backlog
from looper.settings import MissingSetting
from looper.store import Store

log = logging.getLogger(__name__)
STORE_TIMEOUT = 2.0  # a health check that hangs on a stuck database is worse than a 503


def unusable_port(port: int, error: OSError) -> str:
    if error.errno == errno.EADDRINUSE:
        return f"TUTOR_HTTP_PORT {port} is in use by another process: choose a free port"
    return f"TUTOR_HTTP_PORT {port} cannot be used: {error}"


class Connection(Protocol):
    """The Socket Mode client, as far as health is concerned."""

    async def is_connected(self) -> bool: ...


class HealthServer:
    """Says whether this process can work (`/healthz`) and what it did (`/metrics`).

    It listens on every interface: a scraper usually reaches a container from outside it.
    Until `socket` is set, /healthz answers 503.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.socket: Connection | None = None
        self._runner: web.AppRunner | None = None
        self._exposition = make_aiohttp_handler()

    async def start(self, port: int) -> None:
        """Listen on `port` (0: stay off). A port that cannot be had stops tutor in one line."""
        if not port:
            return
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, port=port).start()
        except OSError as exc:
            await self.stop()
            raise MissingSetting(unusable_port(port, exc)) from exc
        log.warning("serving /healthz and /metrics on port %d, all interfaces", port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def healthz(self, request: web.Request) -> web.Response:
        """200 when Socket Mode is connected and the store answers; 503 with the reasons."""
        reasons = [r for r in (await self._socket_problem(), await self._store_problem()) if r]
        if reasons:
            return web.json_response({"status": "unavailable", "reasons": reasons}, status=503)
        return web.json_response({"status": "ok", "socket_mode": "connected", "store": "ok"})

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        await refresh_backlog(self.store)
        return await self._exposition(request)

    async def _socket_problem(self) -> str | None:
        if self.socket is None or not await self.socket.is_connected():
            return "Socket Mode is not connected"
        return None

    async def _store_problem(self) -> str | None:
        try:
            await asyncio.wait_for(self.store.schema_version(), STORE_TIMEOUT)
        except TimeoutError:
            return f"the store did not answer within {STORE_TIMEOUT:g} s"
        except Exception as exc:  # whatever broke, the answer is the same: no store
            return f"the store does not answer ({type(exc).__name__}: {exc})"
        return None
