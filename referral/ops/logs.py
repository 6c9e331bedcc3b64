"""Structured logs: every line one JSON object carrying the request id, from every logger in the process.

Fields: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, ``request_id`` (null outside a
request), ``context`` (``http``, or ``cli:<command>`` for commands such as the outbox worker), then
any ``extra`` the caller gave (the access line adds method, path rule, endpoint, status, duration_ms).

Case content must never reach a log. Application code logs types and ids only; this module adds two
nets under it: tracebacks are written without exception messages (a database error may quote a
value), and the loggers that would echo raw paths or SQL parameters are kept quiet.
"""
from __future__ import annotations

import datetime as dt
import logging
import traceback
from typing import Any, TextIO

import click
from flask import Flask, g, has_request_context
from flask.logging import default_handler
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

ACCESS = logging.getLogger("referral.access")
_OWN_FIELDS = ("request_id", "context")
# Loggers that would write what we must not: werkzeug's dev-server access line has the raw path and
# query; SQLAlchemy at INFO writes statement parameters. Lowering the root level must not open them.
_QUIET = {"werkzeug": logging.WARNING, "sqlalchemy": logging.WARNING}


class JsonFormatter(_JsonFormatter):
    """python-json-logger with our field names, UTC times and tracebacks without messages."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("reserved_attrs", [*RESERVED_ATTRS, "taskName", *_OWN_FIELDS])
        kwargs.setdefault("json_ensure_ascii", False)
        super().__init__(*args, **kwargs)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord,
                   message_dict: dict[str, Any]) -> None:
        log_data["time"] = dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds")
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = record.message
        if not hasattr(record, "request_id"):  # made before configure_logging ran, or by a foreign factory
            record.request_id, record.context = _where()
        log_data["request_id"] = record.request_id
        log_data["context"] = record.context  # type: ignore[attr-defined]
        super().add_fields(log_data, record, message_dict)

    def formatException(self, ei: Any) -> str:  # type: ignore[override]
        return redacted_traceback(ei[1])


def redacted_traceback(exc: BaseException | None) -> str:
    """Frames (file, line, code) and exception types of the whole chain, never their messages:
    an exception's text may quote the value that failed, and that value may be case content."""
    chain: list[BaseException] = []
    while exc is not None and all(exc is not seen for seen in chain):
        chain.append(exc)
        exc = exc.__cause__ if exc.__cause__ is not None else (
            None if exc.__suppress_context__ else exc.__context__)
    lines: list[str] = []
    for item in reversed(chain):
        if lines:
            lines.append("During handling of the above exception, another exception occurred:\n")
        lines.append("Traceback (most recent call last):\n")
        lines.extend(traceback.format_list(traceback.extract_tb(item.__traceback__)))
        kind = type(item)
        lines.append(f"{kind.__module__}.{kind.__qualname__} (message withheld)\n")
    return "".join(lines).rstrip("\n")


class JsonHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler (stderr unless told otherwise) that writes with ``JsonFormatter``."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self.setFormatter(JsonFormatter())


def _where() -> tuple[str | None, str | None]:
    if has_request_context():
        return g.get("request_id"), "http"
    command = click.get_current_context(silent=True)
    if command is not None:
        return None, f"cli:{command.command_path}"
    return None, None


_base_factory = logging.getLogRecordFactory()


def _record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    record.request_id, record.context = _where()
    return record


def json_handler() -> JsonHandler | None:
    return next((h for h in logging.getLogger().handlers if isinstance(h, JsonHandler)), None)


def configure_logging(app: Flask) -> None:
    """Route every logger through one JSON handler on the root logger (once per process).

    Under gunicorn with ``-c config/gunicorn.py`` the handler is already there (its ``logconfig_dict``),
    and gunicorn's own lines go through it too.
    """
    if logging.getLogRecordFactory() is not _record_factory:
        logging.setLogRecordFactory(_record_factory)
    if json_handler() is None:
        logging.getLogger().addHandler(JsonHandler())
    app.logger.removeHandler(default_handler)  # Flask's plain-text handler would write a second line
    for name, level in _QUIET.items():
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level < level:
            logger.setLevel(level)
    logging.getLogger("referral").setLevel(app.config.get("LOG_LEVEL", "INFO"))


def log_access(*, rule: str, endpoint: str | None, method: str, status: int, duration: float) -> None:
    """One line per request: the URL rule, never the path (ids) or the query (search terms)."""
    ACCESS.info("%s %s %s", method, rule, status, extra={
        "method": method, "path": rule, "endpoint": endpoint, "status": status,
        "duration_ms": round(duration * 1000, 2)})
