"""Every step and status of the default standard, with fixed times (a table of scenarios)."""
import datetime as dt
from pathlib import Path

import pytest

from config.settings import PROJECT_ROOT
from referral.standards.compliance import CaseFacts, evaluate, missing_before_closure
from referral.standards.loader import read_standard

T0 = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)
DEFAULT = read_standard(PROJECT_ROOT / "config" / "standards" / "default.yaml")


V2 = read_standard(PROJECT_ROOT / "config" / "standards" / "default-v2.yaml")


def facts(*, accepted=None, actions=(), closed=None, flags=(), gbv="physical_assault", relationship=None,
          age="26-40", urgent=False, incident=None, withdrawn=False, services=()):
    return CaseFacts(submitted_at=T0, offered_at=T0, accepted_at=accepted, incident_date=incident, closed_at=closed,
                     flags=tuple(flags), gbv_type=gbv, relationship=relationship, age_group=age, urgent=urgent,
                     actions=tuple(actions), withdrawn=withdrawn, services=tuple(services))


def status(step, case, now):
    return {r.code: r for r in evaluate(DEFAULT, case, now)}[step].status


# (step, case facts, now, expected)
SCENARIOS = [
    # accept: 24 h, or 1 h when urgent
    ("accept", facts(), T0 + 23 * H, "pending"),
    ("accept", facts(), T0 + 25 * H, "breached"),
    ("accept", facts(accepted=T0 + 2 * H), T0 + 3 * H, "met"),
    ("accept", facts(accepted=T0 + 2 * H, urgent=True), T0 + 3 * H, "met_late"),
    ("accept", facts(urgent=True), T0 + 2 * H, "breached"),
    # first contact: 24 h after acceptance, 2 h when urgent; pending until accepted
    ("first_contact", facts(), T0 + 100 * H, "pending"),
    ("first_contact", facts(accepted=T0, actions=[("contact_made", T0 + 3 * H)]), T0 + 4 * H, "met"),
    ("first_contact", facts(accepted=T0, urgent=True, actions=[("contact_made", T0 + 3 * H)]), T0 + 4 * H,
     "met_late"),
    ("first_contact", facts(accepted=T0, actions=[("contact_attempt", T0 + H)]), T0 + 25 * H, "breached"),
    # risk assessment before any other action (contact and notes do not count)
    ("risk_assessment_first", facts(accepted=T0), T0 + H, "pending"),
    ("risk_assessment_first", facts(accepted=T0, actions=[("contact_made", T0 + H), ("risk_assessment", T0 + 2 * H),
                                                          ("safety_plan", T0 + 3 * H)]), T0 + 4 * H, "met"),
    ("risk_assessment_first", facts(accepted=T0, actions=[("safety_plan", T0 + H), ("risk_assessment", T0 + 2 * H)]),
     T0 + 4 * H, "breached"),
    # rights informed within 48 h of acceptance
    ("rights_informed", facts(accepted=T0, actions=[("rights_informed", T0 + 47 * H)]), T0 + 50 * H, "met"),
    ("rights_informed", facts(accepted=T0), T0 + 49 * H, "breached"),
    # health referral within 72 h of the incident, only for clinical_urgent
    ("health_referral", facts(accepted=T0), T0 + 200 * H, "not_applicable"),
    ("health_referral", facts(flags=["clinical_urgent"], gbv="rape", incident=T0.date(), accepted=T0,
                              actions=[("service_referral", T0 + 10 * H)]), T0 + 11 * H, "met"),
    ("health_referral", facts(flags=["clinical_urgent"], gbv="rape", incident=T0.date(), accepted=T0,
                              actions=[("forensic_exam_referral", T0 + 90 * H)]), T0 + 91 * H, "met_late"),
    ("health_referral", facts(flags=["clinical_urgent"], gbv="rape", incident=T0.date()), T0 + 90 * H, "breached"),
    # protection order considered: only intimate partner or family violence
    ("protection_order_considered", facts(accepted=T0), T0 + 100 * H, "not_applicable"),
    ("protection_order_considered", facts(relationship="family", accepted=T0,
                                          actions=[("protection_order_issued", T0 + 5 * H)]), T0 + 6 * H, "met"),
    ("protection_order_considered", facts(relationship="intimate_partner", accepted=T0), T0 + 73 * H, "breached"),
    # safety plan within 7 days
    ("safety_plan", facts(accepted=T0, actions=[("safety_plan", T0 + 100 * H)]), T0 + 101 * H, "met"),
    ("safety_plan", facts(accepted=T0), T0 + 169 * H, "breached"),
    # follow-up at 7 days: only a follow-up inside the window counts
    ("follow_up_7", facts(accepted=T0, actions=[("follow_up", T0 + 24 * H)]), T0 + 100 * H, "pending"),
    ("follow_up_7", facts(accepted=T0, actions=[("follow_up", T0 + 24 * H)]), T0 + 217 * H, "breached"),
    ("follow_up_7", facts(accepted=T0, actions=[("follow_up", T0 + 170 * H)]), T0 + 171 * H, "met"),
    ("follow_up_30", facts(accepted=T0, actions=[("follow_up", T0 + 170 * H), ("follow_up", T0 + 700 * H)]),
     T0 + 701 * H, "met"),
    ("follow_up_30", facts(accepted=T0, actions=[("follow_up", T0 + 800 * H)]), T0 + 801 * H, "met_late"),
    # a closed case cannot do a step that was not yet due — not even long after
    ("follow_up_30", facts(accepted=T0, closed=T0 + 200 * H), T0 + 201 * H, "not_applicable"),
    ("follow_up_7", facts(accepted=T0, closed=T0 + 100 * H), T0 + 3000 * H, "not_applicable"),
    # a case withdrawn before acceptance was due owes nothing
    ("accept", facts(closed=T0 + H, withdrawn=True), T0 + 300 * H, "not_applicable"),
    ("closure_checklist", facts(accepted=T0, closed=T0 + 5 * H, withdrawn=True), T0 + 6 * H, "not_applicable"),
    # closure checklist
    ("closure_checklist", facts(accepted=T0), T0 + H, "pending"),
    ("closure_checklist", facts(accepted=T0, closed=T0 + 50 * H, actions=[
        ("risk_assessment", T0 + H), ("rights_informed", T0 + 2 * H), ("safety_plan", T0 + 3 * H)]),
     T0 + 51 * H, "met"),
    ("closure_checklist", facts(accepted=T0, closed=T0 + 50 * H, actions=[("risk_assessment", T0 + H)]),
     T0 + 51 * H, "breached"),
]


