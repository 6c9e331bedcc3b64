"""The SMS webhook (SPEC §9): signature, window, replay, registered phones, the code in five languages."""
import hashlib
import hmac
import json
import time
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select

from referral.audit.models import AuditEvent
from referral.extensions import db
from referral.notify.models import OutboxMessage
from referral.referrals.models import Referral

SECRET = "test-sms-secret"
PHONE = "+996555123001"


@pytest.fixture()
def sms_app(app):
    app.config["SMS_SECRET"] = SECRET
    yield app
    app.config["SMS_SECRET"] = None


@pytest.fixture()
def focal_phone(people):
    focal = people["focal"][0]
    focal.phone = PHONE
    focal.languages = "ky,ru"
    db.session.flush()
    return focal


MISSING = object()


def send(client, text, *, sender=PHONE, secret=SECRET, ts=None, signature=None, upper=False):
    body = urlencode({"from": sender, "text": text}).encode()
    ts = str(int(time.time()) if ts is None else ts)
    mac = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    headers = {"X-Amanat-Timestamp": ts, "X-Amanat-Signature": signature or f"sha256={mac.upper() if upper else mac}",
               "Content-Type": "application/x-www-form-urlencoded"}
    if signature is MISSING:
        del headers["X-Amanat-Signature"]
    return client.post("/api/v1/sms/inbound", data=body, headers=headers)


def replies():
    db.session.expire_all()
    return db.session.scalars(select(OutboxMessage).where(OutboxMessage.template.like("sms_%"))
                              .order_by(OutboxMessage.id)).all()


def test_a_valid_code_creates_a_routed_referral_and_replies_with_its_reference(client, sms_app, place, focal_phone,
                                                                              officers):
    resp = send(client, f"GBV {place['district'].code} P 26-40 N")
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["result"] == "created"
    referral = db.session.scalar(select(Referral).where(Referral.reference == body["reference"]))
    assert referral.gbv_type == "physical_assault" and referral.status.value == "offered"
    assert referral.submitter_id == focal_phone.id and referral.immediate_danger is False
    [reply] = replies()
    # GBV is the spec's own keyword: the reply is in the language of her account (Kyrgyz here).
    assert reply.template == "sms_received" and reply.address == PHONE and reply.language == "ky"
    assert json.loads(reply.params) == {"reference": body["reference"]}


@pytest.mark.parametrize("text, lang, gbv_type, danger", [
    ("ЗОМБУЛУК {area} R 15-17 ООБА", "ky", "rape", True),
    ("насилие {area} e 41-60 нет", "ru", "psychological_abuse", False),
    ("ХУШУНАТ {area} F 12-14 ҲА", "tg", "forced_marriage", True),
    ("zoravonlik {area} D 61+ yoq", "uz", "denial_of_resources", False),
    ("GBV {area} С 18-25 Y", "ky", "sexual_assault", True),   # a Cyrillic С, said S; her own language
])
def test_keywords_in_every_language(client, sms_app, place, focal_phone, officers, text, lang, gbv_type, danger):
    body = send(client, text.format(area=place["district"].code)).get_json()
    referral = db.session.scalar(select(Referral).where(Referral.reference == body["reference"]))
    assert referral.gbv_type == gbv_type and referral.immediate_danger is danger
    assert replies()[-1].language == lang


CYRILLIC = str.maketrans(dict(zip("ABEKMHOPCTXY", "АВЕКМНОРСТХУ")))


