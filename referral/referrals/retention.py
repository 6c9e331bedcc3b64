"""Retention and erasure (issue 11): crypto-erase what Amanat must no longer hold, in the database and its backups.

- A case is kept for ``RETENTION_DAYS`` after it was closed or withdrawn; open cases
  are never erased by the clock.
- When a case closes, ``apply`` rewraps its data key under the *retention KEK* of the
  month its retention ends (``keyring.retention_kek``). When that month is over,
  ``apply`` crypto-erases its cases and destroys the month's KEK: every copy of those
  wrapped keys — in the database or in any backup of it taken before — is then
  undecryptable, because the keyring is never part of a database backup.
- A survivor's erasure request (relayed by the submitting focal point) erases the
  case in the database at once. Backups taken before the request still hold its key
  wrapped under a KEK that lives on; that copy becomes unreadable when the KEK is
  rotated out and retired (``keys rotate`` + ``keys retire``), which the operations
  runbook schedules within the backup retention window (docs/decisions.md).

De-identified fields (type, age group, area, dates, flags, outcome) stay, so the
statistics keep counting erased cases. Services take the actor and never commit.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from flask import current_app
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from referral.accounts.models import User
from referral.audit.service import record
from referral.db import utcnow
from referral.errors import N_, Conflict
from referral.referrals import crypto
from referral.referrals.models import Referral, Status
from referral.security.keyring import keyring_for
from referral.security.permissions import Permission, is_submitter, require

ENDED = (Status.closed, Status.withdrawn)


def retention_ends(closed_at: dt.datetime, days: int) -> dt.datetime:
    return closed_at + dt.timedelta(days=days)


def period_of(moment: dt.datetime) -> str:
    return f"{moment.year:04d}-{moment.month:02d}"


def period_over(period: str, now: dt.datetime) -> bool:
    """True once the whole month has passed (its last case's retention has ended)."""
    year, month = (int(p) for p in period.split("-"))
    first_after = dt.datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=dt.UTC)
    return now >= first_after


SMS_RECEIPT_SLACK = dt.timedelta(hours=1)


def prune_sms_receipts(session: Session, now: dt.datetime) -> int:
    """Delete the SMS webhook receipts no replay could match any more (its signature would be too old)."""
    from referral.notify.models import SmsReceipt

    window = dt.timedelta(seconds=current_app.config["SMS_WINDOW_SECONDS"])
    return session.execute(delete(SmsReceipt).where(SmsReceipt.received_at < now - 2 * window - SMS_RECEIPT_SLACK)
                           ).rowcount or 0


def request_erasure(session: Session, actor: User, referral_id: str, *, now: dt.datetime | None = None) -> Referral:
    """The survivor asks for her case to be erased; the submitting focal point relays it.

    An open case is withdrawn first (the officers are told, as for any withdrawal);
    then the case key and every sealed field are destroyed at once.
    """
    from referral.referrals import workflow
    from referral.referrals.services import load_visible

    now = now or utcnow()
    require(actor, Permission.REFERRAL_WITHDRAW)
    referral, _level = load_visible(session, actor, referral_id, "referral.erasure_request")
    if not is_submitter(actor, referral):
        record(session, actor, "referral.erasure_request", object_type="referral", object_id=referral.id,
               outcome="denied", reason="only the submitter relays an erasure request")
        from referral.errors import NotFound

        raise NotFound(N_("No such referral."))
    if referral.erased_at is not None:
        raise Conflict(N_("This case has already been erased."), code="already_erased")
    if referral.status not in ENDED:
        referral = workflow.withdraw(session, actor, referral.id, now=now)
    referral.erasure_requested_at = now
    record(session, actor, "referral.erasure_request", object_type="referral", object_id=referral.id)
    crypto.crypto_erase(session, actor, referral, reason="survivor asked for erasure", now=now)
    return referral


