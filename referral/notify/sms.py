"""SMS intake from feature phones (SPEC §9): signature, replay guard, the structured code.

``GBV <area code> <type> <age group> <danger>`` creates a routed referral and
replies with its reference; ``STATUS <reference>`` answers with the stage; any
other text gets a short reply showing the format. Keywords may be written in
Kyrgyz, Russian, Tajik or Uzbek, and the reply comes in the language used.
Nothing of the message text is stored outside the case itself.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from referral.accounts.models import Role, User
from referral.accounts.services import normalise_phone
from referral.audit.service import DENIED, record, savepoint
from referral.errors import Conflict, DomainError, Forbidden, Unauthenticated
from referral.notify.models import Channel, SmsReceipt
from referral.notify.outbox import enqueue
from referral.referrals.schemas import AGE_GROUPS

# The spec's own keywords (GBV, STATUS) say nothing of the language: the reply follows the account's.
# Uzbek is written zoʻravonlik (or zo'ravonlik) and Tajik ҳолат as холат on a Russian-only keypad: both count.
REPORT_WORDS = {"GBV": None, "ГН": "ru", "НАСИЛИЕ": "ru", "ЗОМБУЛУК": "ky", "ХУШУНАТ": "tg", "ZORAVONLIK": "uz",
                "ZO'RAVONLIK": "uz"}
STATUS_WORDS = {"STATUS": None, "СТАТУС": "ru", "АБАЛ": "ky", "ҲОЛАТ": "tg", "ХОЛАТ": "tg", "HOLAT": "uz"}
TYPE_ANSWER = {"R": "penetration", "S": "sexual_contact", "P": "physical_assault", "F": "forced_marriage",
               "D": "denial_of_resources", "E": "psychological_abuse"}
YES = {"Y", "YES", "ДА", "ООБА", "ҲА", "ХА", "HA"}
NO = {"N", "NO", "НЕТ", "ЖОК", "НЕ", "YOQ", "YO'Q"}
# Cyrillic letters a Cyrillic keyboard types for the Latin type letters: Е for E, С for S (said alike). Not
# Р: it looks like P (physical) but is said R (rape), and a wrong guess would lose a rape's PEP window, so
# it gets the format reply instead.
LOOKALIKES = str.maketrans({"Е": "E", "С": "S"})
# Cyrillic capitals that look like Latin ones, for what is always Latin (area codes, references, Y): a phone
# switched to Cyrillic types KG-С-ALM-1 with a Cyrillic С that no area code has.
LATIN = str.maketrans(dict(zip("АВЕКМНОРСТХУ", "ABEKMHOPCTXY")))
# Apostrophes a phone may put in oʻ and gʻ (modifier letters, quotation marks, a backtick): one form.
APOSTROPHES = str.maketrans(dict.fromkeys("\u02bb\u02bc\u2018\u2019`", "'"))
ANSWERS = tuple(TYPE_ANSWER.values())


class SmsNotConfigured(DomainError):
    status = 503
    code = "sms_not_configured"
    message = "SMS intake is not configured on this server."


@dataclass
class Parsed:
    kind: str                     # "report", "status" or "malformed"
    language: str | None = None
    data: dict[str, Any] | None = None
    reference: str | None = None


TIMESTAMP = re.compile(r"[0-9]{1,12}")
SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")


def verify_signature(raw_body: bytes, timestamp: str, signature: str, *, now: dt.datetime) -> str:
    """401 for a missing, malformed, wrong or stale signature; returns the verified MAC (lower-case hex)."""
    secret = current_app.config.get("SMS_SECRET")
    if not secret:
        raise SmsNotConfigured()
    given = SIGNATURE.fullmatch(signature.strip())
    if not TIMESTAMP.fullmatch(timestamp) or given is None:
        raise Unauthenticated("Missing or malformed signature.")
    if abs(now.timestamp() - int(timestamp)) > current_app.config["SMS_WINDOW_SECONDS"]:
        raise Unauthenticated("The signature is too old.")
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + raw_body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), given.group(1).lower().encode()):
        raise Unauthenticated("Wrong signature.")
    return expected


def refuse_replay(session: Session, timestamp: str, mac: str) -> None:
    """The same signed message twice is a replay (409), however its hex is written; the unique row
    makes racing copies fail too."""
    digest = hashlib.sha256(f"{timestamp}.{mac}".encode()).hexdigest()
    if session.scalar(select(SmsReceipt.id).where(SmsReceipt.signature_hash == digest)) is not None:
        raise Conflict("This message was already received.", code="replay")
    try:
        with session.begin_nested():
            session.add(SmsReceipt(signature_hash=digest))
    except IntegrityError:
        raise Conflict("This message was already received.", code="replay") from None


def parse(text: str) -> Parsed:
    words = text.upper().translate(APOSTROPHES).split()
    if not words:
        return Parsed("malformed")
    head = words[0]
    if head in STATUS_WORDS:
        if len(words) != 2:
            return Parsed("malformed", STATUS_WORDS[head])
        return Parsed("status", STATUS_WORDS[head], reference=words[1].translate(LATIN))
    if head not in REPORT_WORDS:
        return Parsed("malformed")
    language = REPORT_WORDS[head]
    if len(words) != 5:
        return Parsed("malformed", language)
    _head, area, kind, age, danger = words
    area, kind = area.translate(LATIN), kind.translate(LOOKALIKES)
    if danger not in YES and danger not in NO:
        danger = danger.translate(LATIN)  # a Cyrillic У for Y
    if kind not in TYPE_ANSWER or age not in AGE_GROUPS or (danger not in YES and danger not in NO):
        return Parsed("malformed", language)
    answers = {name: name == TYPE_ANSWER[kind] for name in ANSWERS}
    # The format has no consent field: the focal point sends the code only with the survivor's
    # agreement that the police receive it (docs/decisions.md); nothing else is consented.
    data = {"area": area, "survivor": {"age_group": age},
            "incident": {"answers": answers, "immediate_danger": danger in YES},
            "consent": {"police": True, "services": False, "sms_contact": False, "statistics": False,
                        "given_by": "survivor"}}
    return Parsed("report", language, data=data)


def _sender(session: Session, raw_phone: str) -> User:
    try:
        phone = normalise_phone(raw_phone)
    except ValueError:
        phone = None
    user = session.scalar(select(User).where(User.phone == phone)) if phone else None
    if user is None or user.role is not Role.focal_point or not user.active or user.enrolment_pending:
        record(session, None, "sms.inbound", object_type="sms", outcome=DENIED, reason="unregistered sender")
        raise Forbidden("This phone is not registered to a focal point.")
    return user


def handle_inbound(session: Session, raw_phone: str, text: str, *, now: dt.datetime,
                   message_id: str | None = None) -> dict[str, Any]:
    """Act on one verified message from a focal point; the reply goes through the outbox. ``message_id``: the
    gateway's own id of the message, when it sends one: a retry it signed afresh files no second case."""
    from referral.referrals.models import Referral
    from referral.referrals.services import is_repeated_key, submit_referral

    user = _sender(session, raw_phone)
    parsed = parse(text[:480])
    language = parsed.language or None

    def reply(template: str, **params: Any) -> None:
        enqueue(session, template, params, channel=Channel.sms, address=user.phone, user=user, language=language)

    if parsed.kind == "report":
        # The gateway's id as the submission's key (its hash: the key is opaque to us either way).
        key = None if message_id is None else "sms_" + hashlib.sha256(message_id.encode()).hexdigest()
        try:
            with savepoint(session):
                referral, repeat = submit_referral(session, user, parsed.data or {}, key=key, now=now)
        except IntegrityError as exc:
            if key is None or not is_repeated_key(exc):
                raise
            # Another copy of this gateway message, arriving at the same moment, filed the case and replied.
            raise Conflict("This message was already received.", code="replay") from None
        except Conflict:
            raise  # the gateway sent another text under an id it had used: its fault, told with 409
        except DomainError:  # e.g. an unknown area code: the format reminder, nothing stored
            reply("sms_format")
            return {"result": "malformed"}
        if not repeat:  # a retry's reply went out with the first copy
            reply("sms_received", reference=referral.reference)
        return {"result": "created", "reference": referral.reference}
    if parsed.kind == "status":
        referral = session.scalar(select(Referral).where(Referral.reference == parsed.reference,
                                                         Referral.submitter_id == user.id))
        record(session, user, "referral.read", object_type="referral",
               object_id=referral.id if referral else None, fields=["reference", "status"] if referral else [],
               outcome="allowed" if referral else DENIED, reason="sms status")
        if referral is None:
            reply("sms_unknown_reference")
            return {"result": "unknown_reference"}
        reply("sms_status", reference=referral.reference, stage=referral.status.value)
        return {"result": "status", "reference": referral.reference}
    reply("sms_format")
    return {"result": "malformed"}
