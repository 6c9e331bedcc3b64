"""Submitting and reading cases with sealed fields (issue 3; the workflow builds on it)."""
import pytest
from sqlalchemy import func, select

from referral.audit.models import AuditEvent
from referral.extensions import db
from referral.referrals.models import SEALED_FIELDS, Referral, Status
from tests.referrals.helpers import SENSITIVE_PATHS, canaries, minimal, submission


def events(action, object_id=None):
    query = select(AuditEvent).where(AuditEvent.action == action)
    if object_id is not None:
        query = query.where(AuditEvent.object_id == str(object_id))
    return db.session.scalars(query.order_by(AuditEvent.seq)).all()


def submit(client, headers, body):
    return client.post("/api/v1/referrals", json=body, headers=headers)


def test_submission_is_stored_sealed_and_answered_without_content(client, place, people):
    _focal, headers = people["focal"]
    values = canaries()
    resp = submit(client, headers, submission(place["village"].code, values))
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert set(body) == {"id", "reference", "status", "gbv_type", "flags"}
    assert body["status"] == "escalated"  # no certified officer in this unit yet
    assert body["gbv_type"] == "physical_assault" and body["flags"] == ["intimate_partner"]
    assert body["reference"].startswith("R-") and len(body["reference"]) == 11
    assert not any(v in resp.get_data(as_text=True) for v in values.values())
    row = db.session.get(Referral, body["id"])
    assert row.unit_id == place["unit"].id  # found by walking up from the village
    assert row.data_key_wrapped and row.kek_version == 1
    for column in SEALED_FIELDS.values():
        blob = bytes(getattr(row, column))
        assert blob[0] == 1
        assert not any(v.encode() in blob for v in values.values())
    assert row.survivor_phone_bidx and row.perpetrator_bidx
    created = events("referral.create", body["id"])
    assert len(created) == 1 and created[0].outcome == "allowed"
    assert sorted(eval(created[0].fields.replace("null", "None"))) == sorted(SENSITIVE_PATHS)


def test_references_are_random_and_distinct(client, place, people):
    _focal, headers = people["focal"]
    refs = {submit(client, headers, minimal(place["district"].code)).get_json()["reference"] for _ in range(5)}
    assert len(refs) == 5
    assert not any(ch in "".join(refs).replace("R-", "") for ch in "01ILO")


def test_a_drawn_reference_already_taken_is_drawn_again(client, place, people, monkeypatch):
    """The reference is checked in the submission's first statement; one already a case's is drawn again
    (and checked again) until a free one comes, never filed twice or refused."""
    from referral.referrals import services

    _focal, headers = people["focal"]
    first = submit(client, headers, minimal(place["district"].code)).get_json()["reference"]
    draws = iter([first, first, "R-2345-6789"])
    monkeypatch.setattr(services, "new_reference", lambda: next(draws))
    resp = submit(client, headers, minimal(place["district"].code))
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["reference"] == "R-2345-6789"
    assert next(draws, None) is None  # the second draw of the taken one was checked too
    assert db.session.scalar(select(func.count()).select_from(Referral).where(Referral.reference == first)) == 1


def test_minimal_submission_routes_contact_through_the_focal_point(client, place, people):
    _focal, headers = people["focal"]
    resp = submit(client, headers, minimal(place["district"].code))
    assert resp.status_code == 201
    row = db.session.get(Referral, resp.get_json()["id"])
    assert row.safe_contact_method == "via_focal_point"
    assert row.survivor_name_sealed is None


def test_only_the_four_fields_spec_names_are_required(client, place, people, officers):
    """SPEC §12: only area, survivor.age_group, incident.answers and consent are required. An answer left out
    is "no"; a consent scope left out is not given (never presumed); a safe contact may come without a method."""
    _focal, headers = people["focal"]
    smallest = {"area": place["district"].code, "survivor": {"age_group": "26-40"},
                "incident": {"answers": {"physical_assault": True}}, "consent": {"police": True}}
    resp = submit(client, headers, smallest)
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["gbv_type"] == "physical_assault" and resp.get_json()["status"] == "offered"
    row = db.session.get(Referral, resp.get_json()["id"])
    from referral.services_dir.consent import is_active

    assert is_active(db.session, row.id, "police")
    assert not any(is_active(db.session, row.id, s) for s in ("sms_contact", "statistics", "services:health"))
    nothing = submit(client, headers, {"area": place["district"].code, "survivor": {"age_group": "26-40"},
                                       "incident": {"answers": {}}, "consent": {}})
    assert nothing.status_code == 201 and nothing.get_json()["gbv_type"] == "non_gbv"
    assert nothing.get_json()["status"] == "services_only"  # no police consent given: never presumed
    contact = submit(client, headers, {**smallest, "survivor": {"age_group": "26-40",
                                                                 "safe_contact": {"notes": "after 6 pm"}}})
    assert contact.status_code == 201, contact.get_json()
    assert db.session.get(Referral, contact.get_json()["id"]).safe_contact_method == "via_focal_point"
    for missing in ({"survivor": {}}, {"incident": {}}, {"survivor": None}):
        body = {**smallest, **missing}
        assert submit(client, headers, body).status_code == 422


