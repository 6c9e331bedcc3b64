"""gunicorn settings: ``gunicorn -c config/gunicorn.py wsgi:app`` (README "Operations").

Every line gunicorn writes (boot, worker start and exit, timeouts) goes through the app's JSON
formatter on stderr. gunicorn's own access log stays off: it would write raw paths and query strings;
the app writes one access line per request with the URL rule instead (referral/ops/logs.py).

With ``PROMETHEUS_MULTIPROC_DIR`` set, the directory is emptied when the master starts (values of a
previous run must not be added in) and a dead worker's files are marked so that scrapes stay right.
Bind address and worker count come from the command line or ``GUNICORN_CMD_ARGS`` as usual.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

accesslog = None
errorlog = "-"
loglevel = "info"
logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "referral.ops.logs.JsonFormatter"}},
    "handlers": {"json": {"class": "referral.ops.logs.JsonHandler"}},
    "root": {"level": "INFO", "handlers": ["json"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
        "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": False},
    },
}


def on_starting(server: Any) -> None:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
