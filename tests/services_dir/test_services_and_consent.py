"""Consent-scoped sharing with providers, the services-only path, the directory (SPEC §4, §6)."""
import json
import datetime as dt

import pytest
import time_machine
from sqlalchemy import select

from referral.audit.models import AuditEvent
from referral.extensions import db
from referral.referrals.models import Referral
from referral.services_dir.models import Consent, ServiceReferral
from referral.services_dir.services import SHAREABLE
from tests.factories import AreaFactory, OrganisationFactory
from tests.referrals.helpers import canaries, minimal, submission

ALL_SENSITIVE = ("survivor.name", "survivor.phone", "survivor.address", "incident.narrative", "perpetrator.name",
                 "perpetrator.details")


@pytest.fixture()
def providers(place, login_as):
    region = AreaFactory(kind="region")
    place["district"].parent = region
    shelter = OrganisationFactory(kind="provider", areas=[region], service_types=["shelter", "psychosocial"],
                                  coordinator=True)
    clinic = OrganisationFactory(kind="provider", areas=[place["district"]], service_types=["health"])
    far = OrganisationFactory(kind="provider", service_types=["health"])
    return {"shelter": shelter, "clinic": clinic, "far": far,
            "shelter_user": login_as("service_provider", organisation=shelter),
            "clinic_user": login_as("service_provider", organisation=clinic),
            "far_user": login_as("service_provider", organisation=far)}


def submit(client, headers, body):
    resp = client.post("/api/v1/referrals", json=body, headers=headers)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def accepted_case(client, place, people, officers, values=None, services=True):
    body = submission(place["district"].code, values or canaries())
    body["consent"]["services"] = services
    case = submit(client, people["focal"][1], body)
    assert client.post(f"/api/v1/referrals/{case['id']}/accept", headers=officers[0][1]).status_code == 200
    return case


def refer(client, case_id, headers, provider, service_type, share):
    return client.post(f"/api/v1/referrals/{case_id}/service-referrals", headers=headers,
                       json={"provider_id": provider.id, "service_type": service_type, "share": share})


def test_directory_walks_up_the_area_tree(client, place, providers, people):
    _f, headers = people["focal"]
    resp = client.get(f"/api/v1/services?area={place['village'].code}", headers=headers)
    codes = [i["code"] for i in resp.get_json()["items"]]
    assert codes == [providers["clinic"].code, providers["shelter"].code]  # nearest first
    health = client.get(f"/api/v1/services?area={place['village'].code}&type=health", headers=headers).get_json()
    assert [i["code"] for i in health["items"]] == [providers["clinic"].code]
    second = client.get(f"/api/v1/services?area={place['village'].code}&page=2&per_page=1", headers=headers).get_json()
    assert [i["code"] for i in second["items"]] == [providers["shelter"].code]
    assert (second["page"], second["per_page"], second["total"]) == (2, 1, 2)
    assert client.get(f"/api/v1/services?area={place['village'].code}&per_page=101", headers=headers).status_code == 422
    assert client.get("/api/v1/services?area=NOPE", headers=headers).status_code == 422
    assert client.get("/api/v1/services?area=X&type=spa", headers=headers).status_code == 422
    # Without an area (SPEC §12 writes ?area=&type= as filters): every active provider, by code.
    everyone = client.get("/api/v1/services", headers=headers).get_json()
    assert [i["code"] for i in everyone["items"]] == sorted(p.code for p in (providers["clinic"], providers["shelter"],
                                                                             providers["far"]))
    health_anywhere = client.get("/api/v1/services?type=health", headers=headers).get_json()
    assert {i["code"] for i in health_anywhere["items"]} == {providers["clinic"].code, providers["far"].code}


def test_submission_records_consent_per_scope(client, place, people):
    body = minimal(place["district"].code)
    body["consent"] = {"police": True, "services": ["health", "legal"], "sms_contact": False, "statistics": True,
                       "given_by": "caregiver"}
    case = submit(client, people["focal"][1], body)
    rows = {c.scope: c for c in db.session.scalars(select(Consent).where(Consent.referral_id == case["id"]))}
    assert rows["services:health"].granted and rows["services:legal"].granted
    assert not rows["services:shelter"].granted and not rows["sms_contact"].granted
    assert rows["police"].given_by.value == "caregiver"


