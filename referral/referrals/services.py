"""Creating and reading cases. Services take the actor, audit, flush — never commit."""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import json
import re
import secrets
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from referral.accounts.models import User
from referral.accounts.services import normalise_phone
from referral.audit.service import DENIED, record
from referral.db import Combined, combine, insert_objects, latest_today, local_today, run_combined, utcnow
from referral.errors import N_, Conflict, NotFound, ValidationFailed
from referral import rowload
from referral.referrals import crypto, routing
from referral.referrals.classification import classify, derive_flags
from referral.reference.models import Area, Unit
from referral.referrals.workflow_models import Alert, AlertKind, ProtectionOrder
from referral.referrals.models import (QUEUED, SEALED_FIELDS, CaseNote, Referral, Status, SubmissionKey, new_id,
                                      parse_case_id)
from referral.security.keyring import keyring_for
from referral.security.permissions import CaseView, Permission, case_view, is_submitter, require
from referral.security.sealed import blind_index, normalise_identifier

# No 0/O, 1/I/L: a reference is read aloud over a bad phone line.
REFERENCE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


def new_reference() -> str:
    chars = [secrets.choice(REFERENCE_ALPHABET) for _ in range(8)]
    return f"R-{''.join(chars[:4])}-{''.join(chars[4:])}"