@pytest.mark.parametrize("step, case, now, expected", SCENARIOS,
                         ids=[f"{s[0]}-{i}-{s[3]}" for i, s in enumerate(SCENARIOS)])
def test_step_status(step, case, now, expected):
    assert status(step, case, now) == expected


def test_every_status_and_step_appears_in_the_table():
    steps = {s["code"] for s in DEFAULT["steps"]}
    assert {s[0] for s in SCENARIOS} == steps
    assert {s[3] for s in SCENARIOS} == {"met", "met_late", "breached", "pending", "not_applicable"}


RAPE = {"flags": ["clinical_urgent", "clinical_soon"], "gbv": "rape", "incident": T0.date(), "accepted": T0}
LATE = {"flags": ["clinical_soon"], "gbv": "rape", "incident": (T0 - 100 * H).date(), "accepted": T0}
# Version 2: a health service referral sent through Amanat meets the health steps (another type does not),
# and the emergency-contraception window has its own step (SPEC §3.2: both clinical flags force a health offer).
V2_SCENARIOS = [
    ("health_referral", facts(**RAPE, services=[("service_referral:health", T0 + 10 * H)]), T0 + 11 * H, "met"),
    ("health_referral", facts(**RAPE, services=[("service_referral:shelter", T0 + 10 * H)]), T0 + 90 * H,
     "breached"),
    ("health_referral", facts(**RAPE, actions=[("service_referral", T0 + 10 * H)]), T0 + 11 * H, "met"),
    # (the clocks run from the end of the incident's day, T0 + 16 h)
    ("health_referral", facts(**RAPE, services=[("service_referral:health", T0 + 95 * H)]), T0 + 96 * H, "met_late"),
    ("health_referral", facts(**LATE), T0 + H, "not_applicable"),
    ("health_referral_soon", facts(**LATE), T0 + H, "pending"),
    ("health_referral_soon", facts(**LATE, services=[("service_referral:health", T0 + 2 * H)]), T0 + 3 * H, "met"),
    ("health_referral_soon", facts(**RAPE), T0 + 130 * H, "pending"),
    ("health_referral_soon", facts(**RAPE), T0 + 137 * H, "breached"),
    ("health_referral_soon", facts(accepted=T0), T0 + 200 * H, "not_applicable"),
    # A service referral is not an officer's action: it does not break "risk assessment first".
    ("risk_assessment_first", facts(accepted=T0, services=[("service_referral:health", T0 + H)],
                                    actions=[("risk_assessment", T0 + 2 * H)]), T0 + 3 * H, "met"),
]