@pytest.mark.parametrize("path", SHAREABLE)
def test_disclosure_matrix_every_field_reaches_only_its_provider(client, place, people, officers, providers,
                                                                 login_as, path):
    values = canaries()
    case = accepted_case(client, place, people, officers, values)
    resp = refer(client, case["id"], officers[0][1], providers["clinic"], "health", [path])
    assert resp.status_code == 201, resp.get_json()
    sr_id = resp.get_json()["id"]
    _u, clinic_h = providers["clinic_user"]
    seen = client.get(f"/api/v1/service-referrals/{sr_id}", headers=clinic_h)
    assert seen.status_code == 200
    fields = seen.get_json()["fields"]
    assert list(fields) == [path]
    text = seen.get_data(as_text=True)
    for other in ALL_SENSITIVE:
        if other != path:
            assert values[other] not in text, f"{other} leaked when sharing {path}"
    if path in ALL_SENSITIVE:
        assert fields[path] == values[path]
    # Every other role and every other provider: 404 for this service referral, and never the case itself.
    strangers = [providers["shelter_user"][1], providers["far_user"][1], people["focal"][1],
                 people["supervisor"][1], officers[0][1], login_as("oversight")[1], login_as("admin")[1]]
    for headers in strangers:
        assert client.get(f"/api/v1/service-referrals/{sr_id}", headers=headers).status_code == 404
    assert client.get(f"/api/v1/referrals/{case['id']}", headers=clinic_h).status_code == 404


def test_sharing_needs_consent_for_that_service_type(client, place, people, officers, providers):
    case = accepted_case(client, place, people, officers, services=["health"])
    refused = refer(client, case["id"], officers[0][1], providers["shelter"], "shelter", ["survivor.name"])
    assert refused.status_code == 422
    assert refused.get_json()["error"]["code"] == "consent_required"
    assert refer(client, case["id"], officers[0][1], providers["clinic"], "health", ["survivor.name"]).status_code == 201
    assert refer(client, case["id"], officers[0][1], providers["clinic"], "health", ["survivor.soul"]).status_code == 422
    assert refer(client, case["id"], officers[0][1], providers["far"], "health", ["survivor.name"]).status_code == 422
    denied = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "service_referral.create",
                                                         AuditEvent.outcome == "denied")).all()
    assert denied and "services:shelter" in denied[0].reason


def test_withdrawn_consent_ends_the_providers_access_at_once(client, place, people, officers, providers):
    case = accepted_case(client, place, people, officers)
    sr_id = refer(client, case["id"], officers[0][1], providers["clinic"], "health", ["survivor.name"]).get_json()["id"]
    _u, clinic_h = providers["clinic_user"]
    assert client.get(f"/api/v1/service-referrals/{sr_id}", headers=clinic_h).status_code == 200
    withdraw = client.post(f"/api/v1/referrals/{case['id']}/consents", headers=people["focal"][1],
                           json={"scope": "services:health", "granted": False})
    assert withdraw.status_code == 201
    assert client.get(f"/api/v1/service-referrals/{sr_id}", headers=clinic_h).status_code == 404
    assert client.get("/api/v1/service-referrals", headers=clinic_h).get_json()["total"] == 0
    assert client.post(f"/api/v1/service-referrals/{sr_id}/accept", headers=clinic_h).status_code == 404