def _canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def create_referral(session: Session, actor: User, data: dict[str, Any], *,
                    now: dt.datetime | None = None) -> Referral:
    """Store a submission, classify it and route it.

    De-identified fields are kept in clear, every sensitive field sealed under a
    new case key. A case whose suspect is a police officer goes to another
    unit's supervisor and alerts oversight.
    """
    now = now or utcnow()
    require(actor, Permission.REFERRAL_SUBMIT)
    # The area's lineage (routing walks it), the standard in force from local midnight for its country, and
    # whether the reference drawn is taken: one statement.
    reference = new_reference()
    where = routing.place(session, data["area"], reference=reference, on=local_today(now))
    if where is None:
        raise ValidationFailed(fields={"area": [N_("No area has this code.")]})
    area = where.area
    if data["incident"].get("date") and data["incident"]["date"] > latest_today(now):
        raise ValidationFailed(fields={"incident": {"date": [N_("The incident date cannot be in the future.")]}})
    survivor, incident = data["survivor"], data["incident"]
    perpetrator = data.get("perpetrator") or {}
    contact = survivor.get("safe_contact") or {}
    phone = None
    if survivor.get("phone"):
        try:
            phone = normalise_phone(survivor["phone"])
        except ValueError as exc:
            raise ValidationFailed(fields={"survivor": {"phone": [str(exc)]}}) from None

    taken = where.reference_taken
    while taken:
        reference = new_reference()
        taken = bool(session.scalar(_statement("reference_taken"), {"reference": reference}))
    gbv_type = classify(incident["answers"])
    flags = derive_flags(gbv_type=gbv_type, age_group=survivor["age_group"], relationship=perpetrator.get("relationship"),
                         immediate_danger=incident.get("immediate_danger", False), incident_date=incident.get("date"),
                         now=now)
    police_suspect = bool(perpetrator.get("is_police_officer"))
    local_unit = routing.covering_unit(where)
    unit = routing.covering_unit(where, exclude=local_unit.id) if police_suspect and local_unit else local_unit
    referral = Referral(
        # The keys as well as the objects: the case is flushed late, and routing, alerts and notifications
        # read ``unit_id`` before then.
        id=new_id(), reference=reference, area=area, unit=unit, submitter=actor, created_at=now,
        area_id=area.id, unit_id=unit.id if unit else None, submitter_id=actor.id,
        gbv_type=gbv_type.value, flags=",".join(flags), suspect_is_police=police_suspect,
        age_group=survivor["age_group"], sex=survivor.get("sex"), disability=survivor.get("disability"),
        survivor_language=survivor.get("language"),
        # Without a phone or a safe-contact method, contact goes through the focal point.
        safe_contact_method=contact.get("method") or ("phone" if phone else "via_focal_point"),
        answers=_canonical(incident["answers"]), incident_date=incident.get("date"),
        location_type=incident.get("location_type"), immediate_danger=incident.get("immediate_danger", False),
        perpetrator_relationship=perpetrator.get("relationship"), consent=_canonical(data["consent"]),
        officer_gender=(data.get("preferences") or {}).get("officer_gender", "any"),
    )
    referral.standard_id = where.standard.id if where.standard else None
    data_key = crypto.new_case_key(referral)
    values = {
        "survivor.name": survivor.get("name"), "survivor.phone": phone, "survivor.address": survivor.get("address"),
        "survivor.safe_contact.notes": contact.get("notes"), "incident.narrative": incident.get("narrative"),
        "perpetrator.name": perpetrator.get("name"), "perpetrator.details": perpetrator.get("details"),
    }
    for path, value in values.items():
        crypto.seal_referral_field(referral, data_key, path, value)
    index_key = keyring_for(current_app).blind_index_key()
    referral.survivor_phone_bidx = blind_index(index_key, "phone", phone) if phone else None
    if perpetrator.get("name"):
        referral.perpetrator_bidx = blind_index(index_key, "perpetrator", normalise_identifier(perpetrator["name"]))
    # Not flushed yet: on the usual path the case is inserted once, already routed, when the request commits
    # (an INSERT and then an UPDATE of its status cost a statement and a flush more). Its id is ours already.
    session.add(referral)
    record(session, actor, "referral.create", object_type="referral", object_id=referral.id,
           fields=[p for p, v in values.items() if v is not None])
    from referral.services_dir import consent as consent_records
    from referral.services_dir.services import coordinator_for, suggest_health_referral

    consents = consent_records.submission_consent_rows(actor, referral, data["consent"], now)
    if {"clinical_urgent", "clinical_soon"} & set(flags):  # SPEC §3.2: both clinical windows force a health offer
        suggest_health_referral(session, referral)
    if not data["consent"]["police"]:
        # No police consent: the police never see this case; the area's coordinating provider does.
        consent_records.insert_consents(session, consents)  # the coordinator is chosen by them
        consents = []
        referral.unit, referral.unit_id, referral.status = None, None, Status.services_only
        coordinator = coordinator_for(session, area)
        referral.coordinator_id = coordinator.id if coordinator else None
        session.flush()
        if coordinator is not None:
            from referral.services_dir.services import route_to_coordinator

            route_to_coordinator(session, actor, referral, coordinator, now)
        record(session, actor, "referral.services_only", object_type="referral", object_id=referral.id,
               reason=f"coordinator {coordinator.code}" if coordinator else "no coordinating provider")
    elif police_suspect:
        session.add(Alert(kind=AlertKind.police_suspect, referral_id=referral.id, unit_id=referral.unit_id,
                          created_at=now))
        routing.escalate(session, referral, now=now, reason="suspect is a police officer: sent to another unit",
                         coverage_gap=unit is None, actor=actor)
    else:
        # Choosing the officer reads officers, courses, certifications and case loads: nothing the new case,
        # its consents or a suggested service referral change, so those queries need not flush them first.
        with session.no_autoflush:
            routing.route(session, referral, now=now, actor=actor, first=True)
    # Last: the case, already routed, with what routing added (its offer, the officer's message), by plain
    # INSERTs where they can be (a flush of these cost twice as much), its consents and, judged now from
    # these objects, its steps' statuses; on PostgreSQL all in one statement.
    from referral.standards import step_statuses

    judged = step_statuses.rows_of_new_case(session, referral)
    if insert_objects(session, list(session.new), rows=[*consent_records.consent_rows(consents), *(judged or ())]):
        if judged is not None:
            step_statuses.written(session, referral.id)
    else:
        consent_records.insert_consents(session, consents)
    return referral


# An idempotency key: what a web form or an API client sends with a submission so that sending it twice
# files one case. Opaque to us; long enough not to be guessed within one account.
SUBMISSION_KEY = re.compile(r"[A-Za-z0-9_\-]{16,128}")


def submit_referral(session: Session, actor: User, data: dict[str, Any], *, key: str | None = None,
                    now: dt.datetime | None = None) -> tuple[Referral, bool]:
    """``create_referral``, once per ``key``: the same submission sent again with its key (a double tap, a
    retry after a slow network) answers the case it filed, and True. The same key with a different
    submission is refused (409): that is another referral, and guessing would lose one of them."""
    if key is None:
        return create_referral(session, actor, data, now=now), False
    key_hash, digest = _submission_hashes(key, data)
    earlier = _earlier_submission(session, actor, key_hash, digest)
    if earlier is not None:
        return earlier, True
    referral = create_referral(session, actor, data, now=now)
    session.add(SubmissionKey(submitter_id=actor.id, key_hash=key_hash, body_digest=digest, referral_id=referral.id))
    return referral, False


