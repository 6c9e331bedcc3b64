"""API for oversight staff (SPEC §8, §12)."""
from __future__ import annotations

from flask import Response, current_app, jsonify
from marshmallow import Schema, fields, validate

from referral.api import acting_user, PageArgs, api, load_args, load_json, page_body, page_of_list
from referral.extensions import db
from referral.oversight import services, statistics
from referral.security.permissions import Permission, requires

_SANE = validate.Range(min=__import__("datetime").datetime(2000, 1, 1, tzinfo=__import__("datetime").UTC),
                       max=__import__("datetime").datetime(2100, 1, 1, tzinfo=__import__("datetime").UTC))

_YEARS = validate.Range(min=__import__("datetime").date(2000, 1, 1), max=__import__("datetime").date(2100, 12, 31))


class AuditFilters(Schema):
    case_id = fields.String(load_default=None, validate=validate.Length(max=64))
    actor_id = fields.Integer(load_default=None, validate=validate.Range(min=1, max=2**31 - 1))
    action = fields.String(load_default=None, validate=validate.Length(max=64))
    outcome = fields.String(load_default=None, validate=validate.OneOf(["allowed", "denied", "error"]))
    since = fields.AwareDateTime(load_default=None, validate=_SANE)
    until = fields.AwareDateTime(load_default=None, validate=_SANE)


class AuditSearchArgs(AuditFilters, PageArgs):
    pass


class BreakGlassIn(Schema):
    case_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    justification = fields.String(required=True, validate=validate.Length(min=20, max=2000))
    hours = fields.Float(load_default=None, allow_none=True, validate=validate.Range(min=0.05, max=72))


class ReviewIn(Schema):
    outcome = fields.String(required=True, validate=validate.OneOf(["justified", "unjustified"]))


class StatsArgs(Schema):
    # Bounded like the compliance summary's period: the day after 9999-12-31 does not exist.
    since = fields.Date(load_default=None, validate=_YEARS)
    until = fields.Date(load_default=None, validate=_YEARS)


@api.get("/audit")
@requires(Permission.AUDIT_READ)
def audit_search():  # type: ignore[no-untyped-def]
    args = load_args(AuditSearchArgs)
    page, per_page = args.pop("page"), args.pop("per_page")
    items, total = services.search_audit(db.session, acting_user(), args, page=page, per_page=per_page)
    db.session.commit()
    return jsonify(page_body(items, page=page, per_page=per_page, total=total))


@api.get("/audit/export.csv")
@requires(Permission.AUDIT_READ)
def audit_export():  # type: ignore[no-untyped-def]
    args = load_args(AuditFilters)
    body = services.export_audit_csv(db.session, acting_user(), args)
    db.session.commit()
    return Response(body, mimetype="text/csv", headers={"Content-Disposition": "attachment; filename=audit.csv"})


@api.get("/referrals/<referral_id>/disclosures")
@requires(Permission.AUDIT_READ)
def case_disclosures(referral_id: str):  # type: ignore[no-untyped-def]
    args = load_args(PageArgs)
    items, total = services.disclosures(db.session, acting_user(), referral_id, page=args["page"],
                                        per_page=args["per_page"])
    db.session.commit()
    return jsonify(page_body(items, page=args["page"], per_page=args["per_page"], total=total))


@api.get("/referrals/<referral_id>/matches")
@requires(Permission.AUDIT_READ)
def case_match_counts(referral_id: str):  # type: ignore[no-untyped-def]
    body = services.match_counts(db.session, acting_user(), referral_id)
    db.session.commit()
    return jsonify(body)


@api.post("/break-glass")
@requires(Permission.BREAK_GLASS)
def break_glass():  # type: ignore[no-untyped-def]
    data = load_json(BreakGlassIn)
    hours = data["hours"] or current_app.config["BREAK_GLASS_DEFAULT_HOURS"]
    grant = services.open_break_glass(db.session, acting_user(), data["case_id"], data["justification"], hours)
    db.session.commit()
    return jsonify(id=grant.id, case_id=grant.referral_id, expires_at=grant.expires_at.isoformat()), 201


@api.get("/break-glass")
@requires(Permission.BREAK_GLASS)
def break_glass_queue():  # type: ignore[no-untyped-def]
    args = load_args(PageArgs)
    items = services.review_queue(db.session, acting_user())
    db.session.commit()
    return jsonify(page_of_list(items, args))


@api.post("/break-glass/<int:grant_id>/review")
@requires(Permission.BREAK_GLASS)
def break_glass_review(grant_id: int):  # type: ignore[no-untyped-def]
    data = load_json(ReviewIn)
    grant = services.review_break_glass(db.session, acting_user(), grant_id, data["outcome"])
    db.session.commit()
    return jsonify(id=grant.id, review_outcome=grant.review_outcome)


@api.get("/oversight/anomalies")
@requires(Permission.AUDIT_READ)
def oversight_anomalies():  # type: ignore[no-untyped-def]
    args = load_args(PageArgs)
    items = services.anomalies(db.session, acting_user())
    db.session.commit()
    return jsonify(page_of_list(items, args))


@api.get("/stats/deidentified")
@requires(Permission.STATS_READ)
def stats_deidentified():  # type: ignore[no-untyped-def]
    from referral.audit.service import record
    from referral.db import utcnow

    args = load_args(StatsArgs)
    report = statistics.deidentified(db.session, since=args["since"], until=args["until"], now=utcnow())
    record(db.session, acting_user(), "stats.deidentified", object_type="statistics")
    db.session.commit()
    return jsonify(report)