def test_expired_consent_ends_access_when_it_expires(client, place, people, officers, providers):
    case = accepted_case(client, place, people, officers)
    now = dt.datetime.now(dt.UTC)
    renewed = client.post(f"/api/v1/referrals/{case['id']}/consents", headers=officers[0][1], json={
        "scope": "services:health", "granted": True, "expires_at": (now + dt.timedelta(hours=2)).isoformat()})
    assert renewed.status_code == 201
    sr_id = refer(client, case["id"], officers[0][1], providers["clinic"], "health", ["survivor.name"]).get_json()["id"]
    _u, clinic_h = providers["clinic_user"]
    assert client.get(f"/api/v1/service-referrals/{sr_id}", headers=clinic_h).status_code == 200
    with time_machine.travel(now + dt.timedelta(hours=3)):
        assert client.get(f"/api/v1/service-referrals/{sr_id}", headers=clinic_h).status_code == 404
    past = client.post(f"/api/v1/referrals/{case['id']}/consents", headers=officers[0][1], json={
        "scope": "services:health", "granted": True, "expires_at": (now - dt.timedelta(hours=1)).isoformat()})
    assert past.status_code == 422
    naive = client.post(f"/api/v1/referrals/{case['id']}/consents", headers=officers[0][1], json={
        "scope": "services:health", "granted": True, "expires_at": "2030-01-01T00:00:00"})
    assert naive.status_code == 422


def test_child_consent_assent_and_supervisor_override(client, place, people, officers, providers):
    body = minimal(place["district"].code)  # age 15-17: a child
    body["consent"]["given_by"] = "caregiver"
    case = submit(client, people["focal"][1], body)
    cid = case["id"]
    assent = client.post(f"/api/v1/referrals/{cid}/consents", headers=people["focal"][1],
                         json={"scope": "services:psychosocial", "granted": True, "given_by": "child_assent"})
    assert assent.status_code == 201 and assent.get_json()["given_by"] == "child_assent"
    # Only a supervisor overrides, only for a child, only with a reason (sealed).
    override = {"scope": "services:shelter", "granted": True, "given_by": "supervisor_override",
                "reason": "CanaryReason caregiver is the perpetrator"}
    assert client.post(f"/api/v1/referrals/{cid}/consents", headers=people["focal"][1], json=override).status_code == 403
    no_reason = {**override, "reason": None}
    assert client.post(f"/api/v1/referrals/{cid}/consents", headers=people["supervisor"][1],
                       json=no_reason).status_code == 422
    ok = client.post(f"/api/v1/referrals/{cid}/consents", headers=people["supervisor"][1], json=override)
    assert ok.status_code == 201
    row = db.session.scalar(select(Consent).where(Consent.referral_id == cid, Consent.given_by == "supervisor_override"))
    assert row.reason_sealed and b"CanaryReason" not in bytes(row.reason_sealed)
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "consent.change")).all()
    assert all("Canary" not in (e.reason or "") for e in events)
    adult = submit(client, people["focal"][1], submission(place["district"].code))
    assert client.post(f"/api/v1/referrals/{adult['id']}/consents", headers=people["supervisor"][1],
                       json=override).status_code == 422
    assert client.post(f"/api/v1/referrals/{adult['id']}/consents", headers=people["focal"][1],
                       json={"scope": "police", "granted": True, "given_by": "child_assent"}).status_code == 422


def test_provider_responds_and_the_case_timeline_shows_it(client, place, people, officers, providers):
    case = accepted_case(client, place, people, officers)
    sr_id = refer(client, case["id"], officers[0][1], providers["clinic"], "health",
                  ["survivor.name", "gbv_type"]).get_json()["id"]
    _u, clinic_h = providers["clinic_user"]
    listed = client.get("/api/v1/service-referrals", headers=clinic_h).get_json()
    assert listed["total"] == 1 and "fields" not in listed["items"][0]
    assert client.post(f"/api/v1/service-referrals/{sr_id}/complete", headers=clinic_h, json={}).status_code == 422
    assert client.post(f"/api/v1/service-referrals/{sr_id}/accept", headers=clinic_h).status_code == 200
    assert client.post(f"/api/v1/service-referrals/{sr_id}/decline", headers=clinic_h).status_code == 409
    assert client.post(f"/api/v1/service-referrals/{sr_id}/complete", headers=clinic_h,
                       json={"outcome": "maybe"}).status_code == 422
    done = client.post(f"/api/v1/service-referrals/{sr_id}/complete", headers=clinic_h,
                       json={"outcome": "provided", "note": "CanaryClinic PEP started"})
    assert done.status_code == 200 and done.get_json()["outcome"] == "provided"
    row = db.session.get(ServiceReferral, sr_id)
    assert b"CanaryClinic" not in bytes(row.note_sealed)
    timeline = client.get(f"/api/v1/referrals/{case['id']}", headers=officers[0][1]).get_json()["service_referrals"]
    assert timeline == [{"id": sr_id, "provider": providers["clinic"].code, "service_type": "health",
                         "status": "completed", "outcome": "provided", "share": ["gbv_type", "survivor.name"],
                         "note": "CanaryClinic PEP started"}]


