"""API: submit, list and read referrals; add information. Thin: rules live in services."""
from __future__ import annotations

from typing import Any

from flask import jsonify, request
from sqlalchemy.exc import IntegrityError

from referral.api import acting_user, PageArgs, api, load_args, load_json, page_body
from referral.errors import N_, ValidationFailed
from referral.extensions import db
from referral.referrals import services, workflow
from referral.referrals.schemas import ActionIn, CloseIn, DeclineIn, EmptyIn, NoteIn, ReassignIn, Submission
from referral.security.permissions import Permission, requires



def _created(referral: Any) -> dict[str, Any]:
    return {"id": referral.id, "reference": referral.reference, "status": referral.status.value,
            "gbv_type": referral.gbv_type, "flags": referral.flag_list}


def submit_and_commit(actor: Any, data: dict[str, Any], key: str | None) -> tuple[dict[str, Any], bool]:
    """File a submission and commit (the API and the focal point's form): the case's answer and whether it
    repeats an earlier submission with the same key. Two copies sent at once: the unique key refuses the
    second copy's insert, which then answers the case the first filed."""
    try:
        referral, repeat = services.submit_referral(db.session, actor, data, key=key)
        body = _created(referral)  # before the commit expires the row
        db.session.commit()
    except IntegrityError as exc:
        if key is None or not services.is_repeated_key(exc):
            raise
        db.session.rollback()
        earlier = services.repeated_submission(db.session, actor, data, key)
        if earlier is None:
            raise
        body, repeat = _created(earlier), True
        db.session.commit()
    return body, repeat


@api.post("/referrals")
@requires(Permission.REFERRAL_SUBMIT)
def submit_referral():  # type: ignore[no-untyped-def]
    key = request.headers.get("Idempotency-Key")
    if key is not None and not services.SUBMISSION_KEY.fullmatch(key):
        raise ValidationFailed(fields={"Idempotency-Key": [N_("Use 16 to 128 letters, digits, '-' or '_'.")]})
    data = load_json(Submission)
    body, repeat = submit_and_commit(acting_user(), data, key)
    response = jsonify(body)
    if repeat:
        response.headers["Idempotent-Replayed"] = "true"
    return response, 201


@api.get("/referrals")
@requires(Permission.REFERRAL_READ)
def list_referrals():  # type: ignore[no-untyped-def]
    args = load_args(PageArgs)
    items, total = services.list_referrals(db.session, acting_user(), page=args["page"], per_page=args["per_page"])
    db.session.commit()
    return jsonify(page_body(items, page=args["page"], per_page=args["per_page"], total=total))


@api.get("/referrals/<referral_id>")
@requires(Permission.REFERRAL_READ)
def read_referral(referral_id: str):  # type: ignore[no-untyped-def]
    body = services.read_referral(db.session, acting_user(), referral_id)
    db.session.commit()
    return jsonify(body)


@api.post("/referrals/<referral_id>/information")
@requires(Permission.REFERRAL_ADD_INFORMATION)
def add_information(referral_id: str):  # type: ignore[no-untyped-def]
    data = load_json(NoteIn)
    note = services.add_information(db.session, acting_user(), referral_id, data["text"])
    db.session.commit()
    return jsonify(id=note.id, created_at=note.created_at.isoformat()), 201


def _state(referral):  # type: ignore[no-untyped-def]
    return jsonify(id=referral.id, reference=referral.reference, status=referral.status.value,
                   assigned_officer_id=referral.assigned_officer_id,
                   closure_pending=referral.closure_requested_at is not None)


def _optional_body() -> None:
    """State-change calls take no body; an empty or ``{}`` body is fine, anything else is refused."""
    from flask import request

    if request.get_data():
        load_json(EmptyIn)


@api.get("/referrals/<referral_id>/compliance")
@requires(Permission.REFERRAL_READ)
def compliance(referral_id: str):  # type: ignore[no-untyped-def]
    from referral.standards.services import read_compliance

    body = read_compliance(db.session, acting_user(), referral_id)
    db.session.commit()
    return jsonify(body)