def is_repeated_key(exc: IntegrityError) -> bool:
    """Whether the database refused a row because this submitter's key was already taken (a racing copy)."""
    return "submission_keys" in str(exc.orig)


def repeated_submission(session: Session, actor: User, data: dict[str, Any], key: str) -> Referral | None:
    """The case a racing copy of this submission filed, after the unique key refused ours; None if none."""
    return _earlier_submission(session, actor, *_submission_hashes(key, data))


def _submission_hashes(key: str, data: dict[str, Any]) -> tuple[str, str]:
    # The submission is case content: only a digest keyed like the blind indexes is kept, to compare.
    body = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False).encode()
    digest = hmac.new(keyring_for(current_app).blind_index_key(), b"submission\0" + body, hashlib.sha256)
    return hashlib.sha256(key.encode()).hexdigest(), digest.hexdigest()


def _earlier_submission(session: Session, actor: User, key_hash: str, digest: str) -> Referral | None:
    row = session.execute(select(SubmissionKey.body_digest, Referral)
                          .join(Referral, Referral.id == SubmissionKey.referral_id)
                          .where(SubmissionKey.submitter_id == actor.id, SubmissionKey.key_hash == key_hash)).first()
    if row is None:
        return None
    if not hmac.compare_digest(row.body_digest, digest):
        record(session, actor, "referral.create", object_type="referral", outcome=DENIED,
               reason="submission key already used for another submission")
        raise Conflict(N_("This submission was already sent with other answers. Start a new referral."),
                       code="submission_key_reused")
    record(session, actor, "referral.create", object_type="referral", object_id=row.Referral.id,
           reason="the same submission again: the case it filed", fields=["reference", "status"])
    return row.Referral


def load_visible(session: Session, actor: User, referral_id: str, action: str) -> tuple[Referral, CaseView]:
    """The case and how much ``actor`` may see of it; a case they may not see is 404 and a denied event."""
    referral, level, _area, _unit = _load_visible(session, actor, referral_id, action)
    return referral, level


def _load_visible(session: Session, actor: User, referral_id: str,
                  action: str) -> tuple[Referral, CaseView, str, str | None]:
    """``load_visible``, with the codes of the case's area and unit (what a read shows of them), read with
    the case as two columns: loading them as objects cost a read about 4 % of its instructions."""
    case_id = parse_case_id(referral_id)
    row = rowload.execute(session, _statement("full_case"), {"id": case_id}).first() if case_id else None
    referral = rowload.load(session, Referral, row) if row is not None else None
    level = case_view(actor, referral) if referral is not None else None
    if referral is None or level is None:
        record(session, actor, action, object_type="referral", object_id=case_id or "malformed-id", outcome=DENIED,
               reason="not visible to this user" if referral is not None else "no such case")
        raise NotFound(N_("No such referral."))
    return referral, level, row[-2], row[-1]


_ASK = object()


def summary_view(session: Session, referral: Referral, area_code: str, deadline: Any = _ASK) -> dict[str, Any]:
    """What an officer needs to decide on an offer: no names, no story (``deadline``: already read)."""
    # Open offers exist only while the case is on offer: no query otherwise.
    if deadline is _ASK:
        deadline = session.scalar(_statement("accept_by"), {"id": referral.id}) \
            if referral.status is Status.offered else None
    return {"gbv_type": referral.gbv_type, "flags": referral.flag_list, "area": area_code,
            "age_group": referral.age_group, "accept_by": deadline.isoformat() if deadline else None,
            "assigned_officer_id": referral.assigned_officer_id}


def status_view(referral: Referral) -> dict[str, Any]:
    return {"id": referral.id, "reference": referral.reference, "status": referral.status.value,
            "created_at": referral.created_at.isoformat()}


def read_status(session: Session, actor: User, referral_id: str) -> dict[str, Any]:
    """Reference and stage only (the status page): nothing is decrypted, and the audit says so."""
    referral, _level = load_visible(session, actor, referral_id, "referral.read")
    record(session, actor, "referral.read", object_type="referral", object_id=referral.id,
           fields=["reference", "status"])
    return status_view(referral)


