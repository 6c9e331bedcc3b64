"""What the fuzzing found, kept as plain tests: each was a 500 (or a broken contract) before its fix."""
from __future__ import annotations

import pytest

from referral.accounts.models import Role
from referral.extensions import db
from tests.factories import OrganisationFactory
from tests.referrals.helpers import submission


@pytest.fixture()
def accepted(client, place, people, officers):  # type: ignore[no-untyped-def]
    """A case accepted by one of the officers: (case id, that officer's headers)."""
    case = client.post("/api/v1/referrals", json=submission(place["district"].code), headers=people["focal"][1])
    case_id = case.get_json()["id"]
    headers = next(h for _o, h in officers
                   if client.post(f"/api/v1/referrals/{case_id}/accept", headers=h).status_code == 200)
    return case_id, headers


@pytest.mark.parametrize("expires_at", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00",
                                        "2100-01-01T00:00:01Z"])
def test_a_consent_expiry_at_the_end_of_the_calendar_is_refused_not_a_500(client, accepted, expires_at):  # type: ignore[no-untyped-def]
    """9999-12-31T23:59:59-14:00 is in year 10000 once in UTC: converting it raised OverflowError (500)."""
    case_id, headers = accepted
    resp = client.post(f"/api/v1/referrals/{case_id}/consents", headers=headers,
                       json={"scope": "sms_contact", "granted": True, "expires_at": expires_at})
    assert resp.status_code == 422
    assert list(resp.get_json()["error"]["fields"]) == ["expires_at"]
    ok = client.post(f"/api/v1/referrals/{case_id}/consents", headers=headers,
                     json={"scope": "sms_contact", "granted": True, "expires_at": "2099-06-30T12:00:00-14:00"})
    assert ok.status_code == 201, ok.get_json()


@pytest.mark.parametrize("query", ["until=9999-12-31", "since=0001-01-01", "since=2000-01-01&until=2101-01-01"])
def test_statistics_for_a_period_past_the_calendar_are_refused_not_a_500(client, login_as, query):  # type: ignore[no-untyped-def]
    """``until`` is counted to the end of its day: the day after 9999-12-31 raised OverflowError (500)."""
    _user, headers = login_as(Role.oversight)
    resp = client.get(f"/api/v1/stats/deidentified?{query}", headers=headers)
    assert resp.status_code == 422
    assert set(resp.get_json()["error"]["fields"]) <= {"since", "until"}
    assert client.get("/api/v1/stats/deidentified?since=2000-01-01&until=2100-12-31",
                      headers=headers).status_code == 200


def test_an_unknown_share_entry_is_not_repeated_in_the_refusal(client, accepted, place):  # type: ignore[no-untyped-def]
    """The 422 named the refused entries back; an entry may be case text pasted into the wrong place."""
    clinic = OrganisationFactory(kind="provider", areas=[place["district"]], service_types=["health"])
    db.session.flush()  # the services list is filled after the factory's own flush
    case_id, headers = accepted
    pasted = "Gulnara Asanova lives behind the school"
    resp = client.post(f"/api/v1/referrals/{case_id}/service-referrals", headers=headers,
                       json={"provider_id": clinic.id, "service_type": "health", "share": ["survivor.name", pasted]})
    assert resp.status_code == 422
    text = resp.get_data(as_text=True)
    assert pasted not in text and "Gulnara" not in text
    assert "1 entry is not a shareable field path" in resp.get_json()["error"]["fields"]["share"][0]