@pytest.mark.parametrize("mutate, field", [
    (lambda b: b.update(area="NO-SUCH-AREA"), "area"),
    (lambda b: b.pop("consent"), "consent"),
    (lambda b: b["survivor"].update(age_group="40s"), "survivor"),
    (lambda b: b["survivor"].update(favourite_colour="red"), "survivor"),
    (lambda b: b.update(extra=1), "extra"),
    (lambda b: b["incident"]["answers"].update(penetration="yes"), "incident"),
    (lambda b: b["consent"].update(services=["spa"]), "consent"),
    (lambda b: b["survivor"].update(phone="not a phone"), "survivor"),
    (lambda b: b["survivor"].update(phone=None), "survivor"),  # SMS contact without a number
])
def test_bad_submissions_get_field_errors_and_store_nothing(client, place, people, mutate, field):
    _focal, headers = people["focal"]
    values = canaries()
    body = submission(place["district"].code, values)
    mutate(body)
    resp = submit(client, headers, body)
    assert resp.status_code == 422, resp.get_json()
    assert field in resp.get_json()["error"]["fields"]
    assert not any(v in resp.get_data(as_text=True) for v in values.values())
    assert db.session.scalar(select(Referral).limit(1)) is None


@pytest.mark.parametrize("role", ["officer", "supervisor", "service_provider", "oversight", "admin"])
def test_only_focal_points_submit(client, place, login_as, role):
    _user, headers = login_as(role)
    assert submit(client, headers, minimal(place["district"].code)).status_code == 403
    assert events("access.denied")[-1].outcome == "denied"


def test_focal_point_sees_status_only_and_supervisor_sees_content(client, place, people):
    _focal, focal_h = people["focal"]
    supervisor, sup_h = people["supervisor"]
    values = canaries()
    case_id = submit(client, focal_h, submission(place["district"].code, values)).get_json()["id"]

    mine = client.get(f"/api/v1/referrals/{case_id}", headers=focal_h)
    assert mine.status_code == 200
    assert set(mine.get_json()) == {"id", "reference", "status", "created_at"}
    assert mine.headers["Cache-Control"] == "no-store"

    full = client.get(f"/api/v1/referrals/{case_id}", headers=sup_h)
    assert full.status_code == 200
    body = full.get_json()
    assert body["survivor"]["name"] == values["survivor.name"]
    assert body["survivor"]["phone"] == values["survivor.phone"]
    assert body["incident"]["narrative"] == values["incident.narrative"]
    assert body["perpetrator"]["details"] == values["perpetrator.details"]
    assert body["survivor"]["safe_contact"] == {"method": "sms", "notes": values["survivor.safe_contact.notes"]}
    read = events("referral.read", case_id)
    assert [e.actor_id for e in read] == [_focal.id, supervisor.id]
    assert read[0].fields == '["reference","status"]'
    assert set(eval(read[1].fields)) == set(SENSITIVE_PATHS)
    assert all(e.request_id and e.source_ip and e.actor_role for e in read)


@pytest.mark.parametrize("role", ["officer", "supervisor", "service_provider", "oversight", "admin", "focal_point"])
def test_anyone_else_gets_404_and_a_denied_event(client, place, people, login_as, role):
    _focal, focal_h = people["focal"]
    case_id = submit(client, focal_h, minimal(place["district"].code)).get_json()["id"]
    stranger, headers = login_as(role)  # another unit / another group / no case rights
    resp = client.get(f"/api/v1/referrals/{case_id}", headers=headers)
    assert resp.status_code == 404  # never 403: the case does not exist for them
    denied = [e for e in db.session.scalars(select(AuditEvent).where(AuditEvent.actor_id == stranger.id))
              if e.outcome == "denied"]
    assert denied, "a refused look must leave a trace"
    assert any(e.object_id == case_id for e in denied)
    for bogus in ("00000000-0000-0000-0000-000000000000", "ab%00cd", "x" * 500):
        missing = client.get(f"/api/v1/referrals/{bogus}", headers=headers)
        assert missing.status_code == 404 and missing.get_json() == resp.get_json()


