"""The HTTP surface: a thin Flask blueprint over :class:`ProviderService`.

``POST /validate`` always answers HTTP 200 with a ProviderResponse, also for a
malformed, oversized or mistyped request (then with a ``systemError``): that
is the only kind of answer Gatekeeper can act on. ``GET /healthz`` is
liveness, ``GET /readyz`` readiness (503 until the server confirmed its TLS
material), ``GET /metrics`` Prometheus.
"""

from __future__ import annotations

import logging
import time
from typing import IO

import orjson
from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

from provider import wire
from provider.logs import FIELDS
from provider.metrics import Metrics
from provider.service import ProviderRuntime

logger = logging.getLogger(__name__)

EXTENSION = "manifest_provider"
_READ_CHUNK = 64 * 1024

blueprint = Blueprint("provider", __name__)


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


@blueprint.post("/validate")
def validate() -> Response:
    runtime = runtime_of(current_app)
    service = runtime.service
    metrics = service.metrics
    metrics.requests.inc()
    metrics.in_flight.inc()
    started = time.perf_counter()
    arrived = service.now()
    try:
        if request.mimetype != wire.JSON_MEDIA_TYPE:
            got = (request.content_type or "none")[:80]
            return _reject(metrics, f"Content-Type must be {wire.JSON_MEDIA_TYPE}, got {got!r}")
        limit = service.settings.server.max_body_bytes
        length = request.content_length
        if length is not None and length > limit:
            return _reject(
                metrics,
                f"request body is {length} bytes, more than the {limit} allowed (server.maxBodyBytes)",
                close=True,
            )
        body = _read_bounded(request.stream, limit)
        if body is None:
            return _reject(
                metrics,
                f"request body is more than the {limit} allowed bytes (server.maxBodyBytes)",
                close=True,
            )
        return _json(service.handle(body, started=arrived))
    finally:
        metrics.in_flight.dec()
        metrics.request_seconds.observe(time.perf_counter() - started)


def _reject(metrics: Metrics, message: str, *, close: bool = False) -> Response:
    metrics.system_error_by_kind["request"].inc()
    logger.warning("request rejected", extra={FIELDS: {"event": "request", "error": message}})
    return _json(wire.system_error(message), close=close)


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
