"""The outbox: written with the change, delivered by the worker with retries, backoff and a dead letter."""
import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from referral.extensions import db
from referral.notify.adapters import ConsoleAdapter, DeliveryFailed, HttpSmsAdapter
from referral.notify.models import MessageStatus, OutboxMessage
from referral.notify.outbox import MAX_ATTEMPTS, deliver, enqueue, notify_user
from referral.notify.models import Channel
from tests.referrals.helpers import canaries, minimal, submission


class Recorder:
    def __init__(self, fail: int = 0):
        self.sent, self.fail = [], fail

    def send(self, key, address, text):
        if self.fail:
            self.fail -= 1
            raise DeliveryFailed("gateway answered 503")
        self.sent.append((key, address, text))


def messages(template=None):
    db.session.expire_all()
    query = select(OutboxMessage).order_by(OutboxMessage.id)
    if template:
        query = query.where(OutboxMessage.template == template)
    return db.session.scalars(query).all()


def test_a_new_case_tells_the_offered_officer_and_nothing_else(client, place, people, officers):
    values = canaries()
    officer = officers[0][0]
    officer.phone = "+996555000111"
    db.session.flush()
    case = client.post("/api/v1/referrals", json=submission(place["district"].code, values),
                       headers=people["focal"][1]).get_json()
    [message] = messages("new_offer")
    assert message.user_id == officer.id and message.address == "+996555000111"
    assert json.loads(message.params) == {"reference": case["reference"]}
    stored = " ".join(str(v) for v in (message.params, message.address, message.template))
    assert not any(v in stored for v in values.values())
    sms = Recorder()
    assert deliver(db.session, {"sms": sms, "email": Recorder()}) == {"sent": 1, "retry": 0, "dead": 0}
    [(key, address, text)] = sms.sent
    assert key == message.key and address == "+996555000111" and case["reference"] in text
    assert "please log in" in text.lower() or "кириңиз" in text or "Войдите" in text
    assert messages("new_offer")[0].status is MessageStatus.sent
    assert deliver(db.session, {"sms": sms, "email": Recorder()}) == {"sent": 0, "retry": 0, "dead": 0}


def test_staff_without_a_phone_get_e_mail(client, place, people, officers):
    client.post("/api/v1/referrals", json=minimal(place["district"].code), headers=people["focal"][1])
    [message] = messages("new_offer")
    assert message.channel is Channel.email and message.address == officers[0][0].email


def test_failures_back_off_then_dead_letter(client, place, people, officers):
    client.post("/api/v1/referrals", json=minimal(place["district"].code), headers=people["focal"][1])
    failing = Recorder(fail=100)
    t0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    counts = deliver(db.session, {"sms": failing, "email": failing}, now=t0)
    assert counts == {"sent": 0, "retry": 1, "dead": 0}
    message = messages("new_offer")[0]
    assert message.attempts == 1 and message.next_attempt_at == t0 + dt.timedelta(seconds=30)
    assert message.last_error == "gateway answered 503"
    assert deliver(db.session, {"sms": failing, "email": failing}, now=t0) == {"sent": 0, "retry": 0, "dead": 0}
    now = t0
    for _ in range(MAX_ATTEMPTS - 1):
        now += dt.timedelta(days=1)
        deliver(db.session, {"sms": failing, "email": failing}, now=now)
    message = messages("new_offer")[0]
    assert message.status is MessageStatus.dead and message.attempts == MAX_ATTEMPTS
    # A gateway back up later: a dead message is never sent again (an operator looks at it).
    ok = Recorder()
    deliver(db.session, {"sms": ok, "email": ok}, now=now + dt.timedelta(days=1))
    assert ok.sent == []


def test_enqueue_refuses_case_content(db_session):
    from referral.errors import ValidationFailed

    with pytest.raises(ValidationFailed):
        enqueue(db.session, "new_offer", {"reference": "CanarySurvivorName"}, channel=Channel.sms, address="+1")
    with pytest.raises(ValidationFailed):
        enqueue(db.session, "new_offer", {"name": "Aigul"}, channel=Channel.sms, address="+1")
    assert messages() == []


def test_inactive_users_are_not_told(make_user, db_session):
    user = make_user("officer")
    user.active = False
    assert notify_user(db.session, user, "new_offer", reference="R-AAAA-BBBB") is None