def test_lists_show_stage_only(client, place, people):
    _focal, focal_h = people["focal"]
    _sup, sup_h = people["supervisor"]
    values = canaries()
    submit(client, focal_h, submission(place["district"].code, values))
    for headers in (focal_h, sup_h):
        resp = client.get("/api/v1/referrals", headers=headers)
        assert resp.status_code == 200 and resp.get_json()["total"] == 1
        assert not any(v in resp.get_data(as_text=True) for v in values.values())


def test_focal_point_adds_information_sealed(client, place, people):
    focal, focal_h = people["focal"]
    _sup, sup_h = people["supervisor"]
    case_id = submit(client, focal_h, minimal(place["district"].code)).get_json()["id"]
    resp = client.post(f"/api/v1/referrals/{case_id}/information", json={"text": "CanaryNote she moved"},
                       headers=focal_h)
    assert resp.status_code == 201
    assert "Canary" not in resp.get_data(as_text=True)
    body = client.get(f"/api/v1/referrals/{case_id}", headers=sup_h).get_json()
    assert [n["text"] for n in body["notes"]] == ["CanaryNote she moved"]
    other, other_h = people["supervisor"]
    assert client.post(f"/api/v1/referrals/{case_id}/information", json={"text": "x"}, headers=other_h).status_code == 403
    assert client.post(f"/api/v1/referrals/{case_id}/information", json={"text": ""}, headers=focal_h).status_code == 422


def test_crypto_erase_makes_the_case_unreadable_for_good(client, place, people):
    from referral.referrals.crypto import crypto_erase

    _focal, focal_h = people["focal"]
    _sup, sup_h = people["supervisor"]
    case_id = submit(client, focal_h, submission(place["district"].code)).get_json()["id"]
    row = db.session.get(Referral, case_id)
    crypto_erase(db.session, None, row, reason="retention period over")
    db.session.commit()
    db.session.refresh(row)
    assert row.data_key_wrapped is None and row.erased_at is not None
    assert all(getattr(row, c) is None for c in SEALED_FIELDS.values())
    body = client.get(f"/api/v1/referrals/{case_id}", headers=sup_h).get_json()
    assert body["erased"] is True and body["survivor"]["name"] is None
    assert body["status"] == Status.escalated.value
    assert events("referral.crypto_erase", case_id)


def test_a_ciphertext_moved_to_another_case_is_an_audited_integrity_error(client, app, place, people, monkeypatch):
    _focal, focal_h = people["focal"]
    _sup, sup_h = people["supervisor"]
    values = canaries()
    first = submit(client, focal_h, submission(place["district"].code, values)).get_json()["id"]
    second = submit(client, focal_h, submission(place["district"].code)).get_json()["id"]
    a, b = db.session.get(Referral, first), db.session.get(Referral, second)
    b.narrative_sealed = a.narrative_sealed  # an insider copies a ciphertext across
    db.session.commit()
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)
    resp = client.get(f"/api/v1/referrals/{second}", headers=sup_h)
    assert resp.status_code == 500
    assert resp.get_json()["error"]["code"] == "integrity_error"
    assert values["incident.narrative"] not in resp.get_data(as_text=True)
    failure = events("integrity.failure", second)
    assert len(failure) == 1 and failure[0].outcome == "error"