def read_referral(session: Session, actor: User, referral_id: str) -> dict[str, Any]:
    """What the actor may see of one case, decrypting only for those entitled to content; audited with the fields shown."""
    referral, level, area_code, unit_code = _load_visible(session, actor, referral_id, "referral.read")
    body = status_view(referral)
    if level is CaseView.STATUS:
        record(session, actor, "referral.read", object_type="referral", object_id=referral.id,
               fields=["reference", "status"])
        return body
    if level is CaseView.OFFER:
        body.update(summary_view(session, referral, area_code))
        record(session, actor, "referral.read", object_type="referral", object_id=referral.id,
               fields=["summary"])
        return body
    from referral.services_dir.consent import consent_view
    from referral.services_dir.services import timeline as service_timeline

    on_offer = referral.status is Status.offered
    related = related_params(referral)
    phone, perpetrator = "phone" in related, "perpetrator" in related
    consents, services, actions, orders, case_notes, *rest = run_combined(
        session, _timeline(on_offer, phone, perpetrator), {"id": referral.id, **related})
    accept_by = rest.pop(0)[0][0] if on_offer else None  # min() over open offers: one row
    matches = {"same_phone": rest.pop(0) if phone else [], "same_perpetrator": rest.pop(0) if perpetrator else []}
    body.update(summary_view(session, referral, area_code, accept_by))

    data_key = crypto.case_key(referral)
    erased = data_key is None
    sealed = {path: (None if erased else crypto.open_referral_field(referral, data_key, path))
              for path in SEALED_FIELDS}
    notes = [{"id": n.id, "created_at": n.created_at.isoformat(), "author_id": n.author_id,
              "text": None if erased else crypto.open_note(n, data_key)} for n in case_notes]
    body.update({
        "unit": unit_code, "erased": erased, "outcome": referral.outcome,
        "closure_pending": referral.closure_requested_at is not None,
        "survivor": {"name": sealed["survivor.name"], "phone": sealed["survivor.phone"],
                     "address": sealed["survivor.address"], "age_group": referral.age_group, "sex": referral.sex,
                     "disability": referral.disability, "language": referral.survivor_language,
                     "safe_contact": {"method": referral.safe_contact_method,
                                      "notes": sealed["survivor.safe_contact.notes"]}},
        "incident": {"date": referral.incident_date.isoformat() if referral.incident_date else None,
                     "answers": json.loads(referral.answers), "narrative": sealed["incident.narrative"],
                     "location_type": referral.location_type, "immediate_danger": referral.immediate_danger},
        "perpetrator": {"name": sealed["perpetrator.name"], "relationship": referral.perpetrator_relationship,
                        "details": sealed["perpetrator.details"]},
        "consent": json.loads(referral.consent),
        "consents": consent_view(session, referral, rows=consents),
        "service_referrals": (service_list := service_timeline(session, referral, data_key, services)),
        "actions": (action_list := action_timeline(session, referral, data_key, actions)),
        "protection_orders": protection_orders(session, referral, orders),
        "notes": notes,
    })
    body["matches"] = related_cases(actor, matches)
    # Every decrypted free text is named: the case's sealed fields, the focal point's notes, the officers'
    # action notes and the providers' outcome notes (a read showing only those is still a disclosure).
    disclosed = [p for p, v in sealed.items() if v is not None] + (["notes"] if any(n["text"] for n in notes) else [])
    disclosed += ["actions.note"] if any(a["note"] is not None for a in action_list) else []
    disclosed += ["service_referrals.note"] if any(s["note"] is not None for s in service_list) else []
    record(session, actor, "referral.read", object_type="referral", object_id=referral.id, fields=disclosed)
    return body


NEWEST = (Referral.created_at.desc(), Referral.id.desc())


