"""The bot's one HTTP server: the providers' webhooks and uploads (:mod:`bot.web.routes`), ``/healthz`` and
``/metrics``."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from bot.errors import ConfigError
from bot.web.limits import BODY_TIMEOUT_S, DEFAULT_BODY_TIMEOUT_S
from bot.web.ops import OpsRoutes

log = logging.getLogger(__name__)
# aiohttp's own log of each connection (requests it could not parse, handlers that crashed).
http_log = logging.getLogger("bot.web.http")


class _OneLineBadRequests(logging.Filter):
    """A request aiohttp can't parse (raw bytes in the path, an oversized header, garbage on the port) is the
    client's fault: one warning line, not an error with a traceback that quotes the bytes it sent."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else None
            record.msg, record.args = (
                "refused a malformed request from %s: HTTP %s (%s)",
                (remote, exc.code, type(exc).__name__),
            )
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


http_log.addFilter(_OneLineBadRequests())


async def _healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app(
    *,
    max_body_bytes: int,
    ops: OpsRoutes | None = None,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
) -> web.Application:
    """The app with ``/healthz`` (and ``/metrics`` with ``ops``); the providers' routes are added by
    :func:`bot.web.routes.mount`."""
    app = web.Application(client_max_size=max_body_bytes)
    app[BODY_TIMEOUT_S] = body_timeout_s
    if ops is not None:
        ops.add_to(app)
    else:
        app.router.add_get("/healthz", _healthz)
    return app


class WebServer:
    """Starts and stops the aiohttp app on ``host:port`` (port 0 picks a free one).

    A connection must send a whole request's headers within ``header_timeout_s`` of opening (or of the end
    of its previous response, which is also how long an idle keep-alive connection stays open): aiohttp's
    keep-alive timer closes it otherwise. Header lines and fields are capped in size by aiohttp (8 KiB each,
    128 headers). Bodies have their own deadline (:mod:`bot.web.limits`); after one, the unread rest is
    drained for at most that long again before the connection closes.
    """

    def __init__(
        self,
        app: web.Application,
        *,
        host: str,
        port: int,
        header_timeout_s: float = 60.0,
    ) -> None:
        body_timeout_s = app.get(BODY_TIMEOUT_S, DEFAULT_BODY_TIMEOUT_S)
        self._runner = web.AppRunner(
            app,
            access_log=None,
            logger=http_log,
            keepalive_timeout=header_timeout_s,
            lingering_time=min(10.0, body_timeout_s),
        )
        self._host = host
        self._port = port
        self.port: int | None = None

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise ConfigError(
                f"can't listen on {self._host}:{self._port} ({exc.strerror or exc}): set [webhooks] host/port "
                "(ENCORE_WEBHOOKS__HOST, ENCORE_WEBHOOKS__PORT) to a free address"
            ) from None
        addresses = self._runner.addresses
        self.port = int(addresses[0][1]) if addresses else self._port
        log.info("web server listening on %s:%s", self._host, self.port)

    async def stop(self) -> None:
        await self._runner.cleanup()