def apply(session: Session, *, now: dt.datetime | None = None, batch: int = 500) -> dict[str, Any]:
    """Erase what is due, move newly ended cases under their retention KEK, destroy past months' KEKs.

    Commits per batch (a run stopped half way resumes); safe to run again. ``now``
    is for tests and drills.
    """
    now = now or utcnow()
    days = current_app.config["RETENTION_DAYS"]
    keys = keyring_for(current_app)
    out = {"erased_retention": 0, "erased_requested": 0, "rewrapped": 0, "keys_destroyed": [],
           "retention_days": days}
    cutoff = now - dt.timedelta(days=days)

    def batches(query):  # type: ignore[no-untyped-def]
        while True:
            rows = session.scalars(query.limit(batch).with_for_update(skip_locked=True)
                                   .execution_options(populate_existing=True)).all()
            if not rows:
                return
            yield rows

    # 1. Survivor requests not yet carried out (e.g. a request whose erasure failed half way).
    for rows in batches(select(Referral).where(Referral.erasure_requested_at.is_not(None),
                                               Referral.erased_at.is_(None)).order_by(Referral.id)):
        for referral in rows:
            crypto.crypto_erase(session, None, referral, reason="survivor asked for erasure", now=now)
        out["erased_requested"] += len(rows)
        session.commit()
    # 2. Cases whose retention has ended.
    for rows in batches(select(Referral).where(Referral.status.in_(ENDED), Referral.closed_at.is_not(None),
                                               Referral.closed_at <= cutoff, Referral.erased_at.is_(None))
                        .order_by(Referral.id)):
        for referral in rows:
            crypto.crypto_erase(session, None, referral, reason=f"retention of {days} days ended", now=now)
        out["erased_retention"] += len(rows)
        session.commit()
    # 3. Ended cases still under an ordinary KEK: under their month's retention KEK from now on.
    while True:
        held = list(keys.retention_versions) or [-1]  # re-read: this loop makes new month keys
        rows = session.scalars(select(Referral).where(
            Referral.status.in_(ENDED), Referral.closed_at.is_not(None), Referral.data_key_wrapped.is_not(None),
            Referral.kek_version.not_in(held)).order_by(Referral.id).limit(batch)
            .with_for_update(skip_locked=True).execution_options(populate_existing=True)).all()
        if not rows:
            break
        for referral in rows:
            period = period_of(retention_ends(referral.closed_at, days))
            referral.data_key_wrapped = keys.wrap_for_retention(bytes(referral.data_key_wrapped),
                                                                referral.crypto_context, period)
            referral.kek_version = keys.wrapped_version(referral.data_key_wrapped)
        out["rewrapped"] += len(rows)
        session.commit()
    # 4. Months that are over: nothing live may still need their KEK (a case reopened or a clock moved
    #    backwards would); then the KEK goes, and with it every backup's copy of those keys.
    for version, period in sorted(keys.retention_versions.items()):
        if not period_over(period, now):
            continue
        still = session.scalars(select(Referral.id).where(Referral.kek_version == version,
                                                          Referral.data_key_wrapped.is_not(None)).limit(1)).first()
        if still is not None:
            record(session, None, "retention.key_kept", object_type="keyring", object_id=str(version),
                   outcome="error", reason=f"month {period} is over but a live case key is still under it")
            session.commit()
            continue
        keys.destroy_retention_kek(version)
        record(session, None, "retention.key_destroyed", object_type="keyring", object_id=str(version),
               reason=f"retention month {period} is over")
        session.commit()
        out["keys_destroyed"].append(period)
    # 5. Receipts of SMS webhook calls: the replay guard needs one only while its signature could still
    #    pass the time window (a timestamp up to a window ahead of its arrival, then a window more); an
    #    hour on top for app servers whose clocks differ.
    out["sms_receipts_pruned"] = prune_sms_receipts(session, now)
    record(session, None, "retention.apply", object_type="retention",
           reason=f"erased {out['erased_retention']} past retention and {out['erased_requested']} on request; "
                  f"rewrapped {out['rewrapped']}; destroyed {len(out['keys_destroyed'])} month key(s); "
                  f"pruned {out['sms_receipts_pruned']} SMS receipt(s)")
    session.commit()
    return out
