"""Synthetic submissions. Canary strings let tests look for sensitive text anywhere it must not be."""
from __future__ import annotations

import secrets

SENSITIVE_PATHS = ("survivor.name", "survivor.phone", "survivor.address", "survivor.safe_contact.notes",
                   "incident.narrative", "perpetrator.name", "perpetrator.details")


def canaries() -> dict[str, str]:
    tag = secrets.token_hex(4).upper()
    return {
        "survivor.name": f"CanarySurvivor{tag}",
        "survivor.phone": "+996700" + str(secrets.randbelow(900000) + 100000),
        "survivor.address": f"CanaryAddress{tag} street 7",
        "survivor.safe_contact.notes": f"CanaryContact{tag} call after six",
        "incident.narrative": f"CanaryNarrative{tag} — Канарейка{tag} happened at night",
        "perpetrator.name": f"CanaryPerpetrator{tag}",
        "perpetrator.details": f"CanaryDetails{tag} drives a blue car",
    }


def submission(area: str, values: dict[str, str] | None = None, **overrides) -> dict:
    v = values or canaries()
    body = {
        "area": area,
        "survivor": {"name": v["survivor.name"], "phone": v["survivor.phone"], "address": v["survivor.address"],
                     "age_group": "26-40", "sex": "female", "disability": False, "language": "ky",
                     "safe_contact": {"method": "sms", "notes": v["survivor.safe_contact.notes"]}},
        "incident": {"date": "2026-11-20", "narrative": v["incident.narrative"], "location_type": "home",
                     "immediate_danger": False,
                     "answers": {"penetration": False, "sexual_contact": False, "physical_assault": True,
                                 "forced_marriage": False, "denial_of_resources": False,
                                 "psychological_abuse": True}},
        "perpetrator": {"name": v["perpetrator.name"], "relationship": "intimate_partner",
                        "details": v["perpetrator.details"]},
        "consent": {"police": True, "services": ["health"], "sms_contact": True, "statistics": True,
                    "given_by": "survivor"},
        "preferences": {"officer_gender": "female"},
    }
    body.update(overrides)
    return body


def minimal(area: str) -> dict:
    return {"area": area, "survivor": {"age_group": "15-17"},
            "incident": {"answers": {k: False for k in ("penetration", "sexual_contact", "physical_assault",
                                                        "forced_marriage", "denial_of_resources",
                                                        "psychological_abuse")}},
            "consent": {"police": True, "services": False, "sms_contact": False, "statistics": False}}


def committed_focal_point(app, prefix: str, password: str) -> dict[str, str]:
    """On an app with real commits: a district ``<prefix>-D`` with its unit and women's group, and a focal
    point there; returns her bearer-token headers."""
    from referral.accounts.services import NewUser, create_user
    from referral.extensions import db
    from referral.reference.models import Area, AreaKind, Organisation, OrganisationKind, Unit

    email = f"fp@{prefix.lower()}.example"
    with app.app_context():
        area = Area(code=f"{prefix}-D", name=f"{prefix} district", kind=AreaKind.district)
        db.session.add_all([area, Unit(code=f"{prefix}-U", name=f"{prefix} unit", areas=[area]),
                            Organisation(code=f"{prefix}-WG", name=f"{prefix} group",
                                         kind=OrganisationKind.womens_group, areas=[area])])
        db.session.flush()
        create_user(None, NewUser(email=email, name="FP", role="focal_point", password=password, org=f"{prefix}-WG"))
        db.session.commit()
    resp = app.test_client().post("/api/v1/auth/tokens", json={"email": email, "password": password})
    assert resp.status_code == 201, resp.get_json()
    return {"Authorization": f"Bearer {resp.get_json()['token']}"}


def month_after(now=None):
    """Noon on the 2nd of the next month in the service's zone (Asia/Bishkek): the month of ``now``, this
    one by default, has ended then, so de-identified statistics count it."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    local = (now or dt.datetime.now(dt.UTC)).astimezone(ZoneInfo("Asia/Bishkek"))
    return (local.replace(day=1, hour=12, minute=0, second=0, microsecond=0) + dt.timedelta(days=32)).replace(day=2)


def submit_and_full_read(client, area: str, focal_headers: dict, reader_headers: dict) -> dict:
    """A minimal submission, then its full read (with the timeline) by ``reader_headers``; the read's body."""
    created = client.post("/api/v1/referrals", json=minimal(area), headers=focal_headers)
    assert created.status_code == 201, created.get_json()
    read = client.get(f"/api/v1/referrals/{created.get_json()['id']}", headers=reader_headers)
    assert read.status_code == 200 and read.get_json()["id"] == created.get_json()["id"]
    assert "actions" in read.get_json()  # the full read, with its timeline
    return read.get_json()