POLICE_ROLES = ("officer", "supervisor")


def test_services_only_cases_are_invisible_to_every_police_role(client, place, people, officers, providers,
                                                                login_as, certify):
    body = submission(place["district"].code)
    body["consent"]["police"] = False
    body["consent"]["services"] = ["shelter"]
    case = submit(client, people["focal"][1], body)
    assert case["status"] == "services_only"
    row = db.session.get(Referral, case["id"])
    assert row.unit_id is None and row.coordinator_id == providers["shelter"].id
    police = [people["supervisor"][1], officers[0][1], officers[1][1]]
    boss, boss_h = login_as("supervisor", unit=place["unit"])
    police.append(boss_h)
    for headers in police:
        for path in ("", "/compliance"):
            assert client.get(f"/api/v1/referrals/{case['id']}{path}", headers=headers).status_code == 404
        for verb, payload in (("accept", None), ("actions", {"type": "note"}), ("reassign", {"officer_id": 1})):
            assert client.post(f"/api/v1/referrals/{case['id']}/{verb}", json=payload,
                               headers=headers).status_code in (403, 404)
        listed = client.get("/api/v1/referrals", headers=headers).get_json()
        assert case["id"] not in [i["id"] for i in listed["items"]]
    denied = db.session.scalars(select(AuditEvent).where(AuditEvent.object_id == case["id"],
                                                         AuditEvent.outcome == "denied")).all()
    assert len(denied) >= len(police)
    # The coordinating shelter already has it, with de-identified fields only.
    _u, shelter_h = providers["shelter_user"]
    coordination = client.get("/api/v1/service-referrals", headers=shelter_h).get_json()["items"]
    assert len(coordination) == 1 and coordination[0]["service_type"] == "shelter"
    shown = client.get(f"/api/v1/service-referrals/{coordination[0]['id']}", headers=shelter_h).get_json()
    assert set(shown["fields"]) == {"flags", "gbv_type", "survivor.age_group", "survivor.language"}
    # The focal point refers it to the coordinating shelter herself, within consent.
    sent = refer(client, case["id"], people["focal"][1], providers["shelter"], "shelter", ["survivor.name"])
    assert sent.status_code == 201
    assert client.get(f"/api/v1/service-referrals/{sent.get_json()['id']}", headers=shelter_h).status_code == 200


def test_clinical_urgency_creates_a_pending_health_suggestion(client, place, people, officers, providers):
    body = minimal(place["district"].code)
    body["incident"]["answers"]["penetration"] = True
    case = submit(client, people["focal"][1], body)
    suggestion = db.session.scalar(select(ServiceReferral).where(ServiceReferral.referral_id == case["id"]))
    assert suggestion.status.value == "suggested" and suggestion.provider_id == providers["clinic"].id
    _u, clinic_h = providers["clinic_user"]
    assert client.get("/api/v1/service-referrals", headers=clinic_h).get_json()["total"] == 0  # not sent yet
    assert client.get(f"/api/v1/service-referrals/{suggestion.id}", headers=clinic_h).status_code == 404