@functools.cache
def _statement(name: str) -> Any:
    """Statements every submission or full read runs, built once (building one cost about as much as
    running it); ``:id`` is the case."""
    from referral.referrals.workflow_models import CaseAction, Offer, OfferStatus

    case = bindparam("id")
    if name == "full_case":
        # The case's columns, made into the object by rowload (past the ORM's per-query set-up), then the
        # area's and the unit's codes: all a read shows of them. The notes come with the rest of a full
        # read's timeline (``timeline_statements``).
        return (select(*rowload.columns_of(Referral), Area.code, Unit.code)
                .outerjoin(Area, Area.id == Referral.area_id).outerjoin(Unit, Unit.id == Referral.unit_id)
                .where(Referral.id == case))
    if name == "notes":
        return (select(CaseNote.id, CaseNote.created_at, CaseNote.author_id, CaseNote.body_sealed,
                       CaseNote.referral_id)
                .where(CaseNote.referral_id == case).order_by(CaseNote.created_at, CaseNote.id))
    if name == "reference_taken":
        return select(func.count()).select_from(Referral).where(Referral.reference == bindparam("reference"))
    if name == "accept_by":
        return select(func.min(Offer.deadline)).where(Offer.referral_id == case, Offer.status == OfferStatus.open)
    if name == "actions":
        # Plain rows, not objects, here and for the orders: a read changes none of them.
        return (select(CaseAction.id, CaseAction.type, CaseAction.created_at, CaseAction.actor_id,
                       CaseAction.note_sealed)
                .where(CaseAction.referral_id == case).order_by(CaseAction.created_at, CaseAction.id))
    if name == "protection_orders":
        return (select(ProtectionOrder.issued_on, ProtectionOrder.expires_on, ProtectionOrder.extensions)
                .where(ProtectionOrder.referral_id == case).order_by(ProtectionOrder.id))
    # Related cases by blind index (``:phone``, ``:perpetrator``). The same survivor reported twice counts
    # within a window of time (``:since`` to ``:until``); repeat perpetrators have none. The most recent
    # matches are enough to prompt a person to look; a prolific perpetrator must not make every read of
    # every one of their cases slower. The limit sits in a subquery, so the statement can join the full
    # read's UNION (``combine`` refuses a LIMIT of its own).
    column = {"same_phone": Referral.survivor_phone_bidx, "same_perpetrator": Referral.perpetrator_bidx}[name]
    recent = select(Referral.id).where(column == bindparam("phone" if name == "same_phone" else "perpetrator"),
                                       Referral.id != case)
    if name == "same_phone":
        recent = recent.where(Referral.created_at >= bindparam("since"), Referral.created_at <= bindparam("until"))
    recent = recent.order_by(Referral.created_at.desc(), Referral.id).limit(RELATED_LIMIT)
    # Plain rows with what case_view weighs, not whole cases: a match is named, never opened.
    return (select(Referral.id, Referral.reference, Referral.status, Referral.submitter_id, Referral.unit_id,
                   Referral.assigned_officer_id).where(Referral.id.in_(recent))
            .order_by(Referral.created_at.desc(), Referral.id))


def list_referrals(session: Session, actor: User, *, page: int, per_page: int) -> tuple[list[dict[str, Any]], int]:
    """Cases the actor may see, newest first, stage only (no decryption in lists)."""
    require(actor, Permission.REFERRAL_READ)
    if actor.role.value == "officer":
        rows, total = _officer_queue(session, actor, page=page, per_page=per_page)
    else:
        query = select(Referral)
        if actor.role.value == "focal_point":
            query = query.where(Referral.submitter_id == actor.id)
        elif actor.role.value == "supervisor" and actor.unit_id is not None:
            # A case the police lost with the survivor's consent stays the unit's in figures, not in lists.
            query = query.where(Referral.unit_id == actor.unit_id, Referral.status != Status.services_only)
        else:
            query = query.where(False)  # providers, oversight, admin: never through this list
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = session.scalars(query.order_by(*NEWEST).limit(per_page).offset((page - 1) * per_page)).all()
    record(session, actor, "referral.list", object_type="referral", reason=f"{len(rows)} of {total} shown")
    return [status_view(r) for r in rows], total


def _officer_queue(session: Session, actor: User, *, page: int, per_page: int) -> tuple[list[Referral], int]:
    """Assigned cases and open offers, merged newest first: each side walks its own index and stops
    after the rows the page needs, instead of sorting an officer's whole history."""
    from referral.referrals.workflow_models import Offer, OfferStatus

    offered = select(Offer.referral_id).where(Offer.officer_id == actor.id, Offer.status == OfferStatus.open)
    # A case withdrawn by the survivor is no longer the officer's to see (case_view), so not to list either.
    # (QUEUED as literal SQL, the partial index's own predicate: a bound value would hide the match.)
    assigned_q = select(Referral).where(Referral.assigned_officer_id == actor.id, text(f"referrals.{QUEUED}"))
    offered_q = select(Referral).where(Referral.id.in_(offered),
                                       (Referral.assigned_officer_id != actor.id) | Referral.assigned_officer_id.is_(None))
    # count(*), not count(id): an index-only scan of the officer index, no heap visits
    total = sum(session.scalar(q.with_only_columns(func.count())) or 0 for q in (assigned_q, offered_q))
    wanted = page * per_page
    merged = [*session.scalars(assigned_q.order_by(*NEWEST).limit(wanted)),
              *session.scalars(offered_q.order_by(*NEWEST).limit(wanted))]
    merged.sort(key=lambda r: (r.created_at, r.id), reverse=True)
    return merged[(page - 1) * per_page:wanted], total


