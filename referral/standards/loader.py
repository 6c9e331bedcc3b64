"""Loading versioned handling standards from YAML (SPEC §5).

A (code, version) pair is immutable once loaded: loading the same document
again changes nothing, a different document under a loaded version is refused
— publish a new version instead.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
from pathlib import Path
from typing import Any

import yaml
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import Date, bindparam, func, literal, or_, select
from sqlalchemy.orm import Session

from referral.errors import Conflict, ValidationFailed
from referral.reference.models import ServiceType
from referral.standards.models import Standard

EVENTS = ("submitted", "offered", "accepted", "incident")
ACTIONS = ("accepted", "contact_attempt", "contact_made", "risk_assessment", "safety_plan", "statement_taken",
           "protection_order_issued", "protection_order_extended", "forensic_exam_referral", "service_referral",
           "rights_informed", "follow_up", "note")
SENT = tuple(f"service_referral:{t.value}" for t in ServiceType)
RULES = ("deadline", "first_action", "closure")
CODE = validate.Regexp(r"^[a-z][a-z0-9_]{0,47}$")


class When(Schema):
    flags = fields.List(fields.String(), load_default=list)
    gbv_types = fields.List(fields.String(), load_default=list)
    relationship = fields.List(fields.String(), load_default=list)
    child = fields.Boolean(load_default=None, allow_none=True)


class Step(Schema):
    code = fields.String(required=True, validate=CODE)
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    rule = fields.String(load_default="deadline", validate=validate.OneOf(RULES))
    when = fields.Nested(When, load_default=dict)
    event = fields.String(load_default=None, validate=validate.OneOf(EVENTS))
    deadline = fields.String(load_default=None)          # a setting name
    urgent_deadline = fields.String(load_default=None)   # a setting name
    deadline_hours = fields.Float(load_default=None, validate=validate.Range(min=0, max=24 * 366 * 5))
    window_start_hours = fields.Float(load_default=None, validate=validate.Range(min=0, max=24 * 366 * 5))
    # An officer's action, or a service referral of a type sent to a provider ("service_referral:health").
    satisfied_by = fields.List(fields.String(validate=validate.OneOf(ACTIONS + SENT)), load_default=list)
    ignore = fields.List(fields.String(validate=validate.OneOf(ACTIONS)), load_default=list)
    requires = fields.List(fields.String(validate=CODE), load_default=list)

    @validates_schema
    def _complete(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["rule"] == "deadline":
            if not data["event"] or not data["satisfied_by"]:
                raise ValidationError("A deadline step needs an event and satisfied_by.")
            if data["deadline"] is None and data["deadline_hours"] is None:
                raise ValidationError("A deadline step needs deadline (a setting) or deadline_hours.")
        if data["rule"] == "first_action" and not data["satisfied_by"]:
            raise ValidationError("A first_action step needs satisfied_by.")


class StandardDoc(Schema):
    code = fields.String(required=True, validate=validate.Regexp(r"^[A-Z][A-Z0-9-]{0,31}$"))
    version = fields.Integer(required=True, validate=validate.Range(min=1))
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    countries = fields.List(fields.String(validate=validate.Regexp(r"^[A-Z]{2}$")), load_default=list)
    effective_from = fields.Date(required=True)
    settings = fields.Dict(keys=fields.String(), values=fields.Float(validate=validate.Range(min=0, max=24 * 366 * 5)),
                           load_default=dict)
    steps = fields.List(fields.Nested(Step), required=True, validate=validate.Length(min=1))

    @validates_schema
    def _consistent(self, data: dict[str, Any], **kwargs: Any) -> None:
        codes = [s["code"] for s in data["steps"]]
        if len(codes) != len(set(codes)):
            raise ValidationError("Step codes must be unique.", "steps")
        for step in data["steps"]:
            for key in ("deadline", "urgent_deadline"):
                if step[key] is not None and step[key] not in data["settings"]:
                    raise ValidationError(f"Step {step['code']} names an unknown setting {step[key]}.", "steps")
            earlier = set(codes[: codes.index(step["code"])])
            unknown = set(step["requires"]) - earlier
            if unknown:
                raise ValidationError(f"Step {step['code']} requires unknown steps {sorted(unknown)} "
                                      "(a step may only require steps listed before it).", "steps")


def read_standard(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValidationFailed(f"Cannot read the standard {path.name} ({type(exc).__name__}).") from None
    return parse_standard(raw, path.name)


def parse_standard(raw: Any, label: str) -> dict[str, Any]:
    """A standard document (a file's content, or an entry of a reference file), validated."""
    try:
        return StandardDoc().load(raw if isinstance(raw, dict) else {})
    except ValidationError as err:
        raise ValidationFailed(f"The standard {label} is invalid.", fields=err.messages) from None  # type: ignore[arg-type]


def _canonical(doc: dict[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)


def load_standards(session: Session, paths: list[Path]) -> dict[str, int]:
    return load_standard_docs(session, [read_standard(path) for path in paths])


def load_standard_docs(session: Session, docs: list[dict[str, Any]]) -> dict[str, int]:
    """Store validated standard documents: a new (code, version) is added, the same one again changes nothing,
    a different one under a loaded version is refused."""
    from referral.audit.service import record

    stats = {"standards_created": 0, "standards_unchanged": 0}
    for doc in docs:
        body = _canonical(doc)
        existing = session.scalar(select(Standard).where(Standard.code == doc["code"],
                                                         Standard.version == doc["version"]))
        if existing is not None:
            if existing.body != body:
                raise Conflict(f"{doc['code']} version {doc['version']} is already loaded with different content; "
                               "publish it as a new version.")
            stats["standards_unchanged"] += 1
            continue
        session.add(Standard(code=doc["code"], version=doc["version"], name=doc["name"],
                             countries=",".join(doc["countries"]), effective_from=doc["effective_from"], body=body))
        session.flush()
        stats["standards_created"] += 1
        record(session, None, "standard.load", object_type="standard", object_id=f"{doc['code']}:{doc['version']}")
    return stats


def choosing(column: Any, listed: Any) -> Any:
    """``column`` of the one version in force on ``:on`` for the country whose LIKE pattern (``%,KG,%``,
    escaped with a backslash) is ``listed``: the country's own first, else the fallback (no countries); the
    latest version, and the last loaded of equal versions. The one statement of the rule: standard_for runs
    it with the pattern as a parameter, routing.place with the pattern built from the area's country."""
    own = (literal(",") + Standard.countries + literal(",")).like(listed, escape="\\")  # ",KG,TJ," holds ",KG,"
    return (select(column).where(Standard.effective_from <= bindparam("on", type_=Date()),
                                 or_(Standard.countries == "", own))
            .order_by((Standard.countries == "").asc(), Standard.version.desc(), Standard.id.desc()).limit(1))


def like_literal(text: Any) -> Any:
    """``text`` (a str or a SQL expression) with LIKE's wildcards and the escape character escaped."""
    if isinstance(text, str):
        return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return func.replace(func.replace(func.replace(text, "\\", "\\\\"), "%", "\\%"), "_", "\\_")


@functools.cache
def _in_force() -> Any:
    # Built once: every submission whose country routing.place could not name asks.
    return choosing(Standard, bindparam("listed"))


def standard_for(session: Session, country: str, on: dt.date) -> Standard | None:
    """The latest version in force on ``on``: the country's own, else the fallback (no countries)."""
    return remember(session, session.scalar(_in_force(), {"on": on, "listed": f"%,{like_literal(country)},%"}))


def remember(session: Session, chosen: Standard | None) -> Standard | None:
    """Keep the body of a submission's standard for judging the case at commit (a loaded version never
    changes: it is not read again in this transaction)."""
    if chosen is not None:
        session.info.setdefault(STANDARD_BODIES, {})[chosen.id] = chosen.body
    return chosen


STANDARD_BODIES = "standards.bodies"  # session.info: {standard id: body} of standards this session loaded
