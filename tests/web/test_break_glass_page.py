"""The oversight break-glass page: open with a justification, read the case, another auditor reviews."""
from sqlalchemy import select

from referral.audit.models import AuditEvent
from referral.extensions import db
from referral.oversight.models import BreakGlassGrant
from tests.referrals.helpers import canaries, submission
from tests.web.helpers import csrf_token
from tests.web.test_oversight_pages import sign_in

REASON = "Complaint 2026/41 names this case; checking the handling."


def test_auditor_opens_a_case_and_another_reviews(client, place, people, officers, make_user):
    values = canaries()
    case = client.post("/api/v1/referrals", json=submission(place["district"].code, values),
                       headers=people["focal"][1]).get_json()
    first, second = make_user("oversight"), make_user("oversight")
    sign_in(client, first)
    assert client.get(f"/cases/{case['id']}").status_code == 404  # no grant yet
    page = client.get(f"/oversight/break-glass?case_id={case['id']}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and f'value="{case["id"]}"' in html
    token = csrf_token(html)
    short = client.post("/oversight/break-glass", data={"csrf_token": token, "case_id": case["id"],
                                                        "justification": "because"})
    assert short.status_code == 422 and 'aria-invalid="true"' in short.get_data(as_text=True)
    assert db.session.scalar(select(BreakGlassGrant)) is None
    opened = client.post("/oversight/break-glass", data={"csrf_token": token, "case_id": case["id"],
                                                         "justification": REASON, "hours": "1"})
    assert opened.status_code == 302 and opened.headers["Location"].endswith(f"/cases/{case['id']}")
    content = client.get(f"/cases/{case['id']}").get_data(as_text=True)
    assert values["survivor.name"] in content
    grant = db.session.scalar(select(BreakGlassGrant))
    assert grant.user_id == first.id and REASON.encode() not in bytes(grant.justification_sealed)
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "break_glass.open")).all()
    assert events and all(REASON not in (e.reason or "") for e in events)
    # The opener cannot review their own access; the page says so and offers no buttons.
    queue = client.get("/oversight/break-glass").get_data(as_text=True)
    assert "Another auditor reviews this." in queue and 'value="justified"' not in queue
    sign_in(client, second)
    queue = client.get("/oversight/break-glass").get_data(as_text=True)
    client.post(f"/oversight/break-glass/{grant.id}/review", data={"csrf_token": csrf_token(queue),
                                                                   "outcome": "justified"})
    db.session.refresh(grant)
    assert grant.reviewed_by_id == second.id and grant.review_outcome == "justified"
    assert "Justified" in client.get("/oversight/break-glass").get_data(as_text=True)


def test_break_glass_page_refuses_other_roles_and_unknown_cases(client, make_user, place, people):
    for role in ("officer", "supervisor", "admin", "service_provider"):
        user = make_user(role)
        sign_in(client, user)
        assert client.get("/oversight/break-glass").status_code == 403
    auditor = make_user("oversight")
    sign_in(client, auditor)
    token = csrf_token(client.get("/oversight/break-glass").get_data(as_text=True))
    missing = client.post("/oversight/break-glass", data={"csrf_token": token, "justification": REASON,
                                                          "case_id": "00000000-0000-4000-8000-000000000000"})
    assert missing.status_code == 404
    assert client.post("/oversight/break-glass", data={"case_id": "x", "justification": REASON}).status_code == 400
    bad_review = client.post("/oversight/break-glass/999999/review", data={"csrf_token": token, "outcome": "maybe"},
                             follow_redirects=True)
    assert bad_review.status_code == 200 and db.session.scalar(select(BreakGlassGrant)) is None
