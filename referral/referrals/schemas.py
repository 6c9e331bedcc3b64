"""The submission body of SPEC §12, shape only; unknown fields are refused at every level."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

AGE_GROUPS = ("0-5", "6-11", "12-14", "15-17", "18-25", "26-40", "41-60", "61+")
SERVICE_TYPES = ("shelter", "health", "legal", "psychosocial", "economic", "child_protection")
ANSWERS = ("penetration", "sexual_contact", "physical_assault", "forced_marriage", "denial_of_resources",
           "psychological_abuse")
RELATIONSHIPS = ("intimate_partner", "former_partner", "family", "caregiver", "acquaintance", "stranger",
                 "authority", "other", "unknown")
LOCATION_TYPES = ("home", "workplace", "school", "public", "online", "institution", "other")

text = validate.Length(min=1, max=200)


class Bool(fields.Boolean):
    """JSON booleans only: "yes", 1 or "true" are type errors, not a guess at what was meant."""

    truthy = {True}
    falsy = {False}


class SafeContact(Schema):
    # Optional: without it, contact is by phone when a number is given, else through the focal point.
    method = fields.String(load_default=None, allow_none=True,
                           validate=validate.OneOf(["phone", "sms", "in_person", "via_focal_point"]))
    notes = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))


class Survivor(Schema):
    name = fields.String(load_default=None, allow_none=True, validate=text)
    phone = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=3, max=32))
    address = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=500))
    age_group = fields.String(required=True, validate=validate.OneOf(AGE_GROUPS))
    sex = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(["female", "male", "other"]))
    disability = Bool(load_default=None, allow_none=True)
    language = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(["ky", "ru", "tg", "uz", "en"]))
    safe_contact = fields.Nested(SafeContact, load_default=None, allow_none=True)


class Answers(Schema):
    """A question not answered counts as "no" (SPEC §12: only the answers object itself is required)."""

    penetration = Bool(load_default=False)
    sexual_contact = Bool(load_default=False)
    physical_assault = Bool(load_default=False)
    forced_marriage = Bool(load_default=False)
    denial_of_resources = Bool(load_default=False)
    psychological_abuse = Bool(load_default=False)


class Incident(Schema):
    date = fields.Date(load_default=None, allow_none=True,
                       validate=validate.Range(min=__import__("datetime").date(1900, 1, 1)))
    answers = fields.Nested(Answers, required=True)
    narrative = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=20000))
    location_type = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(LOCATION_TYPES))
    immediate_danger = Bool(load_default=False)


class Perpetrator(Schema):
    name = fields.String(load_default=None, allow_none=True, validate=text)
    relationship = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(RELATIONSHIPS))
    details = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=5000))
    is_police_officer = Bool(load_default=False)


class ServicesConsent(fields.Field):
    """``true`` (any service type), ``false``, or a list of service types."""

    def _deserialize(self, value, attr, data, **kwargs):  # type: ignore[no-untyped-def]
        if isinstance(value, bool):
            return value
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            unknown = [v for v in value if v not in SERVICE_TYPES]
            if unknown:
                raise ValidationError(f"Use only these service types: {', '.join(SERVICE_TYPES)}.")
            return sorted(set(value))
        raise ValidationError("Give true, false or a list of service types.")


class Consent(Schema):
    """Consent is never presumed: a scope left out is a scope not given (SPEC §12: only the object is required)."""

    police = Bool(load_default=False)
    services = ServicesConsent(load_default=False)
    sms_contact = Bool(load_default=False)
    statistics = Bool(load_default=False)
    given_by = fields.String(load_default="survivor", validate=validate.OneOf(["survivor", "caregiver"]))


class Preferences(Schema):
    officer_gender = fields.String(load_default="any", validate=validate.OneOf(["female", "any"]))


class Submission(Schema):
    area = fields.String(required=True, validate=validate.Length(min=1, max=64))
    survivor = fields.Nested(Survivor, required=True)
    incident = fields.Nested(Incident, required=True)
    perpetrator = fields.Nested(Perpetrator, load_default=None, allow_none=True)
    consent = fields.Nested(Consent, required=True)
    preferences = fields.Nested(Preferences, load_default=None, allow_none=True)

    @validates_schema
    def _safe_contact_needs_means(self, data, **kwargs):  # type: ignore[no-untyped-def]
        contact = (data.get("survivor") or {}).get("safe_contact")
        if contact and contact.get("method") in ("phone", "sms") and not data["survivor"].get("phone"):
            raise ValidationError({"survivor": {"phone": ["Needed when the safe contact is by phone or SMS."]}})


class NoteIn(Schema):
    text = fields.String(required=True, validate=validate.Length(min=1, max=5000))


class DeclineIn(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=32))


class ProtectionOrderIn(Schema):
    issued_on = fields.Date(load_default=None)
    expires_on = fields.Date(required=True)


ACTION_TYPES = ("contact_attempt", "contact_made", "risk_assessment", "safety_plan", "statement_taken",
                "protection_order_issued", "protection_order_extended", "forensic_exam_referral",
                "service_referral", "rights_informed", "follow_up", "note")


class ActionIn(Schema):
    type = fields.String(required=True, validate=validate.OneOf(ACTION_TYPES))
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=5000))
    protection_order = fields.Nested(ProtectionOrderIn, load_default=None, allow_none=True)


class CloseIn(Schema):
    outcome = fields.String(required=True, validate=validate.Length(min=1, max=48))


class ReassignIn(Schema):
    officer_id = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=2**31 - 1))


class EmptyIn(Schema):
    pass