def test_a_full_read_gets_its_timeline_in_one_statement_with_the_rows_each_read_alone_gives(
        client, place, people, officers, providers):
    """The read's consents, service referrals, actions, protection orders, accept-by deadline and related cases
    come from one UNION ALL (referral.db.combine): each part's rows, types and order must be what its own
    statement gives."""
    from sqlalchemy import event

    from referral.db import combine, run_combined
    from referral.referrals.models import Referral
    from referral.referrals.services import related_params, timeline_statements

    values = canaries()
    case = accepted_case(client, place, people, officers, values=values)
    cid, officer_h = case["id"], officers[0][1]
    # Recorded out of their order (later first), so insertion order cannot pass for the statements' order.
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)
    for hours, kind, note in ((0, "risk_assessment", "CanaryRisk"), (1, "note", None), (2, "safety_plan", "CanaryPlan")):
        with time_machine.travel(later - dt.timedelta(hours=hours), tick=False):
            assert client.post(f"/api/v1/referrals/{cid}/actions", headers=officer_h,
                               json={"type": kind} | ({"note": note} if note else {})).status_code == 201
    assert client.post(f"/api/v1/referrals/{cid}/actions", headers=officer_h, json={
        "type": "protection_order_issued", "protection_order": {"expires_on": "2099-01-01"}}).status_code == 422
    today = dt.date.today()
    assert client.post(f"/api/v1/referrals/{cid}/actions", headers=officer_h, json={
        "type": "protection_order_issued", "protection_order": {
            "issued_on": today.isoformat(), "expires_on": (today + dt.timedelta(days=30)).isoformat()}}).status_code == 201
    assert refer(client, cid, officer_h, providers["clinic"], "health", ["gbv_type"]).status_code == 201
    assert refer(client, cid, officer_h, providers["shelter"], "shelter", ["survivor.name"]).status_code == 201
    for hours, text in ((1, "CanaryLaterNote"), (2, "CanaryEarlierNote")):  # the focal point's notes, also out of order
        with time_machine.travel(later - dt.timedelta(hours=hours), tick=False):
            assert client.post(f"/api/v1/referrals/{cid}/information", headers=people["focal"][1],
                               json={"text": text}).status_code == 201
    with time_machine.travel(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5), tick=False):  # before the others
        assert client.post(f"/api/v1/referrals/{cid}/consents", headers=people["focal"][1],
                           json={"scope": "sms_contact", "granted": False, "given_by": "survivor"}).status_code == 201
    offered = submit(client, people["focal"][1], submission(place["district"].code))  # an open offer: a deadline
    # Two more reports of the same survivor and perpetrator, and one of the perpetrator alone: related cases.
    for changes in ({}, {}, {"survivor.phone": canaries()["survivor.phone"]}):
        submit(client, people["focal"][1], submission(place["district"].code, {**canaries(), **{
            k: values[k] for k in ("survivor.phone", "perpetrator.name")}, **changes}))

    for case_id, with_deadline, related in ((cid, False, False), (offered["id"], True, False),
                                            (offered["id"], True, True), (cid, False, True), (cid, True, False)):
        params = {"id": case_id, **(related_params(db.session.get(Referral, case_id)) if related else {})}
        statements = timeline_statements(with_deadline, "phone" in params, "perpetrator" in params)
        alone = [[tuple(r) for r in db.session.execute(s, params)] for s in statements]
        statements_run = []
        listen = lambda *a: statements_run.append(a[2])  # noqa: E731
        event.listen(db.engine, "before_cursor_execute", listen)
        try:
            together = run_combined(db.session, combine(*statements), params)
        finally:
            event.remove(db.engine, "before_cursor_execute", listen)
        assert len(statements_run) == 1 and "UNION ALL" in statements_run[0]
        assert [[tuple(r) for r in part] for part in together] == alone
        assert [[type(v) for v in r] for part in together for r in part] == \
            [[type(v) for v in r] for part in alone for r in part]
        if case_id == cid and related:
            same_phone, same_perpetrator = alone[5:]
            assert len(same_phone) == 2 and len(same_perpetrator) == 3  # newest first, this case left out
            assert [r[0] for r in same_perpetrator[1:]] == [r[0] for r in same_phone]
    consents, services, actions, orders, notes = alone[:5]
    assert len(consents) >= 8 and len(services) == 2 and len(actions) == 4 and len(orders) == 1
    assert len(notes) == 2 and notes[0][1] < notes[1][1]  # oldest first, as they were added out of order
    assert [a[1].value for a in actions] == ["protection_order_issued", "safety_plan", "note", "risk_assessment"]
    assert consents[0][0] == "sms_contact"
    assert together[3][0].issued_on == today and together[1][0].provider == providers["clinic"].code


