"""SPEC §7: blind-index matches are named only to those entitled to both cases, and shown to oversight as a
count — how many other cases share the survivor's phone (within the duplicate window) or the perpetrator."""
import datetime as dt
import json

import pyotp
import pytest
from sqlalchemy import select

from referral.audit.models import AuditEvent
from referral.extensions import db
from referral.referrals.models import Referral
from tests.factories import PASSWORD
from tests.referrals.helpers import canaries, submission
from tests.web.helpers import web_login


@pytest.fixture()
def cases(client, place, people, officers):
    """A; B (same phone and perpetrator); C (same perpetrator, another phone); D (same phone, another
    perpetrator, 100 days later: past the 90-day duplicate window); E (nothing shared)."""
    base = canaries()
    focal = people["focal"][1]

    def file(changes):  # type: ignore[no-untyped-def]
        resp = client.post("/api/v1/referrals", json=submission(place["district"].code, {**base, **changes}),
                           headers=focal)
        assert resp.status_code == 201, resp.get_json()
        return resp.get_json()

    other = canaries()
    made = {"A": file({}), "B": file({}), "C": file({"survivor.phone": other["survivor.phone"]}),
            "D": file({"perpetrator.name": other["perpetrator.name"]}), "E": file(canaries())}
    # D came in 100 days after the others (synthetic dates: the service stamps its own).
    later = db.session.get(Referral, made["D"]["id"])
    later.created_at += dt.timedelta(days=100)
    db.session.commit()
    return made, base


def test_oversight_gets_the_numbers_and_never_which_cases(client, cases, login_as):
    made, base = cases
    auditor, headers = login_as("oversight")
    answers = {name: client.get(f"/api/v1/referrals/{case['id']}/matches", headers=headers) for name, case in
               made.items()}
    assert {n: (r.status_code, r.get_json()["same_phone"], r.get_json()["same_perpetrator"])
            for n, r in answers.items()} == {"A": (200, 1, 2), "B": (200, 1, 2), "C": (200, 0, 2),
                                             "D": (200, 0, 0), "E": (200, 0, 0)}
    body = answers["A"].get_json()
    assert body == {"id": made["A"]["id"], "same_phone": 1, "same_perpetrator": 2}  # not even its own reference
    text = json.dumps([r.get_json() for r in answers.values()])
    assert not any(made[n]["reference"] in json.dumps(answers["A"].get_json()) for n in "BCDE")
    assert not any(v in text for v in base.values())  # no case content either
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "referral.matches",
                                                         AuditEvent.actor_id == auditor.id)).all()
    assert len(events) == 5 and {e.outcome for e in events} == {"allowed"} and {e.fields for e in events} == {"[]"}


def test_only_oversight_may_ask_and_an_unknown_case_is_a_denied_404(client, cases, login_as):
    made, _base = cases
    url = f"/api/v1/referrals/{made['A']['id']}/matches"
    for role in ("focal_point", "officer", "supervisor", "service_provider", "admin"):
        assert client.get(url, headers=login_as(role)[1]).status_code == 403, role
    assert client.get(url).status_code == 401
    auditor, headers = login_as("oversight")
    for missing in ("not-a-case", "R-" + "0" * 30):
        assert client.get(f"/api/v1/referrals/{missing}/matches", headers=headers).status_code == 404
    denied = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "referral.matches",
                                                         AuditEvent.outcome == "denied")).all()
    assert len(denied) == 2 and all(e.actor_id == auditor.id for e in denied)


def test_the_disclosures_page_shows_the_counts(client, cases, make_user):
    made, _base = cases
    auditor = make_user("oversight")
    assert web_login(client, auditor.email, PASSWORD, pyotp.TOTP(auditor.totp_secret_plain).now()).status_code == 302
    html = client.get(f"/oversight/cases/{made['A']['id']}/disclosures").get_data(as_text=True)
    assert "Other cases with the same survivor phone: 1. With the same perpetrator: 2." in html
    assert made["B"]["reference"] not in html and made["C"]["reference"] not in html