@pytest.mark.parametrize("text, lang, danger", [
    ("zo'ravonlik {area} P 26-40 yo'q", "uz", False),          # the usual Uzbek spelling
    ("zo\u02bbravonlik {area} P 26-40 yo\u02bbq", "uz", False),  # with the modifier letter
    ("GBV {area} P 26-40 yo\u2018q", "ky", False),             # a quotation mark a phone put for ʻ
    ("GBV {area} P 26-40 yo`q", "ky", False),
    ("GBV {cyrillic_area} P 26-40 N", "ky", False),           # the area typed on a Cyrillic keyboard
    ("GBV {area} P 26-40 \u0423", "ky", True),                # a Cyrillic У for Y
])
def test_what_a_phone_types_for_latin_letters_and_apostrophes_is_understood(client, sms_app, place, focal_phone,
                                                                             officers, text, lang, danger):
    area = place["district"].code
    resp = send(client, text.format(area=area, cyrillic_area=area.translate(CYRILLIC)))
    body = resp.get_json()
    assert body["result"] == "created", (text, body)
    referral = db.session.scalar(select(Referral).where(Referral.reference == body["reference"]))
    assert referral.area.code == area and referral.immediate_danger is danger
    assert replies()[-1].language == lang
    # ... and so is a reference typed in Cyrillic lookalikes, or the Tajik word without its Ҳ.
    assert send(client, f"ХОЛАТ {body['reference'].translate(CYRILLIC)}").get_json() == {
        "result": "status", "reference": body["reference"]}


def test_status_answers_with_the_stage_of_ones_own_referral_only(client, sms_app, place, focal_phone, officers,
                                                                 login_as):
    reference = send(client, f"GBV {place['district'].code} P 26-40 N").get_json()["reference"]
    assert send(client, f"СТАТУС {reference}").get_json() == {"result": "status", "reference": reference}
    reply = replies()[-1]
    assert reply.template == "sms_status" and reply.language == "ru"
    assert json.loads(reply.params) == {"reference": reference, "stage": "offered"}
    # Another focal point's reference is "not found", and the denial is audited.
    other, _h = login_as("focal_point", organisation=place["group"])
    other.phone = "+996555123002"
    db.session.flush()
    assert send(client, f"STATUS {reference}", sender="+996555123002").get_json()["result"] == "unknown_reference"
    assert replies()[-1].template == "sms_unknown_reference"
    denied = db.session.scalars(select(AuditEvent).where(AuditEvent.actor_id == other.id,
                                                         AuditEvent.outcome == "denied")).all()
    assert denied


@pytest.mark.parametrize("text", ["hello", "GBV", "GBV KG P 26-40", "GBV {area} X 26-40 N", "GBV {area} P 30 N",
                                  "GBV {area} \u0420 26-40 N",  # a Cyrillic Р: P by its look, R by its sound
                                  "GBV {area} P 26-40 MAYBE", "GBV NO-SUCH-AREA P 26-40 N", "STATUS", ""])
def test_a_malformed_message_gets_the_format_and_stores_nothing(client, sms_app, place, focal_phone, text):
    resp = send(client, text.format(area=place["district"].code))
    assert resp.status_code == 200 and resp.get_json() == {"result": "malformed"}
    assert db.session.scalar(select(Referral)) is None
    assert replies()[-1].template == "sms_format"


def test_signatures_windows_and_replays(client, sms_app, place, focal_phone, officers):
    text = f"GBV {place['district'].code} P 26-40 N"
    assert send(client, text, secret="wrong").status_code == 401
    assert send(client, text, signature="sha256=").status_code == 401
    assert send(client, text, signature="md5=abc").status_code == 401
    assert send(client, text, ts=int(time.time()) - 301).status_code == 401
    assert send(client, text, ts=int(time.time()) + 301).status_code == 401
    assert send(client, text, ts="abc").status_code == 401
    ts = int(time.time())
    assert send(client, text, ts=ts).status_code == 200
    again = send(client, text, ts=ts)
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "replay"
    assert db.session.scalars(select(Referral)).all().__len__() == 1


def test_unregistered_phones_are_refused_without_a_reply(client, sms_app, place, focal_phone, make_user):
    assert send(client, f"GBV {place['district'].code} P 26-40 N", sender="+996555999999").status_code == 403
    officer = make_user("officer")
    officer.phone = "+996555123009"
    db.session.flush()
    assert send(client, "STATUS R-AAAA-BBBB", sender="+996555123009").status_code == 403  # not a focal point
    pending = make_user("focal_point", enrolment_pending=True)  # made by an admin, not set up by its holder
    pending.phone = "+996555123010"
    db.session.flush()
    assert send(client, f"GBV {place['district'].code} P 26-40 N", sender="+996555123010").status_code == 403
    assert send(client, "hello", sender="not a phone").status_code == 403
    assert replies() == []
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "sms.inbound",
                                                      AuditEvent.outcome == "denied")) is not None