def test_combine_refuses_what_a_union_would_silently_drop():
    from referral.db import combine
    from referral.services_dir.models import Consent

    plain = select(Consent.scope).where(Consent.referral_id == "x")
    for broken in (plain.limit(1), plain.offset(1), plain.fetch(1), plain.distinct()):
        with pytest.raises(ValueError):
            combine(plain, broken)
    assert combine(plain, plain.order_by(Consent.id)).shapes[1][:2] == (1, 1)


def test_a_read_names_the_action_and_outcome_notes_it_decrypts(client, place, people, officers, providers,
                                                              login_as):
    """A case with no sealed field of its own (an SMS report) whose only content is an officer's action note
    and a provider's outcome note: the read discloses both, so its event names them and the case's
    disclosures list it."""
    body = minimal(place["district"].code)
    body["consent"]["services"] = True
    case = submit(client, people["focal"][1], body)
    officer_h = officers[0][1]
    assert client.post(f"/api/v1/referrals/{case['id']}/accept", headers=officer_h).status_code == 200
    _u, supervisor_h = people["supervisor"]

    def last_read() -> list[str]:
        client.get(f"/api/v1/referrals/{case['id']}", headers=supervisor_h)
        event = db.session.scalars(select(AuditEvent).where(AuditEvent.object_id == case["id"],
                                                            AuditEvent.action == "referral.read")
                                   .order_by(AuditEvent.seq.desc())).first()
        return json.loads(event.fields)

    assert last_read() == []
    assert client.post(f"/api/v1/referrals/{case['id']}/actions", headers=officer_h,
                       json={"type": "note", "note": "CanaryHideout street 5"}).status_code == 201
    assert last_read() == ["actions.note"]
    sr_id = refer(client, case["id"], officer_h, providers["clinic"], "health", []).get_json()["id"]
    _u, clinic_h = providers["clinic_user"]
    assert client.post(f"/api/v1/service-referrals/{sr_id}/accept", headers=clinic_h).status_code == 200
    assert client.post(f"/api/v1/service-referrals/{sr_id}/complete", headers=clinic_h,
                       json={"outcome": "provided", "note": "CanaryClinic seen"}).status_code == 200
    assert last_read() == ["actions.note", "service_referrals.note"]
    _a, auditor_h = login_as("oversight")
    shown = client.get(f"/api/v1/referrals/{case['id']}/disclosures?per_page=100", headers=auditor_h).get_json()
    supervisor_reads = [i["fields"] for i in shown["items"] if i["actor_id"] == people["supervisor"][0].id]
    assert sorted(supervisor_reads) == [["actions.note"], ["actions.note", "service_referrals.note"]]


def _consent(client, case_id, headers, scope, granted):
    return client.post(f"/api/v1/referrals/{case_id}/consents", headers=headers,
                       json={"scope": scope, "granted": granted})


