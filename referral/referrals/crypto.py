"""Per-case envelope encryption: one data key per case, wrapped by the key provider."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from flask import current_app, g, has_app_context
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from referral.accounts.models import User
from referral.db import utcnow
from referral.referrals.models import SEALED_FIELDS, CaseNote, Referral, SubmissionKey
from referral.security.keyring import KeyProvider, keyring_for
from referral.security.sealed import open_field, seal_field


def provider() -> KeyProvider:
    return keyring_for(current_app)


def new_case_key(referral: Referral) -> bytes:
    keys = provider()
    data_key, wrapped = keys.generate_data_key(referral.crypto_context)
    referral.data_key_wrapped = wrapped
    referral.kek_version = keys.wrapped_version(wrapped)
    _cache()[referral.id] = data_key
    return data_key


def _cache() -> dict[str, bytes]:
    # Unwrapped keys live for one request (or CLI command) only.
    if has_app_context():
        return g.setdefault("amanat_case_keys", {})
    return {}


def case_key(referral: Referral) -> bytes | None:
    """The case's data key, or None once it has been crypto-erased."""
    if referral.data_key_wrapped is None:
        return None
    cache = _cache()
    key = cache.get(referral.id)
    if key is None:
        key = provider().unwrap(referral.data_key_wrapped, referral.crypto_context)
        cache[referral.id] = key
    return key


def seal_referral_field(referral: Referral, data_key: bytes, path: str, value: str | None) -> None:
    column = SEALED_FIELDS[path]
    setattr(referral, column, None if value is None else seal_field(
        data_key, value, case_id=referral.id, table="referrals", column=column, row_id=referral.id))


def open_referral_field(referral: Referral, data_key: bytes, path: str) -> str | None:
    column = SEALED_FIELDS[path]
    blob = getattr(referral, column)
    if blob is None:
        return None
    return open_field(data_key, bytes(blob), case_id=referral.id, table="referrals", column=column,
                      row_id=referral.id)


def seal_note(note: CaseNote, data_key: bytes, text: str) -> None:
    note.body_sealed = seal_field(data_key, text, case_id=note.referral_id, table="case_notes",
                                  column="body_sealed", row_id=note.id)


def open_note(note: CaseNote, data_key: bytes) -> str | None:
    if note.body_sealed is None:
        return None
    return open_field(data_key, bytes(note.body_sealed), case_id=note.referral_id, table="case_notes",
                      column="body_sealed", row_id=note.id)


def crypto_erase(session: Session, actor: User | None, referral: Referral, *, reason: str,
                 now: dt.datetime | None = None) -> None:
    """Destroy the case's data key: every sealed field of the case becomes unreadable for good.

    The ciphertexts are dropped too (they are useless without the key). Used by
    retention and by withdrawal; ``actor`` None is the system.
    """
    from referral.audit.service import record

    referral.data_key_wrapped = None
    referral.kek_version = None
    referral.erased_at = now or utcnow()
    for column in SEALED_FIELDS.values():
        setattr(referral, column, None)
    # The blind indexes are keyed hashes of her phone and the perpetrator's name: linkable, so they go too.
    referral.survivor_phone_bidx = referral.perpetrator_bidx = None
    # So is the digest of her submission kept to recognise a resend (keyed like them, over every field).
    session.execute(delete(SubmissionKey).where(SubmissionKey.referral_id == referral.id))
    for note in referral.notes:
        note.body_sealed = None
    # Every other text sealed under this key: useless now, and not to be left lying in the database.
    from sqlalchemy import update

    from referral.oversight.models import BreakGlassGrant
    from referral.referrals.workflow_models import CaseAction
    from referral.services_dir.models import Consent, ServiceReferral

    for model, column in ((CaseAction, CaseAction.note_sealed), (Consent, Consent.reason_sealed),
                          (ServiceReferral, ServiceReferral.note_sealed),
                          (BreakGlassGrant, BreakGlassGrant.justification_sealed)):
        session.execute(update(model).where(model.referral_id == referral.id, column.is_not(None))
                        .values({column: None}).execution_options(synchronize_session="fetch"))
    _cache().pop(referral.id, None)
    record(session, actor, "referral.crypto_erase", object_type="referral", object_id=referral.id, reason=reason)