def test_a_replayed_message_from_an_unregistered_phone_is_a_replay(client, sms_app, place, focal_phone):
    """SPEC §9: a replay is 409, whoever sent the original; and the log gets one refusal, not one a copy."""
    ts = int(time.time())
    text = f"GBV {place['district'].code} P 26-40 N"
    assert send(client, text, sender="+996555999999", ts=ts).status_code == 403
    assert send(client, text, sender="+996555999999", ts=ts).status_code == 409
    denied = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "sms.inbound",
                                                         AuditEvent.outcome == "denied")).all()
    assert len(denied) == 1


def test_without_a_configured_secret_the_webhook_is_unavailable(client, place, focal_phone):
    assert send(client, "hello").status_code == 503


def test_bad_bodies(client, sms_app, focal_phone):
    assert send(client, "x" * 1601).status_code == 422
    assert send(client, "hello", sender="").status_code == 422


def test_a_replay_with_the_hex_in_other_letters_is_still_a_replay(client, sms_app, place, focal_phone, officers):
    text = f"GBV {place['district'].code} P 26-40 N"
    ts = int(time.time())
    assert send(client, text, ts=ts).status_code == 200
    assert send(client, text, ts=ts, upper=True).status_code == 409
    assert len(db.session.scalars(select(Referral)).all()) == 1


@pytest.mark.parametrize("ts, signature", [("²", None), ("1" * 13, None), (None, "sha256=éé"),
                                           (None, "sha256=" + "g" * 64), (None, MISSING)])
def test_odd_headers_are_401_never_500(client, sms_app, focal_phone, ts, signature):
    assert send(client, "hello", ts=ts, signature=signature).status_code == 401


def test_retention_prunes_receipts_only_once_no_replay_could_match_them(client, sms_app, place, focal_phone, officers,
                                                                         isolated_keyring):
    """A receipt is the replay guard while the signature could pass the window: its timestamp may be up to a
    window ahead of its arrival, so it is kept two windows (and an hour's slack), then `retention apply`
    deletes it and the same message is refused as too old, not taken again."""
    import datetime as dt

    import time_machine

    from referral.notify.models import SmsReceipt
    from referral.referrals import retention

    window = sms_app.config["SMS_WINDOW_SECONDS"]
    text = f"GBV {place['district'].code} P 26-40 N"
    arrived = int(time.time())
    ts = arrived + window - 10  # ahead of the server's clock, still inside the window
    assert send(client, text, ts=ts).status_code == 200
    stale = send(client, f"STATUS R-AAAA-BBBB", ts=arrived - 3 * window)
    assert stale.status_code == 401  # a refused call leaves no receipt
    assert db.session.scalar(select(func.count()).select_from(SmsReceipt)) == 1

    def at(seconds):
        return dt.datetime.fromtimestamp(seconds, dt.UTC)

    last_replayable = ts + window - 1
    assert retention.apply(db.session, now=at(last_replayable))["sms_receipts_pruned"] == 0
    with time_machine.travel(at(last_replayable), tick=False):
        again = send(client, text, ts=ts)
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "replay"
    keep_until = arrived + 2 * window + 3600
    assert retention.apply(db.session, now=at(keep_until - 5))["sms_receipts_pruned"] == 0
    result = retention.apply(db.session, now=at(keep_until + 5))
    assert result["sms_receipts_pruned"] == 1
    assert db.session.scalar(select(func.count()).select_from(SmsReceipt)) == 0
    with time_machine.travel(at(keep_until + 5), tick=False):
        late = send(client, text, ts=ts)
    assert late.status_code == 401  # too old: the pruned receipt is not missed
    assert db.session.scalars(select(Referral)).all().__len__() == 1
    applied = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "retention.apply")
                                 .order_by(AuditEvent.seq.desc())).first()
    assert "pruned 1 SMS receipt(s)" in applied.reason