def add_information(session: Session, actor: User, referral_id: str, text: str) -> CaseNote:
    """The submitting focal point appends information; it is sealed like the rest of the case."""
    require(actor, Permission.REFERRAL_ADD_INFORMATION)
    referral, _level = load_visible(session, actor, referral_id, "referral.add_information")
    if not is_submitter(actor, referral):
        record(session, actor, "referral.add_information", object_type="referral", object_id=referral.id,
               outcome=DENIED, reason="only the submitter adds information")
        raise NotFound(N_("No such referral."))
    data_key = crypto.case_key(referral)
    if data_key is None:
        raise ValidationFailed(N_("This case has been erased."), fields={"text": [N_("The case no longer accepts information.")]})
    note = CaseNote(id=new_id(), referral_id=referral.id, author_id=actor.id)
    crypto.seal_note(note, data_key, text)
    session.add(note)
    session.flush()
    record(session, actor, "referral.add_information", object_type="referral", object_id=referral.id,
           fields=["notes"])
    return note


def action_timeline(session: Session, referral: Referral, data_key: bytes | None,
                    rows: Any = None) -> list[dict[str, Any]]:
    from referral.security.sealed import open_field

    out = []
    for action in session.execute(_statement("actions"), {"id": referral.id}) if rows is None else rows:
        note = None
        if action.note_sealed is not None and data_key is not None:
            note = open_field(data_key, bytes(action.note_sealed), case_id=referral.id, table="case_actions",
                              column="note_sealed", row_id=action.id)
        out.append({"id": action.id, "type": action.type.value, "created_at": action.created_at.isoformat(),
                    "actor_id": action.actor_id, "note": note})
    return out


def protection_orders(session: Session, referral: Referral, rows: Any = None) -> list[dict[str, Any]]:
    if rows is None:
        rows = session.execute(_statement("protection_orders"), {"id": referral.id})
    return [{"issued_on": o.issued_on.isoformat(), "expires_on": o.expires_on.isoformat(), "extensions": o.extensions}
            for o in rows]


@functools.cache
def timeline_statements(with_deadline: bool, phone: bool = False, perpetrator: bool = False) -> tuple[Any, ...]:
    """What a full read shows beside the case: consent records, service referrals, actions, protection orders,
    the focal point's notes, while the case is on offer the accept-by deadline, and the cases with the same
    survivor phone or perpetrator, when it has them (``related_params``). Read together (``_timeline``)."""
    from referral.services_dir.consent import records_statement
    from referral.services_dir.services import timeline_statement

    parts = (records_statement(), timeline_statement(), _statement("actions"), _statement("protection_orders"),
             _statement("notes"))
    return (parts + ((_statement("accept_by"),) if with_deadline else ())
            + ((_statement("same_phone"),) if phone else ()) + ((_statement("same_perpetrator"),) if perpetrator else ()))


@functools.cache
def _timeline(with_deadline: bool, phone: bool, perpetrator: bool) -> Combined:
    # One round trip instead of four to seven: each statement cost about as much in SQLAlchemy and the driver
    # as the rows it brings.
    return combine(*timeline_statements(with_deadline, phone, perpetrator))


def related_params(referral: Referral) -> dict[str, Any]:
    """The related-case searches' parameters for ``referral``: only the blind indexes it has."""
    params: dict[str, Any] = {}
    if referral.survivor_phone_bidx is not None:
        window = dt.timedelta(days=current_app.config["DUPLICATE_WINDOW_DAYS"])
        params.update(phone=referral.survivor_phone_bidx, since=referral.created_at - window,
                      until=referral.created_at + window)
    if referral.perpetrator_bidx is not None:
        params["perpetrator"] = referral.perpetrator_bidx
    return params


RELATED_LIMIT = 50


def related_cases(actor: User, rows: dict[str, list[Any]]) -> dict[str, list[str]]:
    """Other cases with the same survivor phone or perpetrator, found by blind index without decrypting
    (``rows``: what the searches of ``timeline_statements`` gave).

    Only cases the actor may already see in full are named (SPEC §7). A shared
    truncated index is a *possible* match, to be checked by a person.
    """
    return {key: [other.reference for other in matches if case_view(actor, other) is CaseView.CONTENT]
            for key, matches in rows.items()}
