"""Log records as JSON lines (the default) or plain text, and the process's logging set-up.

JSON is the default because the places Matte runs in production read it as data:
journald (deploy/matte.service), a container runtime, a log shipper; one object a
line with fixed keys needs no parsing rules. `MATTE_LOG_FORMAT=text` is for a
person watching a terminal. Either way every record goes through the one
formatter: Matte's own, uvicorn's errors and any library's.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator, Mapping

from . import request_log
from .settings import LogFormat, Settings

# The access line's own message already says these (`POST /route 200 12.3 ms`).
_IN_MESSAGE = ("method", "route", "status", "duration_ms")


def _access(record: logging.LogRecord) -> Mapping[str, object] | None:
    fields = getattr(record, "access", None)
    return fields if isinstance(fields, Mapping) else None


def _request_id(record: logging.LogRecord) -> str | None:
    """The id of the request a record was logged in, if any.

    Read when the record is formatted: handlers here write synchronously, in the
    thread (and so the context) that logged it."""
    trace = request_log.current()
    return trace.request_id if trace is not None else None


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, message, the request's id when
    logged inside a request, the access line's fields, and the exception's
    traceback (json escapes its newlines, so it stays one line)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        access = _access(record)
        if access is not None:
            entry.update(access)
        else:
            request_id = _request_id(record)
            if request_id is not None:
                entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # ASCII only: a control character or a stray byte in a message cannot
        # break the line or the terminal that shows it.
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """`<time> <LEVEL> <logger>: <message> key=value ...`, the access line's fields
    flattened (`stages.decode=12.1`), before any traceback."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        access = _access(record)
        if access is not None:
            pairs = [
                f"{name}={value}"
                for name, value in _flatten(access)
                if value is not None and name not in _IN_MESSAGE
            ]
            return " ".join([text, *pairs])
        request_id = _request_id(record)
        return text if request_id is None else f"{text} request_id={request_id}"


def _flatten(fields: Mapping[str, object], prefix: str = "") -> Iterator[tuple[str, object]]:
    for name, value in fields.items():
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", value


def formatter(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure_logging(settings: Settings) -> None:
    """Every record to stderr through Matte's formatter, at MATTE_LOG_LEVEL.

    uvicorn is told to leave logging alone and to write no access line of its own
    (server/__main__.py: `uvicorn_config`), so its errors reach this handler and
    each request is logged once, by server/request_log.py."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(settings.log_format))
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler], force=True)
