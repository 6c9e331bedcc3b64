"""/metrics: refused to all but the operator's scrape token; request, queue and breach metrics; no
label value that names a case or a person; worker processes added up in multiprocess mode."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from config.settings import ConfigError, load_settings
from referral.extensions import db
from tests.referrals.helpers import canaries, submission

TOKEN = "t" * 24 + "-operator-scrape-secret"
OPERATOR = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture()
def enabled(app, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setitem(app.config, "METRICS_TOKEN", TOKEN)


def samples(text: str) -> dict[str, list]:
    found: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def test_without_a_token_setting_there_is_no_metrics_endpoint(client):
    assert client.get("/metrics", headers=OPERATOR).status_code == 404


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": f"Bearer {TOKEN[:-1]}"},
], ids=["none", "wrong", "longer", "basic", "shorter"])
def test_anyone_without_the_scrape_token_is_refused(client, enabled, headers):
    resp = client.get("/metrics", headers=headers)
    assert resp.status_code == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert b"amanat_" not in resp.data


@pytest.mark.parametrize("role", ["admin", "oversight", "supervisor"])
def test_a_user_token_is_not_the_scrape_token(client, enabled, login_as, role):
    _user, headers = login_as(role)
    assert client.get("/metrics", headers=headers).status_code == 401


def test_the_operator_gets_the_named_metrics_and_no_label_names_a_case(client, enabled, place, people, officers):
    from referral.notify.models import Channel, MessageStatus, OutboxMessage
    from referral.referrals.workflow_models import Offer, OfferStatus
    from referral.standards.models import StepBreach

    values = canaries()
    focal_h = people["focal"][1]
    sup_h = people["supervisor"][1]
    created = client.post("/api/v1/referrals", json=submission(place["district"].code, values), headers=focal_h)
    assert created.status_code == 201
    case_id, reference = created.get_json()["id"], created.get_json()["reference"]
    assert client.get(f"/api/v1/referrals/{case_id}", headers=sup_h).status_code == 200
    assert client.get(f"/api/v1/referrals/{values['survivor.name']}", headers=sup_h).status_code == 404
    assert client.get(f"/no/such/{values['perpetrator.name']}").status_code == 404
    assert client.open("/healthz", method="BREW").status_code == 405
    now = dt.datetime.now(dt.UTC)
    db.session.add_all([
        OutboxMessage(key="metrics-dead", channel=Channel.sms, template="x", language="en", status=MessageStatus.dead,
                      next_attempt_at=now),
        OutboxMessage(key="metrics-old", channel=Channel.sms, template="x", language="en",
                      next_attempt_at=now, created_at=now - dt.timedelta(hours=2)),
        StepBreach(referral_id=case_id, step_code="first_contact", due_at=now, recorded_at=now)])
    db.session.commit()

    resp = client.get("/metrics", headers=OPERATOR)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert resp.headers["Cache-Control"] == "no-store"
    text = resp.get_data(as_text=True)
    found = samples(text)

    def value(name: str, **labels: str) -> float:
        matching = [s.value for s in found[name] if all(s.labels.get(k) == v for k, v in labels.items())]
        assert matching, (name, labels)
        return sum(matching)

    assert value("amanat_http_requests_total", endpoint="/api/v1/referrals", method="POST", status="201") >= 1
    assert value("amanat_http_requests_total", endpoint="/api/v1/referrals/<referral_id>", status="404") >= 1
    assert value("amanat_http_requests_total", endpoint="<unmatched>", status="404") >= 1
    assert value("amanat_http_requests_total", endpoint="<unmatched>", method="OTHER", status="405") >= 1
    assert value("amanat_http_request_duration_seconds_count", endpoint="/api/v1/referrals/<referral_id>",
                 method="GET", status="200") >= 1
    assert value("amanat_http_request_duration_seconds_bucket", endpoint="/api/v1/referrals", le="+Inf") >= 1
    pending = db.session.scalar(select(func.count()).select_from(OutboxMessage)
                                .where(OutboxMessage.status == MessageStatus.pending))
    assert pending >= 1
    assert value("amanat_outbox_messages", status="pending") == pending
    assert value("amanat_outbox_messages", status="dead") == 1
    assert 7000 < value("amanat_outbox_oldest_pending_seconds") < 7400
    open_offers = db.session.scalar(select(func.count()).select_from(Offer).where(Offer.status == OfferStatus.open))
    assert open_offers >= 1 and value("amanat_offers_open") == open_offers
    assert value("amanat_offers_overdue") == 0
    assert value("amanat_compliance_breaches", step="first_contact") == 1
    assert value("amanat_database_up") == 1

    rules = {rule.rule for rule in client.application.url_map.iter_rules()} | {"<unmatched>"}
    identifying = [case_id, reference, *values.values()]
    for sample_list in found.values():
        for sample in sample_list:
            for label, label_value in sample.labels.items():
                assert not any(part in label_value for part in identifying), (sample.name, label, label_value)
                if label == "endpoint":
                    assert label_value in rules, label_value
    for part in identifying:
        assert part not in text
    openmetrics = client.get("/metrics", headers={**OPERATOR, "Accept": "application/openmetrics-text"})
    assert openmetrics.headers["Content-Type"].startswith("application/openmetrics-text")
    assert openmetrics.get_data(as_text=True).rstrip().endswith("# EOF")


def test_a_database_that_does_not_answer_is_a_gauge_not_an_error(unreachable_app):
    unreachable_app.config["METRICS_TOKEN"] = TOKEN
    resp = unreachable_app.test_client().get("/metrics", headers=OPERATOR)
    assert resp.status_code == 200
    found = samples(resp.get_data(as_text=True))
    assert [s.value for s in found["amanat_database_up"]] == [0]
    assert "amanat_offers_open" not in found


def test_the_token_setting_must_be_long(monkeypatch):
    monkeypatch.setenv("REFERRAL_METRICS_TOKEN", "short")
    with pytest.raises(ConfigError, match="REFERRAL_METRICS_TOKEN"):
        load_settings({"ENV_NAME": "testing"})
    monkeypatch.setenv("REFERRAL_METRICS_TOKEN", TOKEN)
    assert load_settings({"ENV_NAME": "testing"})["METRICS_TOKEN"] == TOKEN


WORKER = textwrap.dedent("""
    import sys
    from referral import create_app

    app = create_app({"ENV_NAME": "testing", "SQLALCHEMY_DATABASE_URI": "sqlite:///" + sys.argv[1],
                      "KEYRING_PATH": sys.argv[2], "METRICS_TOKEN": sys.argv[3]})
    client = app.test_client()
    for _ in range(int(sys.argv[4])):
        assert client.get("/healthz").status_code == 200
    if sys.argv[5] == "scrape":
        resp = client.get("/metrics", headers={"Authorization": "Bearer " + sys.argv[3]})
        sys.stdout.write(resp.get_data(as_text=True))
""")


def test_multiprocess_mode_adds_up_every_worker(tmp_path):
    """As under gunicorn with PROMETHEUS_MULTIPROC_DIR: two workers count, a third one's scrape sums them."""
    directory = tmp_path / "prom"
    directory.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "REFERRAL_ENV": "testing"}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    def run(requests: int, mode: str) -> str:
        done = subprocess.run([sys.executable, "-c", WORKER, str(tmp_path / "mp.sqlite3"), str(tmp_path / "kr.json"),
                               TOKEN, str(requests), mode], env=env, cwd=root, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    run(3, "count")
    run(4, "count")
    found = samples(run(0, "scrape"))
    healthz = [s.value for s in found["amanat_http_requests_total"] if s.labels["endpoint"] == "/healthz"]
    assert healthz == [7]
    assert any(path.name.startswith("counter_") for path in directory.iterdir())
    assert "process_resident_memory_bytes" not in found  # per-process collectors are off in this mode
