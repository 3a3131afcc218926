"""How long a client may take to send a request body, and the answer when it takes longer.

Headers are bounded by the server itself (``[webhooks] header_timeout_s``, see :class:`~bot.web.server.WebServer`);
a body is read by its handler, inside :func:`body_deadline`. A client past it gets 408 and its connection
closes: a slow client (or a slowloris) can't hold a connection open for ever.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from bot import metrics

log = logging.getLogger(__name__)

BODY_TIMEOUT_S = web.AppKey("body_timeout_s", float)
DEFAULT_BODY_TIMEOUT_S = 120.0


def body_deadline(request: web.Request) -> asyncio.Timeout:
    """``async with body_deadline(request):`` around reading the body; TimeoutError when it is too slow."""
    return asyncio.timeout(request.app.get(BODY_TIMEOUT_S, DEFAULT_BODY_TIMEOUT_S))


def too_slow(request: web.Request, source: str) -> web.Response:
    """The answer to a body that did not arrive in time (counted as refused, one log line)."""
    metrics.webhook_refused(source, "too_slow")
    log.warning(
        "%s refused: the body did not arrive within %g s (from %s)",
        source,
        request.app.get(BODY_TIMEOUT_S, DEFAULT_BODY_TIMEOUT_S),
        request.remote,
    )
    response = web.json_response({"error": "request body too slow"}, status=408)
    response.force_close()
    return response
