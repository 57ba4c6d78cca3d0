"""The HTTP surface over :class:`ProviderService`: ``/validate`` and a thin Flask blueprint.

``POST /validate`` always answers HTTP 200 with a ProviderResponse, also for a
malformed, oversized or mistyped request (then with a ``systemError``): that
is the only kind of answer Gatekeeper can act on. ``GET /healthz`` is
liveness, ``GET /readyz`` readiness (503 until the server confirmed its TLS
material), ``GET /metrics`` Prometheus.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import IO, Any

import orjson
from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException
from werkzeug.wsgi import get_content_length, get_input_stream

from provider import wire
from provider.logs import FIELDS
from provider.metrics import Metrics
from provider.service import ProviderRuntime

logger = logging.getLogger(__name__)

EXTENSION = "manifest_provider"
_READ_CHUNK = 64 * 1024

blueprint = Blueprint("provider", __name__)

WsgiApp = Callable[..., Any]


def runtime_of(app: Flask) -> ProviderRuntime:
    """The provider state stored on ``app`` by the app factory."""
    runtime: ProviderRuntime = app.extensions[EXTENSION]
    return runtime


def _json(body: bytes, status: int = 200, *, close: bool = False) -> Response:
    response = Response(body, status=status, mimetype=wire.JSON_MEDIA_TYPE)
    if close:
        # The rest of an oversized body stays unread; do not reuse the connection.
        response.headers["Connection"] = "close"
    return response


class ValidateEndpoint:
    """``/validate`` as a plain WSGI app in front of Flask; every other path goes to ``fallback``.

    This endpoint is the one Gatekeeper calls for every object it reviews, and
    Flask's request and response objects, routing and context cost several
    times what answering a cached key does. So it takes the WSGI environment
    as it is: the method, the Content-Type, the Content-Length and the body
    stream (read through werkzeug's ``get_input_stream``, as Flask would).
    """

    def __init__(self, runtime: ProviderRuntime, fallback: WsgiApp) -> None:
        self._runtime = runtime
        self._fallback = fallback

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/validate":
            return self._fallback(environ, start_response)  # type: ignore[no-any-return]
        method = environ.get("REQUEST_METHOD", "")
        if method != "POST":
            message = f"HTTP 405 Method Not Allowed: {method[:20]} /validate"
            return _send(start_response, wire.system_error(message), extra=[("Allow", "POST")])
        try:
            body, close = self._validate(environ)
        except Exception:
            logger.exception("unhandled error", extra={FIELDS: {"event": "request", "path": "/validate"}})
            body, close = wire.system_error("internal error"), False
        return _send(start_response, body, extra=[("Connection", "close")] if close else [])

    def _validate(self, environ: dict[str, Any]) -> tuple[bytes, bool]:
        """The answer and whether the connection must close (a body left unread)."""
        service = self._runtime.service
        metrics = service.metrics
        metrics.requests.inc()
        metrics.in_flight.inc()
        started = time.perf_counter()
        arrived = service.now()
        try:
            content_type = environ.get("CONTENT_TYPE") or ""
            if content_type.split(";", 1)[0].strip().lower() != wire.JSON_MEDIA_TYPE:
                got = (content_type or "none")[:80]
                return _reject(metrics, f"Content-Type must be {wire.JSON_MEDIA_TYPE}, got {got!r}"), False
            limit = service.settings.server.max_body_bytes
            length = get_content_length(environ)
            if length is not None and length > limit:
                message = (
                    f"request body is {length} bytes, more than the {limit} allowed (server.maxBodyBytes)"
                )
                return _reject(metrics, message), True
            try:
                body = _read_bounded(get_input_stream(environ, max_content_length=None), limit)
            except OSError as exc:
                # The client stopped sending (or went away) before the body was complete.
                return _reject(metrics, f"request body could not be read: {exc}"), True
            if body is None:
                message = f"request body is more than the {limit} allowed bytes (server.maxBodyBytes)"
                return _reject(metrics, message), True
            return service.handle(body, started=arrived), False
        finally:
            metrics.in_flight.dec()
            metrics.request_seconds.observe(time.perf_counter() - started)


def _send(start_response: Callable[..., Any], body: bytes, *, extra: list[tuple[str, str]]) -> list[bytes]:
    headers = [("Content-Type", wire.JSON_MEDIA_TYPE), ("Content-Length", str(len(body))), *extra]
    start_response("200 OK", headers)
    return [body]


def _reject(metrics: Metrics, message: str) -> bytes:
    metrics.system_error_by_kind["request"].inc()
    logger.warning("request rejected", extra={FIELDS: {"event": "request", "error": message}})
    return wire.system_error(message)


def _read_bounded(stream: IO[bytes], limit: int) -> bytes | None:
    """Read at most ``limit`` bytes; None when the body is longer (chunked uploads)."""
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = stream.read(min(_READ_CHUNK, limit + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            return None


@blueprint.get("/healthz")
def healthz() -> Response:
    return _json(b'{"status":"ok"}')


@blueprint.get("/readyz")
def readyz() -> Response:
    ready, detail = runtime_of(current_app).readiness()
    return _json(orjson.dumps(detail), 200 if ready else 503)


@blueprint.get("/metrics")
def metrics() -> Response:
    body, content_type = runtime_of(current_app).metrics.exposition()
    return Response(body, status=200, content_type=content_type)


def register_error_handlers(app: Flask) -> None:
    """Every error becomes a ProviderResponse with a systemError, HTTP 200, never HTML."""

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        message = f"HTTP {exc.code} {exc.name}: {request.method} {request.path[:200]}"
        return _json(wire.system_error(message), close=exc.code == 413)

    @app.errorhandler(Exception)
    def _internal_error(exc: Exception) -> Response:
        logger.exception("unhandled error", extra={FIELDS: {"event": "request", "path": request.path[:200]}})
        return _json(wire.system_error("internal error"))