def rotate(session: Session, keys: KeyProvider, *, batch: int = 500,
           progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
    """Rewrap every data key (and every sealed TOTP secret) under a new KEK.

    Commits per batch, so a rotation interrupted half way resumes where it
    stopped; cases still under the old KEK keep working meanwhile, because the
    old KEK stays for decryption until it is retired.
    """
    from referral.accounts.auth import reseal_totp_secret
    from referral.audit.service import record

    new = keys.add_kek()  # type: ignore[attr-defined]
    # Keys under a retention KEK stay there: that KEK is destroyed when its month ends (retention apply).
    stays = [new.version, *keys.retention_versions]  # type: ignore[attr-defined]
    total = session.scalar(select(func.count()).select_from(Referral).where(
        Referral.data_key_wrapped.is_not(None), Referral.kek_version.not_in(stays))) or 0
    done = 0
    while True:
        # Locked, and re-read under the lock: a case crypto-erased meanwhile
        # must not get its key written back.
        rows = session.scalars(select(Referral).where(
            Referral.data_key_wrapped.is_not(None), Referral.kek_version.not_in(stays))
            .order_by(Referral.id).limit(batch).with_for_update()
            .execution_options(populate_existing=True)).all()
        if not rows:
            break
        for row in rows:
            row.data_key_wrapped = keys.rewrap(bytes(row.data_key_wrapped), row.crypto_context)
            row.kek_version = new.version
        done += len(rows)
        session.commit()
        if progress:
            progress(done, total)
    users = 0
    for user in session.scalars(select(User).where(User.totp_secret_sealed.is_not(None))):
        reseal_totp_secret(user)
        users += 1
    record(session, None, "keys.rotate", object_type="keyring", object_id=str(new.version),
           reason=f"rewrapped {done} case keys and {users} TOTP secrets")
    session.commit()
    return {"kek_version": new.version, "cases_rewrapped": done, "totp_resealed": users}


def check_all(session: Session, keys: KeyProvider, *, batch: int = 500) -> dict[str, object]:
    """Does every case key unwrap, and every sealed field and note open, with ``keys``? (Restore drills.)

    Reads only; decrypted values are dropped at once. Returns counts and, for
    failures, case ids and the kind of failure — never content.
    """
    from referral.security.keyring import KeyringError, SealIntegrityError

    checked = fields = retired = 0
    failures: list[dict[str, str]] = []
    destroyed = getattr(keys, "destroyed_versions", {})
    last = ""
    while True:
        rows = session.scalars(select(Referral).where(Referral.data_key_wrapped.is_not(None), Referral.id > last)
                               .order_by(Referral.id).limit(batch)).all()
        if not rows:
            break
        for referral in rows:
            checked += 1
            try:
                data_key = keys.unwrap(bytes(referral.data_key_wrapped), referral.crypto_context)
                for path in SEALED_FIELDS:
                    fields += open_referral_field(referral, data_key, path) is not None
                for note in referral.notes:
                    fields += open_note(note, data_key) is not None
            except KeyringError:
                if referral.kek_version in destroyed:  # erased by retention after this copy was made
                    retired += 1
                else:
                    failures.append({"case": referral.id, "problem": f"no key version {referral.kek_version}"})
            except SealIntegrityError as err:
                failures.append({"case": referral.id, "problem": str(err)})
        last = rows[-1].id
        session.expunge_all()  # a long check must not fill the identity map
    erased = session.scalar(select(func.count()).select_from(Referral).where(Referral.data_key_wrapped.is_(None))) or 0
    return {"cases": checked - retired, "fields_opened": fields, "erased_cases": erased,
            "erased_by_retention_key": retired, "failures": failures}