def test_escalation_withdrawal_service_referral_and_break_glass_notify(client, place, people, officers, login_as):
    from tests.factories import OrganisationFactory

    supervisor = people["supervisor"][0]
    # No officer speaks Uzbek: escalated, the supervisor is told.
    client.post("/api/v1/referrals", json={**minimal(place["district"].code),
                                           "survivor": {"age_group": "26-40", "language": "uz"}},
                headers=people["focal"][1])
    assert [m.user_id for m in messages("escalation")] == [supervisor.id]
    case = client.post("/api/v1/referrals", json=submission(place["district"].code),
                       headers=people["focal"][1]).get_json()
    (officer, officer_h) = officers[0]
    client.post(f"/api/v1/referrals/{case['id']}/accept", headers=officer_h)
    clinic = OrganisationFactory(kind="provider", areas=[place["district"]], service_types=["health"])
    staff, _h = login_as("service_provider", organisation=clinic)
    client.post(f"/api/v1/referrals/{case['id']}/service-referrals", headers=officer_h,
                json={"provider_id": clinic.id, "service_type": "health", "share": []})
    assert [m.user_id for m in messages("service_referral")] == [staff.id]
    client.post(f"/api/v1/referrals/{case['id']}/withdraw", headers=people["focal"][1])
    assert [m.user_id for m in messages("withdrawn")] == [officer.id]
    first, first_h = login_as("oversight")
    second, _h2 = login_as("oversight")
    client.post("/api/v1/break-glass", headers=first_h,
                json={"case_id": case["id"], "justification": "Complaint 2026/12 about this case."})
    told = {m.user_id for m in messages("break_glass")}
    assert second.id in told and first.id not in told


class Gateway(BaseHTTPRequestHandler):
    """A gateway on loopback that honours Idempotency-Key: the same key is delivered once."""

    delivered: dict = {}
    calls: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        key = self.headers["Idempotency-Key"]
        Gateway.calls.append((key, self.headers.get("Authorization")))
        Gateway.delivered.setdefault(key, body)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture()
def gateway():
    Gateway.delivered, Gateway.calls = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/send"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_http_gateway_gets_the_key_and_a_resend_is_delivered_once(gateway):
    adapter = HttpSmsAdapter(gateway, "gw-key")
    adapter.send("k1", "+996555000111", "Amanat: new case R-AAAA-BBBB for you. Please log in.")
    adapter.send("k1", "+996555000111", "Amanat: new case R-AAAA-BBBB for you. Please log in.")  # a retry
    assert list(Gateway.delivered) == ["k1"] and len(Gateway.calls) == 2
    assert Gateway.calls[0][1] == "Bearer gw-key"
    assert Gateway.delivered["k1"] == {"to": "+996555000111",
                                       "text": "Amanat: new case R-AAAA-BBBB for you. Please log in."}


def test_http_gateway_errors_are_retryable_failures():
    with pytest.raises(DeliveryFailed):
        HttpSmsAdapter("http://127.0.0.1:9/none", None, timeout=2).send("k", "+1", "x")


