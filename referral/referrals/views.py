"""API: submit, list and read referrals; add information. Thin: rules live in services."""
from __future__ import annotations

from flask import jsonify
from flask_login import current_user

from referral.api import PageArgs, api, load_args, load_json, page_body
from referral.extensions import db
from referral.referrals import services
from referral.referrals.schemas import NoteIn, Submission
from referral.security.permissions import Permission, requires


def _actor():  # type: ignore[no-untyped-def]
    return current_user._get_current_object()


@api.post("/referrals")
@requires(Permission.REFERRAL_SUBMIT)
def submit_referral():  # type: ignore[no-untyped-def]
    data = load_json(Submission())
    referral = services.create_referral(db.session, _actor(), data)
    db.session.commit()
    return jsonify(id=referral.id, reference=referral.reference, status=referral.status.value,
                   gbv_type=None, flags=[]), 201


@api.get("/referrals")
@requires(Permission.REFERRAL_READ)
def list_referrals():  # type: ignore[no-untyped-def]
    args = load_args(PageArgs())
    items, total = services.list_referrals(db.session, _actor(), page=args["page"], per_page=args["per_page"])
    db.session.commit()
    return jsonify(page_body(items, page=args["page"], per_page=args["per_page"], total=total))


@api.get("/referrals/<referral_id>")
@requires(Permission.REFERRAL_READ)
def read_referral(referral_id: str):  # type: ignore[no-untyped-def]
    body = services.read_referral(db.session, _actor(), referral_id)
    db.session.commit()
    return jsonify(body)


@api.post("/referrals/<referral_id>/information")
@requires(Permission.REFERRAL_ADD_INFORMATION)
def add_information(referral_id: str):  # type: ignore[no-untyped-def]
    data = load_json(NoteIn())
    note = services.add_information(db.session, _actor(), referral_id, data["text"])
    db.session.commit()
    return jsonify(id=note.id, created_at=note.created_at.isoformat()), 201