def send_with_id(client, text, message_id, *, ts=None):  # type: ignore[no-untyped-def]
    body = urlencode({"from": PHONE, "text": text, "message_id": message_id}).encode()
    ts = str(int(time.time()) if ts is None else ts)
    mac = hmac.new(SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return client.post("/api/v1/sms/inbound", data=body, headers={
        "X-Amanat-Timestamp": ts, "X-Amanat-Signature": f"sha256={mac}",
        "Content-Type": "application/x-www-form-urlencoded"})


def test_a_gateway_retry_signed_afresh_files_no_second_case(client, sms_app, place, focal_phone, officers):
    """The gateway lost our answer and sends the message again, signed a few seconds later: with its own
    message id, the same case is answered and no second reply goes out."""
    text = f"GBV {place['district'].code} P 26-40 N"
    now = int(time.time())
    first = send_with_id(client, text, "gw-7781", ts=now - 30)
    again = send_with_id(client, text, "gw-7781", ts=now)
    assert first.status_code == again.status_code == 200, again.get_json()
    assert again.get_json() == first.get_json() and first.get_json()["result"] == "created"
    assert db.session.scalar(select(func.count()).select_from(Referral)) == 1
    assert [m.template for m in replies()] == ["sms_received"]
    # Two women reported with the same code at once are two messages, with two ids: two cases.
    other = send_with_id(client, text, "gw-7782", ts=now)
    assert other.status_code == 200 and other.get_json()["reference"] != first.get_json()["reference"]
    assert db.session.scalar(select(func.count()).select_from(Referral)) == 2
    # Another text under an id already used is the gateway's mistake: refused, nothing filed.
    reused = send_with_id(client, f"GBV {place['district'].code} F 12-14 Y", "gw-7781", ts=now)
    assert reused.status_code == 409 and db.session.scalar(select(func.count()).select_from(Referral)) == 2
    too_long = send_with_id(client, text, "x" * 129, ts=now)
    assert too_long.status_code == 422 and list(too_long.get_json()["error"]["fields"]) == ["message_id"]


@pytest.mark.postgres
def test_copies_of_one_gateway_message_at_once_file_one_case_without_errors(committed_app):
    """The gateway sends one message several times at once, each signed afresh: one case, one reply, the
    other copies told it was received (409), none a server error."""
    import threading

    from tests.referrals.helpers import committed_focal_point

    committed_app.config["SMS_SECRET"] = SECRET
    committed_focal_point(committed_app, "SR", "sms race passphrase")
    with committed_app.app_context():
        from referral.accounts.models import User

        user = db.session.scalar(select(User).where(User.email == "fp@sr.example"))
        user.phone = "+996555123077"
        db.session.commit()
    now, statuses, barrier = int(time.time()), [], threading.Barrier(6)

    def post(i):  # type: ignore[no-untyped-def]
        body = urlencode({"from": "+996555123077", "text": "GBV SR-D P 26-40 N", "message_id": "gw-race-1"}).encode()
        ts = str(now - i)
        mac = hmac.new(SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        barrier.wait()
        statuses.append(committed_app.test_client().post("/api/v1/sms/inbound", data=body, headers={
            "X-Amanat-Timestamp": ts, "X-Amanat-Signature": f"sha256={mac}",
            "Content-Type": "application/x-www-form-urlencoded"}).status_code)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    committed_app.config["SMS_SECRET"] = None
    assert 500 not in statuses and 200 in statuses and set(statuses) <= {200, 409}, statuses
    with committed_app.app_context():
        submitter = select(User.id).where(User.email == "fp@sr.example").scalar_subquery()
        assert db.session.scalar(select(func.count()).select_from(Referral)
                                 .where(Referral.submitter_id == submitter)) == 1
        db.session.remove()