class Redirecting(BaseHTTPRequestHandler):
    """A gateway address that moved: it answers every request with a redirect elsewhere, where a GET gets 200."""

    target = ""
    seen: list = []

    def do_POST(self):  # noqa: N802
        Redirecting.seen.append(("POST", self.path, self.headers.get("Authorization")))
        self.send_response(301)
        self.send_header("Location", Redirecting.target)
        self.end_headers()

    def do_GET(self):  # noqa: N802
        Redirecting.seen.append(("GET", self.path, self.headers.get("Authorization")))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def test_a_redirecting_gateway_is_a_failure_to_retry_and_never_gets_the_key_twice():
    """urllib would repeat the POST as a bodiless GET, and take the bearer key along: a 200 for that would
    mark an undelivered message sent. A redirect is a failure instead, retried later."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Redirecting.seen, Redirecting.target = [], f"http://127.0.0.1:{server.server_port}/elsewhere"
    try:
        with pytest.raises(DeliveryFailed, match="301"):
            HttpSmsAdapter(f"http://127.0.0.1:{server.server_port}/send", "gw-key").send("k1", "+1", "x")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert Redirecting.seen == [("POST", "/send", "Bearer gw-key")]


def test_a_message_to_an_account_deactivated_since_it_was_queued_is_not_delivered(make_user, db_session):
    officer = make_user("officer")
    notify_user(db.session, officer, "new_offer", reference="R-AAAA-BBBB")
    officer.active = False
    db.session.commit()
    sent = Recorder()
    deliver(db.session, {"sms": sent, "email": sent})
    message = db.session.scalar(select(OutboxMessage).where(OutboxMessage.user_id == officer.id))
    assert message.status is MessageStatus.dead and message.last_error == "account deactivated"
    assert sent.sent == []


def test_console_adapter_prints(capsys):
    ConsoleAdapter("sms").send("k9", "+996555000111", "Amanat: received. Reference R-AAAA-BBBB.")
    assert "R-AAAA-BBBB" in capsys.readouterr().out


def test_cli_delivers_once_with_the_console(runner, client, place, people, officers, capsys):
    client.post("/api/v1/referrals", json=minimal(place["district"].code), headers=people["focal"][1])
    result = runner.invoke(args=["outbox", "deliver", "--once"])
    assert result.exit_code == 0 and json.loads(result.output.strip().splitlines()[-1])["sent"] >= 1


def test_the_survivor_is_told_only_with_sms_consent_and_sms_as_her_safe_contact(client, place, people, officers):
    from referral.audit.models import AuditEvent

    values = canaries()
    body = submission(place["district"].code, values)  # sms_contact consent, safe contact by SMS
    case = client.post("/api/v1/referrals", json=body, headers=people["focal"][1]).get_json()
    officer_h = officers[0][1]
    client.post(f"/api/v1/referrals/{case['id']}/accept", headers=officer_h)
    [message] = messages("survivor_contact")
    assert message.address is None and message.survivor_case_id == case["id"] and message.params == "{}"
    sms = Recorder()
    deliver(db.session, {"sms": sms, "email": Recorder()})
    to_her = [s for s in sms.sent if s[0] == message.key]
    assert to_her and to_her[0][1] == values["survivor.phone"]
    assert not any(v in to_her[0][2] for v in values.values())
    opened = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "outbox.deliver"))
    assert opened.object_id == case["id"] and json.loads(opened.fields) == ["survivor.phone"]
    # No consent, or another safe-contact method: nothing for her.
    for change in ({"consent": {**body["consent"], "sms_contact": False}},
                   {"survivor": {**body["survivor"], "safe_contact": {"method": "in_person"}}}):
        other = client.post("/api/v1/referrals", json={**body, **change}, headers=people["focal"][1]).get_json()
        from referral.referrals.workflow_models import Offer

        offered = db.session.scalar(select(Offer.officer_id).where(Offer.referral_id == other["id"]))
        headers = {user.id: h for user, h in officers}[offered]
        assert client.post(f"/api/v1/referrals/{other['id']}/accept", headers=headers).status_code == 200
        assert [m.survivor_case_id for m in messages("survivor_contact")] == [case["id"]]


@pytest.fixture()
def smtp_server():
    """A real SMTP server on loopback (aiosmtpd) that keeps what it receives."""
    from aiosmtpd.controller import Controller

    class Keep:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            self.messages.append(envelope)
            return "250 OK"

    import socket

    with socket.socket() as probe:  # a free port: the controller checks it can connect, so 0 will not do
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    handler = Keep()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, handler
    finally:
        controller.stop()


def test_smtp_adapter_delivers_to_a_real_server(smtp_server):
    from referral.notify.adapters import SmtpAdapter

    port, handler = smtp_server
    SmtpAdapter("127.0.0.1", port, "amanat@test.example", security="none").send(
        "k42", "officer@test.example", "Amanat: new case R-AAAA-BBBB for you. Please log in.")
    [envelope] = handler.messages
    assert envelope.rcpt_tos == ["officer@test.example"] and envelope.mail_from == "amanat@test.example"
    data = envelope.content.decode()
    assert "R-AAAA-BBBB" in data and "Message-ID: <k42@amanat>" in data


def test_smtp_adapter_failure_is_retryable():
    from referral.notify.adapters import SmtpAdapter

    with pytest.raises(DeliveryFailed):
        SmtpAdapter("127.0.0.1", 9, "amanat@test.example", timeout=2, security="none").send("k", "a@b.example", "x")


def test_a_withdrawn_consent_stops_a_queued_message_to_her(client, place, people, officers):
    body = submission(place["district"].code)
    case = client.post("/api/v1/referrals", json=body, headers=people["focal"][1]).get_json()
    client.post(f"/api/v1/referrals/{case['id']}/accept", headers=officers[0][1])
    [message] = messages("survivor_contact")
    resp = client.post(f"/api/v1/referrals/{case['id']}/consents", headers=officers[0][1],
                       json={"scope": "sms_contact", "granted": False})
    assert resp.status_code in (200, 201)
    sms = Recorder()
    deliver(db.session, {"sms": sms, "email": Recorder()})
    assert [s for s in sms.sent if s[0] == message.key] == []
    message = messages("survivor_contact")[0]
    assert message.status is MessageStatus.dead and message.last_error == "no longer allowed to contact her"


def test_an_unexpected_error_never_stops_the_queue(db_session):
    first = enqueue(db.session, "break_glass", {}, channel=Channel.sms, address="+996555000001")
    second = enqueue(db.session, "break_glass", {}, channel=Channel.sms, address="+996555000002")
    db.session.commit()  # queued by an earlier request

    class Breaks:
        sent = []

        def send(self, key, address, text):
            if key == first.key:
                raise RuntimeError("CanarySurvivorName in a stack trace")
            self.sent.append(key)

    adapter = Breaks()
    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    counts = deliver(db.session, {"sms": adapter, "email": adapter}, now=now)
    assert counts == {"sent": 1, "retry": 1, "dead": 0} and adapter.sent == [second.key]
    broken = db.session.scalar(select(OutboxMessage).where(OutboxMessage.key == first.key))
    assert broken.status is MessageStatus.pending and broken.attempts == 1
    assert broken.last_error == "unexpected RuntimeError"  # the type only, never the text


def test_the_console_masks_the_address(capsys):
    ConsoleAdapter("sms").send("k9", "+996555000123", "Amanat: received. Reference R-AAAA-BBBB.")
    out = capsys.readouterr().out
    assert "+996555000123" not in out and "123" in out


def test_reassignment_tells_the_new_officer(client, place, people, officers):
    (first, first_h), (second, _h) = officers
    case = client.post("/api/v1/referrals", json=minimal(place["district"].code),
                       headers=people["focal"][1]).get_json()
    offered = {m.user_id for m in messages("new_offer")}
    target = second if second.id not in offered else first
    resp = client.post(f"/api/v1/referrals/{case['id']}/reassign", headers=people["supervisor"][1],
                       json={"officer_id": target.id})
    assert resp.status_code == 200
    assert messages("new_offer")[-1].user_id == target.id


def test_the_coordinator_hears_of_a_services_only_case(client, place, people, login_as):
    from tests.factories import OrganisationFactory

    coordinator = OrganisationFactory(kind="provider", areas=[place["district"]], service_types=["psychosocial"],
                                      coordinator=True)
    staff, _h = login_as("service_provider", organisation=coordinator)
    body = minimal(place["district"].code)
    body["consent"] = {**body["consent"], "police": False, "services": True}
    resp = client.post("/api/v1/referrals", json=body, headers=people["focal"][1])
    assert resp.get_json()["status"] == "services_only"
    assert [m.user_id for m in messages("service_referral")] == [staff.id]


def test_sla_tick_tells_the_supervisor_of_a_missed_deadline_and_officers_of_expiring_certificates(
        client, runner, place, people, officers, make_user, certify):
    import time_machine

    from referral.standards.services import add_months

    t0 = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)
    with time_machine.travel(t0, tick=False):
        case = client.post("/api/v1/referrals", json=minimal(place["district"].code),
                           headers=people["focal"][1]).get_json()
    assert messages("breach") == []
    assert runner.invoke(args=["sla", "tick", "--now", (t0 + dt.timedelta(hours=25)).isoformat()]).exit_code == 0
    [breach] = messages("breach")
    assert breach.user_id == people["supervisor"][0].id
    assert json.loads(breach.params) == {"reference": case["reference"]}
    soon = make_user("officer")
    today = dt.date.today()
    certify(soon, "core", completed=add_months(today, -24) + dt.timedelta(days=10))
    runner.invoke(args=["sla", "tick", "--now", dt.datetime.now(dt.UTC).isoformat()])
    [reminder] = [m for m in messages("certificate_expiring") if m.user_id == soon.id]
    from referral.standards.models import Certification

    expires = db.session.scalar(select(Certification.expires_on).where(Certification.user_id == soon.id))
    assert json.loads(reminder.params) == {"date": expires.isoformat()}


def test_the_polling_worker_outlives_a_lost_database_connection(runner, monkeypatch):
    """A database restart between polls: the pool has thrown the connection away; the worker says so and
    polls again instead of dying. Any other database error still ends it."""
    from sqlalchemy.exc import OperationalError

    from referral.notify import outbox

    class Stop(Exception):
        pass

    calls: list[str] = []

    def flaky(session, adapters, *, limit=None):  # type: ignore[no-untyped-def]
        calls.append("poll")
        if len(calls) == 1:
            raise OperationalError("SELECT …", {}, Exception("server closed the connection"),
                                   connection_invalidated=True)
        if len(calls) == 2:
            return {"sent": 1, "retry": 0, "dead": 0}
        raise Stop()

    slept: list[float] = []
    monkeypatch.setattr(outbox, "deliver", flaky)
    monkeypatch.setattr("referral.notify.cli.time.sleep", slept.append)
    result = runner.invoke(args=["outbox", "deliver", "--interval", "2"])
    assert isinstance(result.exception, Stop) and calls == ["poll", "poll", "poll"] and slept == [2.0]

    def broken(session, adapters, *, limit=None):  # type: ignore[no-untyped-def]
        raise OperationalError("SELECT …", {}, Exception("relation does not exist"))

    monkeypatch.setattr(outbox, "deliver", broken)
    result = runner.invoke(args=["outbox", "deliver", "--interval", "2"])
    assert isinstance(result.exception, OperationalError) and slept == [2.0]
