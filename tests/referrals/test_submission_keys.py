"""The same submission sent twice files one case (a double tap, a retry after a slow network)."""
import re

from sqlalchemy import func, select

from referral.audit.models import AuditEvent
from referral.extensions import db
from referral.referrals.models import Referral, SubmissionKey
from tests.factories import PASSWORD
from tests.referrals.helpers import canaries, minimal, submission
from tests.web.helpers import csrf_token, web_login

KEY = "k" * 12 + "-retry-1_A"


def cases():
    return db.session.scalar(select(func.count()).select_from(Referral))


def test_an_api_retry_with_the_same_key_answers_the_case_it_filed(client, place, people):
    _focal, headers = people["focal"]
    values = canaries()
    body = submission(place["village"].code, values)
    first = client.post("/api/v1/referrals", json=body, headers={**headers, "Idempotency-Key": KEY})
    again = client.post("/api/v1/referrals", json=body, headers={**headers, "Idempotency-Key": KEY})
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json() and cases() == 1
    assert "Idempotent-Replayed" not in first.headers and again.headers["Idempotent-Replayed"] == "true"
    row = db.session.scalar(select(SubmissionKey))
    assert row.key_hash != KEY and len(row.key_hash) == len(row.body_digest) == 64  # hashes only
    assert not any(v in row.body_digest for v in values.values())
    repeat = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "referral.create")
                                .order_by(AuditEvent.seq)).all()
    assert [(e.outcome, e.object_id) for e in repeat] == [("allowed", first.get_json()["id"])] * 2
    assert "same submission" in repeat[1].reason
    # Without a key, or with another, the same answers are another referral.
    assert client.post("/api/v1/referrals", json=body, headers=headers).status_code == 201
    other = client.post("/api/v1/referrals", json=body, headers={**headers, "Idempotency-Key": KEY + "2"})
    assert other.status_code == 201 and other.get_json()["id"] != first.get_json()["id"] and cases() == 3


def test_the_same_key_with_other_answers_is_refused_not_guessed(client, place, people):
    _focal, headers = people["focal"]
    first = client.post("/api/v1/referrals", json=minimal(place["village"].code),
                        headers={**headers, "Idempotency-Key": KEY})
    changed = minimal(place["village"].code)
    changed["survivor"]["age_group"] = "26-40"
    refused = client.post("/api/v1/referrals", json=changed, headers={**headers, "Idempotency-Key": KEY})
    assert first.status_code == 201 and refused.status_code == 409 and cases() == 1
    assert refused.get_json()["error"]["code"] == "submission_key_reused"
    denied = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "referral.create",
                                                        AuditEvent.outcome == "denied"))
    assert denied is not None and denied.reason == "submission key already used for another submission"


def test_keys_are_each_submitters_own_and_must_look_like_keys(client, place, people, login_as):
    _focal, headers = people["focal"]
    _other, other_headers = login_as("focal_point", organisation=place["group"])
    body = minimal(place["village"].code)
    mine = client.post("/api/v1/referrals", json=body, headers={**headers, "Idempotency-Key": KEY})
    theirs = client.post("/api/v1/referrals", json=body, headers={**other_headers, "Idempotency-Key": KEY})
    assert mine.status_code == theirs.status_code == 201 and mine.get_json()["id"] != theirs.get_json()["id"]
    for bad in ("short", "x" * 129, "with space in it!!", "ключ-ключ-ключ-ключ"):
        resp = client.post("/api/v1/referrals", json=body, headers={**headers, "Idempotency-Key": bad})
        assert resp.status_code == 422 and list(resp.get_json()["error"]["fields"]) == ["Idempotency-Key"], bad
    assert cases() == 2


def test_the_form_sent_twice_files_one_case(client, place, people):
    focal, _ = people["focal"]
    web_login(client, focal.email, PASSWORD)
    html = client.get("/referrals/new").get_data(as_text=True)
    key = re.search(r'name="submission_key"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="submission_key"', html)
    key = key.group(1) or key.group(2)
    assert len(key) >= 16
    form = {"area": place["village"].code, "age_group": "26-40", "sex": "female", "contact_method": "via_focal_point",
            "physical_assault": "yes", "consent_police": "y", "given_by": "survivor",
            "csrf_token": csrf_token(html), "submission_key": key}
    first = client.post("/referrals/new", data=form)
    again = client.post("/referrals/new", data=form)
    assert first.status_code == again.status_code == 302
    assert first.headers["Location"] == again.headers["Location"] and cases() == 1
    # A new form is a new key: the same answers sent from it are another referral.
    fresh = client.get("/referrals/new").get_data(as_text=True)
    assert key not in fresh
    # The form coming back with errors keeps its key, so fixing and sending files one case.
    broken = client.post("/referrals/new", data={**form, "submission_key": key + "x", "age_group": ""})
    assert broken.status_code == 422 and f'value="{key}x"' in broken.get_data(as_text=True)


def test_the_form_sent_again_with_other_answers_says_so_and_files_them_when_sent_once_more(client, place, people):
    focal, _ = people["focal"]
    web_login(client, focal.email, PASSWORD)
    html = client.get("/referrals/new").get_data(as_text=True)
    form = {"area": place["village"].code, "age_group": "26-40", "sex": "female", "contact_method": "via_focal_point",
            "physical_assault": "yes", "consent_police": "y", "given_by": "survivor",
            "csrf_token": csrf_token(html), "submission_key": KEY}
    assert client.post("/referrals/new", data=form).status_code == 302
    changed = client.post("/referrals/new", data={**form, "age_group": "41-60"})
    page = changed.get_data(as_text=True)
    assert changed.status_code == 422 and "Press “Send referral” again" in page and cases() == 1
    new_key = re.search(r'name="submission_key"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="submission_key"', page)
    new_key = new_key.group(1) or new_key.group(2)
    assert new_key != KEY  # what she typed stays, under a new key
    assert re.search(r'<option[^>]*selected[^>]*value="41-60"|<option[^>]*value="41-60"[^>]*selected', page)
    again = client.post("/referrals/new", data={**form, "age_group": "41-60", "submission_key": new_key})
    assert again.status_code == 302 and cases() == 2


def test_erasing_a_case_drops_the_digest_of_its_submission(client, place, people):
    """The digest is keyed like the blind indexes and covers her phone: linkable, so it goes with them."""
    from referral.referrals import crypto

    _focal, headers = people["focal"]
    body = submission(place["village"].code, canaries())
    case = client.post("/api/v1/referrals", json=body, headers={**headers, "Idempotency-Key": KEY}).get_json()
    other = client.post("/api/v1/referrals", json=body, headers={**headers, "Idempotency-Key": KEY + "2"}).get_json()
    assert db.session.scalar(select(func.count()).select_from(SubmissionKey)) == 2
    crypto.crypto_erase(db.session, None, db.session.get(Referral, case["id"]), reason="test")
    db.session.flush()
    assert db.session.scalars(select(SubmissionKey.referral_id)).all() == [other["id"]]
