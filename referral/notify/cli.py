"""``flask outbox deliver [--once]``: the notification worker."""
from __future__ import annotations

import json
import logging
import time

import click
from flask.cli import AppGroup
from sqlalchemy.exc import DBAPIError

from referral.extensions import db

log = logging.getLogger(__name__)
outbox_cli = AppGroup("outbox", help="Notifications.")


@outbox_cli.command("deliver")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit (default: keep polling).")
@click.option("--interval", default=5.0, show_default=True, help="Seconds between polls when idle.")
@click.option("--limit", default=None, type=click.IntRange(min=1), help="At most this many messages.")
def deliver_command(once: bool, interval: float, limit: int | None) -> None:
    """Deliver pending messages with retries and backoff; dead-letter after the last attempt."""
    from referral.notify.adapters import adapters_from_settings
    from referral.notify.outbox import deliver

    adapters = adapters_from_settings()
    while True:
        try:
            counts = deliver(db.session, adapters, limit=limit)
        except DBAPIError as exc:
            if once or not exc.connection_invalidated:
                raise
            # The database went away (a restart, a dropped link): the pool has thrown the connection away;
            # poll again after the interval on a new one. What was being delivered was not committed.
            db.session.rollback()
            log.warning("outbox worker: database connection lost; retrying in %.0f s", interval)
            time.sleep(interval)
            continue
        if once:
            click.echo(json.dumps(counts))
            return
        if not any(counts.values()):
            time.sleep(interval)
