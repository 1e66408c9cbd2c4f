"""The server's logs: text lines (the default) or JSON lines (``--log-format json``,
``log_format = "json"``), on stderr.

A JSON line is one object: ``time`` (UTC, ISO 8601), ``level``, ``logger``, then either the
access fields of :class:`~.app.AccessLog` (``method``, ``route`` — the template, never the path as
sent —, ``status``, ``duration_ms``, ``client``, ``client_id`` once authenticated, ``request_id``)
or a ``message``; with ``error`` and ``traceback`` for an exception. ``json.dumps`` escapes every
line feed, so one record is always one line, whatever a message holds. Every logger goes through
it (uvicorn's, and the root logger for any library's); Python warnings too.
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any, Literal

__all__ = ["ACCESS_FIELDS", "JsonFormatter", "LogFormat", "logging_config"]

LogFormat = Literal["text", "json"]
#: The attribute of an access log record that holds its fields (the JSON format writes them).
ACCESS_FIELDS = "request"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        data: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(), "logger": record.name}
        fields = getattr(record, ACCESS_FIELDS, None)
        if isinstance(fields, dict):
            data.update(fields)
        else:
            data["message"] = record.getMessage()
        if record.exc_info and record.exc_info[0] is not None:
            data["error"] = record.exc_info[0].__name__
            data["traceback"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=True, separators=(",", ":"), default=str)


def logging_config(log_format: LogFormat) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` of ``keyturn serve`` (uvicorn applies it)."""
    import uvicorn.config

    if log_format == "text":
        config: dict[str, Any] = uvicorn.config.LOGGING_CONFIG
        return config
    logging.captureWarnings(True)  # a warning is a record too, not a bare line on stderr
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json",
                                "stream": "ext://sys.stderr"}},
        "loggers": {
            # uvicorn's loggers hand their records to the root logger's one handler.
            "uvicorn": {"handlers": [], "level": "INFO", "propagate": True},
            "uvicorn.error": {"handlers": [], "level": "INFO", "propagate": True},
            # Off: it writes the query string (a user code); AccessLog replaces it.
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
        "root": {"handlers": ["stderr"], "level": "INFO"},
    }
