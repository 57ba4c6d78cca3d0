"""JSON-lines logging.

One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
``message``, then the structured fields a call passed as
``extra={"fields": {...}}``. Fields never hold key bodies, key material or
whole manifests; answered keys are identified by their SHA-256.

:func:`info_line` writes such a line without a ``LogRecord`` when the only
handler in the way is the JSON handler installed here: the per-key lines of
the warm path cost a few microseconds instead of logging's full machinery.
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

    def timestamp(self, created: float) -> str:
        """``created`` (seconds since the epoch) as the ``time`` field."""
        seconds = int(created)
        cached = self._second
        if cached[0] != seconds:
            cached = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
            self._second = cached
        millis = int((created - seconds) * 1000)
        return f"{cached[1]}.{millis:03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.timestamp(record.created),
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


def _sole_json_handler(logger: logging.Logger) -> logging.StreamHandler[Any] | None:
    """The one handler a record of ``logger`` would reach, if it is a plain JSON stream handler.

    Anything else in the way (filters, a second handler such as a test's
    capture, another formatter) means the record must go through logging.
    """
    if logger.disabled or logger.filters:
        return None
    found: logging.Handler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if found is not None:
                return None
            found = handler
        if not current.propagate:
            break
        current = current.parent
    if (
        type(found) is not logging.StreamHandler
        or found.filters
        or found.level > logging.INFO
        or type(found.formatter) is not JsonFormatter
    ):
        return None
    return found


def info_line(logger: logging.Logger, message: str, fields: dict[str, Any]) -> None:
    """Log ``message`` with ``fields`` at INFO: the same JSON line as ``logger.info(..., extra=...)``.

    The caller checks ``logger.isEnabledFor(logging.INFO)`` first. With the
    JSON stream handler as the only destination, the line is built with one
    ``orjson.dumps`` and written with one ``write`` under the handler's lock
    (so lines of concurrent threads never interleave); otherwise a record is
    made and handled as usual.
    """
    handler = _sole_json_handler(logger)
    if handler is None:
        record = logger.makeRecord(
            logger.name, logging.INFO, __file__, 0, message, (), None, extra={FIELDS: fields}
        )
        logger.handle(record)
        return
    formatter: JsonFormatter = handler.formatter  # type: ignore[assignment]
    out: dict[str, Any] = {
        "time": formatter.timestamp(time.time()),
        "level": "INFO",
        "logger": logger.name,
        "message": message,
    }
    for key, value in fields.items():
        out.setdefault(key, value)
    line = orjson.dumps(out, default=str, option=orjson.OPT_APPEND_NEWLINE).decode("utf-8")
    handler.acquire()
    try:
        handler.stream.write(line)
        handler.flush()
    except Exception:
        # What StreamHandler.emit does with a broken stream: report, never raise into a request.
        handler.handleError(logger.makeRecord(logger.name, logging.INFO, __file__, 0, message, (), None))
    finally:
        handler.release()