@pytest.mark.parametrize("who", ["focal", "officer"])
def test_withdrawing_police_consent_takes_the_case_from_the_police_at_once(client, place, people, officers,
                                                                           providers, who):
    """SPEC §4: without police consent a case is services_only, never visible to police; a withdrawal stops
    future sharing. The officer who held it is told (a reference only) and loses it; the area's coordinating
    provider gets it."""
    from referral.notify.models import OutboxMessage

    case = accepted_case(client, place, people, officers)
    officer, officer_h = officers[0]
    assert client.get(f"/api/v1/referrals/{case['id']}", headers=officer_h).status_code == 200
    headers = people["focal"][1] if who == "focal" else officer_h
    assert _consent(client, case["id"], headers, "police", False).status_code == 201
    row = db.session.get(Referral, case["id"])
    assert row.status.value == "services_only" and row.assigned_officer_id is None
    assert row.unit_id == place["unit"].id  # still the unit's in its figures, never in its lists
    assert row.coordinator_id == providers["shelter"].id
    for police_h in (officer_h, people["supervisor"][1]):
        assert client.get(f"/api/v1/referrals/{case['id']}", headers=police_h).status_code == 404
        assert case["id"] not in [i["id"] for i in client.get("/api/v1/referrals", headers=police_h)
                                  .get_json()["items"]]
        assert client.post(f"/api/v1/referrals/{case['id']}/actions", headers=police_h,
                           json={"type": "note"}).status_code == 404
    told = db.session.scalars(select(OutboxMessage).where(OutboxMessage.user_id == officer.id,
                                                          OutboxMessage.template == "withdrawn")).all()
    assert len(told) == 1 and json.loads(told[0].params) == {"reference": case["reference"]}
    moved = db.session.scalar(select(AuditEvent).where(AuditEvent.object_id == case["id"],
                                                       AuditEvent.action == "referral.services_only"))
    assert moved.reason.startswith("police consent withdrawn")
    _u, shelter_h = providers["shelter_user"]
    assert client.get("/api/v1/service-referrals", headers=shelter_h).get_json()["total"] == 1
    # The focal point still follows it; a second withdrawal changes nothing more.
    assert client.get(f"/api/v1/referrals/{case['id']}", headers=people["focal"][1]).get_json()["status"] == \
        "services_only"
    assert _consent(client, case["id"], people["focal"][1], "police", False).status_code == 201
    assert client.get("/api/v1/service-referrals", headers=shelter_h).get_json()["total"] == 1


def test_withdrawing_police_consent_ends_open_offers(client, place, people, officers, providers):
    from referral.referrals.workflow_models import Offer

    case = submit(client, people["focal"][1], submission(place["district"].code))
    assert case["status"] == "offered"
    assert _consent(client, case["id"], people["focal"][1], "police", False).status_code == 201
    offers = db.session.scalars(select(Offer).where(Offer.referral_id == case["id"])).all()
    assert offers and {o.status.value for o in offers} == {"cancelled"}
    assert client.post(f"/api/v1/referrals/{case['id']}/accept", headers=officers[0][1]).status_code == 404


def test_police_consent_cannot_move_a_services_only_case_to_the_police(client, place, people, providers):
    body = submission(place["district"].code)
    body["consent"]["police"] = False
    case = submit(client, people["focal"][1], body)
    refused = _consent(client, case["id"], people["focal"][1], "police", True)
    assert refused.status_code == 409 and "new referral" in refused.get_json()["error"]["message"]
    assert db.session.get(Referral, case["id"]).status.value == "services_only"
    assert db.session.scalar(select(Consent).where(Consent.referral_id == case["id"], Consent.scope == "police")
                             .order_by(Consent.id.desc())).granted is False


def test_a_closed_case_stays_closed_when_police_consent_is_withdrawn(client, place, people, officers, providers):
    case = accepted_case(client, place, people, officers)
    row = db.session.get(Referral, case["id"])
    from referral.referrals.models import Status

    row.status = Status.closed
    db.session.flush()
    assert _consent(client, case["id"], people["focal"][1], "police", False).status_code == 201
    assert db.session.get(Referral, case["id"]).status.value == "closed"


