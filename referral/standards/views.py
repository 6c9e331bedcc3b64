"""API: courses and certifications (admin), compliance summary (oversight, supervisors)."""
from __future__ import annotations

from flask import jsonify
from marshmallow import Schema, fields, validate

from referral.api import acting_user, api, load_args, load_json, paged_listing
from referral.extensions import db
from referral.security.permissions import Permission, requires
from referral.standards import services
from referral.standards.models import CourseRequirement



class CourseIn(Schema):
    code = fields.String(required=True, validate=validate.Regexp(r"^[A-Z0-9][A-Z0-9-]{0,63}$"))
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    validity_months = fields.Integer(load_default=None, strict=True, validate=validate.Range(min=1, max=240))
    required_for = fields.String(load_default="none", validate=validate.OneOf([r.value for r in CourseRequirement]))


class CertificationIn(Schema):
    email = fields.Email(required=True)
    course = fields.String(required=True, validate=validate.Length(min=1, max=64))
    completed = fields.Date(required=True)


_YEARS = validate.Range(min=__import__("datetime").date(2000, 1, 1), max=__import__("datetime").date(2100, 12, 31))


class SummaryArgs(Schema):
    unit = fields.String(load_default=None, validate=validate.Length(max=64))
    since = fields.Date(load_default=None, validate=_YEARS)
    until = fields.Date(load_default=None, validate=_YEARS)


def _course(c):  # type: ignore[no-untyped-def]
    return {"code": c.code, "name": c.name, "validity_months": c.validity_months, "required_for": c.required_for.value}


@api.get("/admin/courses")
@requires(Permission.TRAINING_CERTIFICATION_RECORD)
def list_courses():  # type: ignore[no-untyped-def]
    return paged_listing(services.list_courses, _course)


def _standard(row):  # type: ignore[no-untyped-def]
    body = services.parsed_standard(row.body)
    return {"code": row.code, "version": row.version, "name": row.name,
            "countries": [c for c in row.countries.split(",") if c], "effective_from": row.effective_from.isoformat(),
            "settings": body.get("settings", {}),
            "steps": [{"code": step["code"], "name": step["name"]} for step in body["steps"]]}


@api.get("/admin/standards")
@requires(Permission.ADMIN_REFERENCE_MANAGE)
def admin_list_standards():  # type: ignore[no-untyped-def]
    """The handling standards loaded, every version (SPEC §12): read-only, as a loaded version never changes."""
    return paged_listing(services.list_standards, _standard)


@api.post("/admin/courses")
@requires(Permission.TRAINING_CERTIFICATION_RECORD)
def save_course():  # type: ignore[no-untyped-def]
    data = load_json(CourseIn)
    course, created = services.save_course(db.session, acting_user(), data)
    db.session.commit()
    return jsonify(_course(course)), 201 if created else 200


@api.post("/admin/certifications")
@requires(Permission.TRAINING_CERTIFICATION_RECORD)
def record_certification():  # type: ignore[no-untyped-def]
    data = load_json(CertificationIn)
    cert = services.record_certification(acting_user(), data["email"], data["course"], data["completed"])
    db.session.commit()
    return jsonify(email=data["email"].lower(), course=cert.course.code, completed_on=cert.completed_on.isoformat(),
                   expires_on=cert.expires_on.isoformat()), 201


@api.get("/compliance/summary")
@requires(Permission.COMPLIANCE_SUMMARY)
def compliance_summary():  # type: ignore[no-untyped-def]
    args = load_args(SummaryArgs)
    body = services.compliance_summary(db.session, acting_user(), unit_code=args["unit"], since=args["since"],
                                       until=args["until"])
    db.session.commit()
    return jsonify(body)