def test_blind_indexes_link_repeat_perpetrators_and_phones_for_entitled_readers(client, place, people, login_as):
    _focal, focal_h = people["focal"]
    _sup, sup_h = people["supervisor"]
    first_values = canaries()
    first = submit(client, focal_h, submission(place["district"].code, first_values)).get_json()
    second_values = canaries()
    second_values["perpetrator.name"] = "  " + first_values["perpetrator.name"].upper() + " "
    second = submit(client, focal_h, submission(place["district"].code, second_values)).get_json()
    third_values = canaries()
    third_values["survivor.phone"] = first_values["survivor.phone"]
    third = submit(client, focal_h, submission(place["district"].code, third_values)).get_json()
    matches = client.get(f"/api/v1/referrals/{first['id']}", headers=sup_h).get_json()["matches"]
    assert matches == {"same_phone": [third["reference"]], "same_perpetrator": [second["reference"]]}
    # A case in another unit is never named, even when its index matches.
    from tests.factories import AreaFactory, OrganisationFactory, UnitFactory

    far = AreaFactory()
    UnitFactory(areas=[far])
    _far_focal, far_h = login_as("focal_point", organisation=OrganisationFactory(areas=[far]))
    submit(client, far_h, submission(far.code, first_values))
    again = client.get(f"/api/v1/referrals/{first['id']}", headers=sup_h).get_json()["matches"]
    assert again == matches
    # Issue 10: the searches come in the read's one UNION with the timeline. The read is the token with
    # its user, the case, that UNION and the audit append (two statements on SQLite).
    from sqlalchemy import event

    seen = []
    note = lambda *a: seen.append(a[2].lstrip().split(None, 1)[0].upper())  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", note)
    try:
        assert client.get(f"/api/v1/referrals/{first['id']}", headers=sup_h).get_json()["matches"] == matches
    finally:
        event.remove(db.engine, "before_cursor_execute", note)
    work = [s for s in seen if s in ("SELECT", "WITH", "INSERT", "UPDATE", "DELETE")]
    assert len(work) == (4 if db.engine.dialect.name == "postgresql" else 5), seen


def test_the_same_phone_links_cases_only_within_the_duplicate_window(app, client, place, people):
    """A survivor reported twice within DUPLICATE_WINDOW_DAYS is a possible duplicate; the same number
    reported long before or after is not (a perpetrator has no window)."""
    import datetime as dt

    _focal, focal_h = people["focal"]
    _sup, sup_h = people["supervisor"]
    days = app.config["DUPLICATE_WINDOW_DAYS"]
    phone_values = canaries()
    cases = {}
    for name in ("first", "inside", "outside"):
        values = canaries()
        values["survivor.phone"] = phone_values["survivor.phone"]
        values["perpetrator.name"] = phone_values["perpetrator.name"]
        resp = submit(client, focal_h, submission(place["district"].code, values))
        assert resp.status_code == 201, resp.get_json()
        cases[name] = resp.get_json()
    # As if submitted apart in time: the window counts from each case's own submission.
    base = dt.datetime.now(dt.UTC) - dt.timedelta(days=3 * days)
    for name, offset in (("first", 0), ("inside", days - 1), ("outside", 2 * days + 1)):
        db.session.get(Referral, cases[name]["id"]).created_at = base + dt.timedelta(days=offset)
    db.session.commit()
    matches = client.get(f"/api/v1/referrals/{cases['inside']['id']}", headers=sup_h).get_json()["matches"]
    far = client.get(f"/api/v1/referrals/{cases['outside']['id']}", headers=sup_h).get_json()["matches"]
    assert matches["same_phone"] == [cases["first"]["reference"]]  # the later one is beyond the window
    assert sorted(matches["same_perpetrator"]) == sorted([cases["first"]["reference"], cases["outside"]["reference"]])
    assert far["same_phone"] == []


def test_a_full_read_shows_the_area_and_unit_codes_and_the_notes_oldest_first(client, place, people, officers):
    import datetime as dt

    import time_machine

    _focal, focal_h = people["focal"]
    _sup, sup_h = people["supervisor"]
    case_id = submit(client, focal_h, minimal(place["village"].code)).get_json()["id"]
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    for minutes, text in ((30, "CanarySecond"), (10, "CanaryFirst")):  # added out of their order
        with time_machine.travel(soon + dt.timedelta(minutes=minutes), tick=False):
            assert client.post(f"/api/v1/referrals/{case_id}/information", json={"text": text},
                               headers=focal_h).status_code == 201
    body = client.get(f"/api/v1/referrals/{case_id}", headers=sup_h).get_json()
    assert body["area"] == place["village"].code and body["unit"] == place["unit"].code
    assert [n["text"] for n in body["notes"]] == ["CanaryFirst", "CanarySecond"]
    # An officer it is offered to sees the summary, with the area's code and no content.
    offered = client.get(f"/api/v1/referrals/{case_id}", headers=officers[0][1]).get_json()
    assert offered["area"] == place["village"].code and "notes" not in offered and "unit" not in offered