@api.post("/referrals/<referral_id>/accept")
@requires(Permission.REFERRAL_ACCEPT)
def accept(referral_id: str):  # type: ignore[no-untyped-def]
    _optional_body()
    referral = workflow.accept(db.session, acting_user(), referral_id)
    db.session.commit()
    return _state(referral)


@api.post("/referrals/<referral_id>/decline")
@requires(Permission.REFERRAL_ACCEPT)
def decline(referral_id: str):  # type: ignore[no-untyped-def]
    data = load_json(DeclineIn)
    referral = workflow.decline(db.session, acting_user(), referral_id, data["reason"])
    db.session.commit()
    return jsonify(id=referral.id, reference=referral.reference, status="declined")


@api.post("/referrals/<referral_id>/recuse")
@requires(Permission.REFERRAL_ACCEPT)
def recuse(referral_id: str):  # type: ignore[no-untyped-def]
    data = load_json(DeclineIn)
    workflow.recuse(db.session, acting_user(), referral_id, data["reason"])
    db.session.commit()
    return "", 204


@api.post("/referrals/<referral_id>/actions")
@requires(Permission.REFERRAL_WORK)
def add_action(referral_id: str):  # type: ignore[no-untyped-def]
    data = load_json(ActionIn)
    action = workflow.add_action(db.session, acting_user(), referral_id, data)
    db.session.commit()
    return jsonify(id=action.id, type=action.type.value, created_at=action.created_at.isoformat()), 201


@api.post("/referrals/<referral_id>/close")
@requires(Permission.REFERRAL_WORK)
def close(referral_id: str):  # type: ignore[no-untyped-def]
    data = load_json(CloseIn)
    referral = workflow.close(db.session, acting_user(), referral_id, data["outcome"])
    db.session.commit()
    return _state(referral)


@api.post("/referrals/<referral_id>/close/approve")
@requires(Permission.REFERRAL_REASSIGN)
def approve_closure(referral_id: str):  # type: ignore[no-untyped-def]
    return _decide_closure(referral_id, approve=True)


@api.post("/referrals/<referral_id>/close/reject")
@requires(Permission.REFERRAL_REASSIGN)
def reject_closure(referral_id: str):  # type: ignore[no-untyped-def]
    return _decide_closure(referral_id, approve=False)


def _decide_closure(referral_id: str, *, approve: bool):  # type: ignore[no-untyped-def]
    _optional_body()
    referral = workflow.decide_closure(db.session, acting_user(), referral_id, approve=approve)
    db.session.commit()
    return _state(referral)


@api.post("/referrals/<referral_id>/reassign")
@requires(Permission.REFERRAL_REASSIGN)
def reassign(referral_id: str):  # type: ignore[no-untyped-def]
    data = load_json(ReassignIn)
    referral = workflow.reassign(db.session, acting_user(), referral_id, data["officer_id"])
    db.session.commit()
    return _state(referral)


@api.post("/referrals/<referral_id>/erasure")
@requires(Permission.REFERRAL_WITHDRAW)
def request_erasure(referral_id: str):  # type: ignore[no-untyped-def]
    from referral.referrals.retention import request_erasure as erase

    _optional_body()
    referral = erase(db.session, acting_user(), referral_id)
    db.session.commit()
    return jsonify(id=referral.id, reference=referral.reference, status=referral.status.value, erased=True)


@api.post("/referrals/<referral_id>/withdraw")
@requires(Permission.REFERRAL_WITHDRAW)
def withdraw(referral_id: str):  # type: ignore[no-untyped-def]
    _optional_body()
    referral = workflow.withdraw(db.session, acting_user(), referral_id)
    db.session.commit()
    return jsonify(id=referral.id, reference=referral.reference, status=referral.status.value)
