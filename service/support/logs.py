"""Logging: one line per event, JSON when not on a terminal, the run id on every line of a run."""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from typing import Any, TextIO

import orjson
from aiohttp.http_exceptions import BadHttpMessage

# Set inside a run's task; asyncio copies context into tasks, so every line the run logs carries it.
run_id_var: contextvars.ContextVar[int | None] = contextvars.ContextVar("run_id", default=None)

_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class RunIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "run_id", None) is None:
            record.run_id = run_id_var.get()
        return True


class MalformedRequestFilter(logging.Filter):
    """aiohttp logs a request it cannot parse with the raw bytes it choked on, which may be an
    Authorization header: keep the event, drop the bytes."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, BadHttpMessage):
            message = record.getMessage()
            record.msg = "%s: %s (request bytes not logged)"
            record.args = (message, type(error).__name__)
            record.exc_info = None
            record.exc_text = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        run_id = getattr(record, "run_id", None)
        return f"{line} [run {run_id}]" if run_id is not None else line


def build_handler(stream: TextIO, use_json: bool) -> logging.Handler:
    """A handler writing one line per event to ``stream``, each carrying the run id when inside a run."""
    handler = logging.StreamHandler(stream)
    handler.addFilter(RunIdFilter())
    handler.addFilter(MalformedRequestFilter())
    if use_json:
        formatter: logging.Formatter = JsonFormatter()
        formatter.converter = time.gmtime
    else:
        formatter = TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(formatter)
    return handler


def configure_logging(log_format: str, level: str) -> None:
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    root = logging.getLogger()
    root.handlers[:] = [build_handler(sys.stderr, use_json)]
    root.setLevel(level.upper())
    # aiohttp's access log is one line per request: useful, but not at the default level of a busy poller.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
