"""Words for the code values shown on pages (types, outcomes, reasons, statuses), in every language."""
from __future__ import annotations

from flask import Flask
from flask_babel import lazy_gettext as _l

LABELS = {
    # GBV types
    "rape": _l("Rape"), "sexual_assault": _l("Sexual assault"), "physical_assault": _l("Physical assault"),
    "forced_marriage": _l("Forced marriage"), "denial_of_resources": _l("Denial of resources"),
    "psychological_abuse": _l("Psychological abuse"), "non_gbv": _l("Not GBV"),
    # flags
    "child": _l("Child"), "intimate_partner": _l("Intimate partner"), "clinical_urgent": _l("Health care within 72 h"),
    "clinical_soon": _l("Health care within 120 h"), "immediate_danger": _l("In danger now"),
    # case actions
    "contact_attempt": _l("Tried to contact her"), "contact_made": _l("Spoke with her"),
    "risk_assessment": _l("Risk assessment"), "safety_plan": _l("Safety plan"), "statement_taken": _l("Statement taken"),
    "protection_order_issued": _l("Protection order issued"), "protection_order_extended": _l("Protection order extended"),
    "forensic_exam_referral": _l("Referred for forensic examination"), "service_referral": _l("Referred to a service"),
    "rights_informed": _l("Informed of her rights and services"), "follow_up": _l("Follow-up"), "note": _l("Note"),
    "closure": _l("Closed"),
    # closure outcomes
    "services_provided": _l("Services provided"), "protection_order_in_place": _l("Protection order in place"),
    "referred_elsewhere": _l("Referred elsewhere"), "survivor_declined": _l("She declined further help"),
    "perpetrator_charged": _l("Perpetrator charged"), "no_further_action": _l("No further action"), "other": _l("Other"),
    # decline reasons
    "conflict_of_interest": _l("Conflict of interest"), "workload": _l("Too many cases"),
    "unavailable": _l("Not available"), "outside_competence": _l("Outside my competence"),
    # compliance statuses
    "met": _l("Met"), "met_late": _l("Met late"), "breached": _l("Missed"), "pending": _l("Pending"),
    "not_applicable": _l("Not applicable"),
    # service referral outcomes
    "referred": _l("Referred on"), "provided": _l("Provided"), "already_received": _l("Already received elsewhere"),
    "declined_by_survivor": _l("Declined by her"), "service_unavailable": _l("Service unavailable"),
    # break-glass reviews
    "justified": _l("Justified"), "unjustified": _l("Not justified"),
    # service types
    "shelter": _l("Shelter"), "health": _l("Health care"), "legal": _l("Legal aid"),
    "psychosocial": _l("Psychosocial support"), "economic": _l("Economic support"),
    "child_protection": _l("Child protection"),
    # service referral statuses
    "suggested": _l("Suggested"), "accepted": _l("Accepted"), "declined": _l("Declined"), "completed": _l("Completed"),
    # fields a service referral may share
    "survivor.name": _l("Her name"), "survivor.phone": _l("Her phone"), "survivor.address": _l("Her address"),
    "survivor.age_group": _l("Her age group"), "survivor.sex": _l("Her sex"),
    "survivor.disability": _l("Disability"), "survivor.language": _l("Her language"),
    "survivor.safe_contact": _l("How to contact her safely"), "incident.date": _l("Date of the incident"),
    "incident.narrative": _l("What happened"), "incident.location_type": _l("Type of place"),
    "incident.immediate_danger": _l("Whether she is in danger now"), "perpetrator.name": _l("Perpetrator's name"),
    "perpetrator.relationship": _l("Perpetrator's relationship to her"),
    "perpetrator.details": _l("Perpetrator's details"), "gbv_type": _l("Type of violence"),
    "flags": _l("Case flags"),
}


ROLE_NAMES = {"focal_point": _l("Focal point"), "officer": _l("Police officer"), "supervisor": _l("Police supervisor"),
              "service_provider": _l("Service provider"), "oversight": _l("Oversight"), "admin": _l("Administrator")}


def role_name(code: str | None) -> str:
    return "" if code is None else str(ROLE_NAMES.get(code, code.replace("_", " ")))


def label(code: str | None) -> str:
    if code is None:
        return ""
    return str(LABELS.get(code, code.replace("_", " ")))


def init_labels(app: Flask) -> None:
    app.jinja_env.filters["label"] = label
    app.jinja_env.filters["role_name"] = role_name
