"""``reference load``: areas, units, organisations and courses from YAML (SPEC §10).

Loading is an upsert keyed by code: loading the same file twice changes
nothing, a changed name or setting updates the row, and nothing absent from the
file is deleted (cases may still point at it).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import select

from referral.errors import ValidationFailed
from referral.extensions import db
from referral.reference.models import (
    Area, AreaKind, Organisation, OrganisationKind, OrganisationService, RoutingMode, ServiceType, Unit,
)
from referral.standards.models import Course, CourseRequirement

CODE = validate.Regexp(r"^[A-Z0-9][A-Z0-9-]{0,63}$", error="Codes are upper-case letters, digits and dashes.")


def _one_of(enum_cls: Any) -> validate.OneOf:
    return validate.OneOf([m.value for m in enum_cls])


class AreaIn(Schema):
    code = fields.String(required=True, validate=CODE)
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    kind = fields.String(required=True, validate=_one_of(AreaKind))
    parent = fields.String(load_default=None, validate=CODE)


class UnitIn(Schema):
    code = fields.String(required=True, validate=CODE)
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    areas = fields.List(fields.String(validate=CODE), required=True, validate=validate.Length(min=1))
    routing = fields.String(load_default=RoutingMode.direct.value, validate=_one_of(RoutingMode))
    closure_approval = fields.Boolean(load_default=False)


class OrganisationIn(Schema):
    code = fields.String(required=True, validate=CODE)
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    kind = fields.String(required=True, validate=_one_of(OrganisationKind))
    areas = fields.List(fields.String(validate=CODE), required=True, validate=validate.Length(min=1))
    services = fields.List(fields.String(validate=_one_of(ServiceType)), load_default=list)
    coordinator = fields.Boolean(load_default=False)


class CourseIn(Schema):
    code = fields.String(required=True, validate=CODE)
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    validity_months = fields.Integer(load_default=None, validate=validate.Range(min=1, max=240))
    required_for = fields.String(load_default=CourseRequirement.none.value, validate=_one_of(CourseRequirement))


class ReferenceFile(Schema):
    areas = fields.List(fields.Nested(AreaIn), load_default=list)
    units = fields.List(fields.Nested(UnitIn), load_default=list)
    organisations = fields.List(fields.Nested(OrganisationIn), load_default=list)
    courses = fields.List(fields.Nested(CourseIn), load_default=list)
    # Handling standards (SPEC §5, §11), each a whole document as in config/standards; checked below.
    standards = fields.List(fields.Dict(), load_default=list)


class ReferenceError(ValidationFailed):
    message = "The reference file is invalid."


def read_reference(path: str | Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(Path(path).read_text("utf-8"))
    except OSError as exc:
        raise ReferenceError(f"Cannot read {path}: {exc.strerror}.") from None
    except yaml.YAMLError as exc:
        raise ReferenceError(f"{path} is not valid YAML ({type(exc).__name__}).") from None
    if not isinstance(raw, dict):
        raise ReferenceError(f"{path} must be a mapping with areas, units, organisations, courses, standards.")
    try:
        data = ReferenceFile().load(raw)
    except ValidationError as err:
        raise ReferenceError(fields=err.messages if isinstance(err.messages, dict) else {}) from None
    from referral.standards.loader import parse_standard

    docs = []
    for i, standard in enumerate(data["standards"]):
        try:
            docs.append(parse_standard(standard, f"#{i + 1}"))
        except ValidationFailed as err:
            raise ReferenceError(f"Standard #{i + 1} of {path} is invalid.",
                                 fields={"standards": {str(i): err.fields}}) from None
    data["standards"] = docs
    return data


def _set(row: Any, values: dict[str, Any], stats: Counter[str], kind: str) -> None:
    changed = False
    for key, value in values.items():
        if getattr(row, key) != value:
            setattr(row, key, value)
            changed = True
    if changed:
        stats[f"{kind}_updated"] += 1


def _by_code(model: Any) -> dict[str, Any]:
    return {row.code: row for row in db.session.scalars(select(model))}


def load_reference(data: dict[str, Any], *, default_validity_months: int) -> Counter[str]:
    """Upsert validated reference data; returns counts of created and updated rows by kind."""
    stats: Counter[str] = Counter()
    areas = _by_code(Area)

    # Parents first, whatever order the file lists them in.
    pending = {a["code"]: a for a in data["areas"]}
    if len(pending) != len(data["areas"]):
        raise ReferenceError("An area code appears twice.")
    while pending:
        ready = [a for a in pending.values() if a["parent"] is None or a["parent"] in areas]
        if not ready:
            unknown = sorted({a["parent"] for a in pending.values()} - set(pending))
            raise ReferenceError("Unknown parent area or a cycle.", fields={"areas": {"parent": unknown or sorted(pending)}})
        for item in ready:
            del pending[item["code"]]
            parent = areas.get(item["parent"]) if item["parent"] else None
            row = areas.get(item["code"])
            if row is None:
                row = Area(code=item["code"], name=item["name"], kind=AreaKind(item["kind"]), parent=parent)
                db.session.add(row)
                areas[row.code] = row
                stats["areas_created"] += 1
            else:
                _set(row, {"name": item["name"], "kind": AreaKind(item["kind"]), "parent": parent}, stats, "areas")

    def resolve_areas(codes: list[str], owner: str) -> list[Area]:
        missing = [c for c in codes if c not in areas]
        if missing:
            raise ReferenceError(f"{owner} covers unknown areas: {', '.join(missing)}.")
        return [areas[c] for c in dict.fromkeys(codes)]

    units = _by_code(Unit)
    for item in data["units"]:
        values = {"name": item["name"], "routing_mode": RoutingMode(item["routing"]),
                  "closure_approval": item["closure_approval"],
                  "areas": resolve_areas(item["areas"], f"Unit {item['code']}")}
        row = units.get(item["code"])
        if row is None:
            row = Unit(code=item["code"], **values)
            db.session.add(row)
            units[row.code] = row
            stats["units_created"] += 1
        else:
            if sorted(a.code for a in row.areas) == sorted(a.code for a in values["areas"]):
                values.pop("areas")
            _set(row, values, stats, "units")

    orgs = _by_code(Organisation)
    for item in data["organisations"]:
        values = {"name": item["name"], "kind": OrganisationKind(item["kind"]), "coordinator": item["coordinator"]}
        org_areas = resolve_areas(item["areas"], f"Organisation {item['code']}")
        wanted = {ServiceType(s) for s in item["services"]}
        row = orgs.get(item["code"])
        if row is None:
            row = Organisation(code=item["code"], areas=org_areas, **values,
                               services=[OrganisationService(service_type=s) for s in sorted(wanted)])
            db.session.add(row)
            orgs[row.code] = row
            stats["organisations_created"] += 1
            continue
        changed = any(getattr(row, key) != value for key, value in values.items())
        for key, value in values.items():
            setattr(row, key, value)
        if sorted(a.code for a in row.areas) != sorted(a.code for a in org_areas):
            row.areas = org_areas
            changed = True
        have = {s.service_type: s for s in row.services}
        for service in set(have) - wanted:
            row.services.remove(have[service])
            changed = True
        for service in sorted(wanted - set(have)):
            row.services.append(OrganisationService(service_type=service))
            changed = True
        if changed:
            stats["organisations_updated"] += 1

    courses = _by_code(Course)
    for item in data["courses"]:
        values = {"name": item["name"], "validity_months": item["validity_months"] or default_validity_months,
                  "required_for": CourseRequirement(item["required_for"])}
        row = courses.get(item["code"])
        if row is None:
            db.session.add(Course(code=item["code"], **values))
            stats["courses_created"] += 1
        else:
            _set(row, values, stats, "courses")
    db.session.flush()
    from referral.standards.loader import load_standard_docs

    created = load_standard_docs(db.session, data.get("standards", []))["standards_created"]
    if created:  # as for the other kinds, only changes are counted
        stats["standards_created"] += created
    from referral.audit.service import record

    record(db.session, None, "reference.load", object_type="reference",
           reason=", ".join(f"{k}={v}" for k, v in sorted(stats.items())) or "no changes")
    return stats