@pytest.mark.parametrize("step, case, now, expected", V2_SCENARIOS,
                         ids=[f"{s[0]}-{i}-{s[3]}" for i, s in enumerate(V2_SCENARIOS)])
def test_version_2_health_steps(step, case, now, expected):
    assert {r.code: r for r in evaluate(V2, case, now)}[step].status == expected


def test_version_1_keeps_its_meaning():
    """A published version never changes: under version 1 only the officer's recorded action counts."""
    case = facts(**RAPE, services=[("service_referral:health", T0 + 10 * H)])
    assert status("health_referral", case, T0 + 90 * H) == "breached"
    assert "health_referral_soon" not in {s["code"] for s in DEFAULT["steps"]}


def test_every_country_has_a_version_2_that_differs_only_in_the_health_steps():
    for name in ("default", "kyrgyzstan", "uzbekistan"):
        v1 = read_standard(PROJECT_ROOT / "config" / "standards" / f"{name}.yaml")
        v2 = read_standard(PROJECT_ROOT / "config" / "standards" / f"{name}-v2.yaml")
        assert (v1["code"], v1["version"], v2["code"], v2["version"]) == (v2["code"], 1, v1["code"], 2)
        assert v2["effective_from"] > v1["effective_from"]
        health = {"health_referral", "health_referral_soon"}
        assert [s for s in v1["steps"] if s["code"] not in health] == [s for s in v2["steps"] if s["code"] not in health]
        assert {k: v for k, v in v2["settings"].items() if k != "health_referral_soon_hours"} == v1["settings"]


def test_missing_before_closure_names_the_undone_steps():
    case = facts(accepted=T0, actions=[("safety_plan", T0 + H), ("risk_assessment", T0 + 2 * H)])
    # Risk assessment came second (the order step is breached) but it was done: only rights remain.
    assert missing_before_closure(DEFAULT, case, T0 + 3 * H) == ["rights_informed"]


def test_country_variants_encode_protection_orders_as_settings():
    kg = read_standard(PROJECT_ROOT / "config" / "standards" / "kyrgyzstan.yaml")
    uz = read_standard(PROJECT_ROOT / "config" / "standards" / "uzbekistan.yaml")
    for doc, days in ((kg, 15), (uz, 30)):
        step = next(s for s in doc["steps"] if s["code"] == "protection_order_issued")
        assert step["deadline"] == "protection_order_issue_hours"
        assert doc["settings"]["protection_order_issue_hours"] == 24
        assert doc["settings"]["protection_order_days"] == days
    uz_case = facts(relationship="intimate_partner", accepted=T0 + 2 * H,
                    actions=[("protection_order_issued", T0 + 30 * H)])
    result = {r.code: r for r in evaluate(uz, uz_case, T0 + 31 * H)}["protection_order_issued"]
    assert result.status == "met_late" and result.due_at == T0 + 24 * H   # counted from submission


@pytest.mark.parametrize("broken, message", [
    ({"steps": []}, "steps"),
    ({"steps": [{"code": "x", "name": "X", "event": "submitted", "deadline": "nope", "satisfied_by": ["note"]}]},
     "unknown setting"),
    ({"steps": [{"code": "x", "name": "X", "event": "never", "deadline_hours": 1, "satisfied_by": ["note"]}]},
     "event"),
    ({"steps": [{"code": "x", "name": "X", "event": "submitted", "deadline_hours": 1, "satisfied_by": ["dance"]}]},
     "satisfied_by"),
    ({"steps": [{"code": "c", "name": "C", "rule": "closure", "requires": ["ghost"]}]}, "unknown steps"),
    ({"steps": [{"code": "c", "name": "C", "rule": "closure", "requires": ["c"]}]}, "unknown steps"),
    ({"steps": [{"code": "x", "name": "X", "event": "submitted", "deadline_hours": 1e11, "satisfied_by": ["note"]}]},
     "deadline_hours"),
])
def test_invalid_standards_are_refused_clearly(tmp_path, broken, message):
    import yaml

    from referral.errors import ValidationFailed

    doc = {"code": "T", "version": 1, "name": "T", "effective_from": "2026-01-01", "settings": {}, **broken}
    path = Path(tmp_path / "bad.yaml")
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ValidationFailed) as err:
        read_standard(path)
    assert message in str(err.value.fields)
