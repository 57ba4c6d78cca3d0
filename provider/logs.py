"""JSON-lines logging.

One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
``message``, then the structured fields a call passed as
``extra={"fields": {...}}``. Fields never hold key bodies, key material or
whole manifests; answered keys are identified by their SHA-256.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO, Any

import orjson

# The attribute a log call sets (``extra={"fields": ...}``) to add structured fields.
FIELDS = "fields"
_HANDLER_NAME = "manifest-provider-json"


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line."""

    def __init__(self) -> None:
        super().__init__()
        # (second, its formatted text): one strftime per second, not per line.
        self._second: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        seconds = int(record.created)
        cached = self._second
        if cached[0] != seconds:
            cached = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
            self._second = cached
        millis = int((record.created - seconds) * 1000)
        out: dict[str, Any] = {
            "time": f"{cached[1]}.{millis:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = getattr(record, FIELDS, None)
        if isinstance(extra, dict):
            for key, value in extra.items():
                out.setdefault(key, value)
        if record.exc_info and record.exc_info[0] is not None:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode("utf-8")


def configure_logging(level: str | int = "INFO", *, stream: IO[str] | None = None) -> logging.Handler:
    """Send every log record as JSON lines to ``stream`` (stderr by default).

    Idempotent: a second call replaces the handler it installed before.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    return handler