def test_a_unit_keeps_its_figures_and_no_clock_runs_on_after_the_police_lose_a_case(client, place, people, officers,
                                                                                  providers, login_as, runner):
    """The unit's compliance keeps what happened while it held the case (an acceptance 30 h late, a first
    contact never made); the police's later steps are owed by nobody once the survivor withdrew her consent."""
    from referral.standards.models import StepStatus

    assert runner.invoke(args=["standards", "load"]).exit_code == 0
    t0 = dt.datetime.now(dt.UTC) - dt.timedelta(hours=50)  # the fixtures' tokens last 12 h from now
    with time_machine.travel(t0, tick=False) as clock:
        case = submit(client, people["focal"][1], submission(place["district"].code))
        clock.shift(dt.timedelta(hours=30))  # a day to accept: 30 h is late
        for _o, headers in officers:
            if client.post(f"/api/v1/referrals/{case['id']}/accept", headers=headers).status_code == 200:
                break
        clock.shift(dt.timedelta(hours=30))  # no contact within a day of accepting: a miss of the unit's
        assert _consent(client, case["id"], people["focal"][1], "police", False).status_code == 201
        db.session.commit()
    with time_machine.travel(t0 + dt.timedelta(days=60), tick=False):
        _later, later_h = login_as("supervisor", unit=place["unit"])
        summary = client.get(f"/api/v1/compliance/summary?unit={place['unit'].code}", headers=later_h).get_json()
    assert summary["cases"] == 1, summary
    assert summary["median_hours_to_accept"] == 30.0  # the late acceptance stays the unit's
    assert summary["steps"]["accept"].get("met_late") == 1, summary
    late = t0 + dt.timedelta(days=60)
    rows = {code: "breached" if breaches_at is not None and breaches_at <= late else status  # as readers judge
            for code, status, breaches_at in db.session.execute(
                select(StepStatus.step_code, StepStatus.status, StepStatus.breaches_at)
                .where(StepStatus.referral_id == case["id"]))}
    assert rows["first_contact"] == "breached"  # due while the unit held the case: still the unit's
    assert rows["follow_up_30"] == rows["follow_up_7"] == rows["safety_plan"] == "not_applicable"
    assert rows["closure_checklist"] == "not_applicable"
    assert case["id"] not in [i["id"] for i in client.get("/api/v1/referrals", headers=people["supervisor"][1])
                              .get_json()["items"]]


@pytest.mark.parametrize("given_by", ["caregiver", "child_assent"])
def test_a_childs_case_stays_with_the_police_on_a_caregivers_withdrawal(client, place, people, officers, providers,
                                                                       given_by):
    """The caregiver may be the one she needs protecting from: the supervisor decides (SPEC §4 best interest),
    and is told; the case is not hidden from the police by the withdrawal."""
    from referral.notify.models import OutboxMessage

    body = submission(place["district"].code)
    body["survivor"]["age_group"] = "12-14"
    body["consent"]["given_by"] = "caregiver"
    case = submit(client, people["focal"][1], body)
    for _o, headers in officers:
        if client.post(f"/api/v1/referrals/{case['id']}/accept", headers=headers).status_code == 200:
            break
    resp = client.post(f"/api/v1/referrals/{case['id']}/consents", headers=people["focal"][1],
                       json={"scope": "police", "granted": False, "given_by": given_by})
    assert resp.status_code == 201
    assert db.session.get(Referral, case["id"]).status.value == "accepted"
    assert client.get(f"/api/v1/referrals/{case['id']}", headers=people["supervisor"][1]).status_code == 200
    told = db.session.scalars(select(OutboxMessage).where(OutboxMessage.template == "escalation",
                                                          OutboxMessage.user_id == people["supervisor"][0].id)).all()
    assert len(told) == 1
    # Her own (a survivor's) withdrawal of an adult case is another matter: see the tests above.


def test_a_case_that_never_went_to_the_police_owes_no_police_step(client, place, people, providers, runner):
    from referral.standards.models import StepStatus

    assert runner.invoke(args=["standards", "load"]).exit_code == 0
    body = submission(place["district"].code)
    body["consent"]["police"] = False
    case = submit(client, people["focal"][1], body)
    db.session.commit()
    late = dt.datetime.now(dt.UTC) + dt.timedelta(days=60)
    rows = db.session.execute(select(StepStatus.step_code, StepStatus.status, StepStatus.breaches_at)
                              .where(StepStatus.referral_id == case["id"])).all()
    assert rows and not [code for code, status, breaches_at in rows
                         if status == "breached" or (breaches_at is not None and breaches_at <= late)]
