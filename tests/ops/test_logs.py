"""Structured logs: one JSON object per line, each with the request id, and no case content in any of them.

The scenario submits and reads cases with canary values through the API and the web form, then
provokes a validation error, malformed JSON, 404s (a case id, a path and a query holding case text)
and a 500 whose exception text quotes case content. Every line the JSON handler wrote and every
record caplog saw is then searched for each canary (plain, base64, UTF-16).
"""
from __future__ import annotations

import io
import json
import logging
import secrets

import pyotp
import pytest

from referral.ops.logs import JsonFormatter, json_handler, redacted_traceback
from tests.factories import PASSWORD
from tests.referrals.helpers import canaries, submission
from tests.test_leaks import assert_absent
from tests.web.helpers import csrf_token, web_login
from tests.web.test_focal_pages import FORM

REQUIRED = {"time", "level", "logger", "message", "request_id", "context"}


@pytest.fixture()
def json_lines(caplog):
    """Everything the JSON handler writes during the test (as parsed objects), at DEBUG and up."""
    handler = json_handler()
    assert handler is not None, "create_app must install the JSON handler on the root logger"
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    caplog.set_level(logging.DEBUG)
    captured: dict[str, object] = {"raw": buffer}
    try:
        yield captured
    finally:
        handler.setStream(previous)


def parsed(buffer: io.StringIO) -> list[dict]:
    lines = buffer.getvalue().splitlines()
    assert lines, "nothing was logged"
    return [json.loads(line) for line in lines]  # raises on any line that is not one JSON object


def test_no_case_content_reaches_the_logs(app, client, place, people, officers, json_lines, caplog, monkeypatch):
    values = canaries()
    focal, focal_h = people["focal"]
    supervisor, sup_h = people["supervisor"]
    responses = []

    def keep(resp):  # type: ignore[no-untyped-def]
        responses.append(resp)
        return resp

    # The API: submit, add information, read the content back.
    created = keep(client.post("/api/v1/referrals", json=submission(place["district"].code, values),
                               headers=focal_h))
    assert created.status_code == 201
    case_id, reference = created.get_json()["id"], created.get_json()["reference"]
    values["note"] = f"CanaryNote{secrets.token_hex(3)} she is with her sister"
    assert keep(client.post(f"/api/v1/referrals/{case_id}/information", json={"text": values["note"]},
                            headers=focal_h)).status_code == 201
    read = keep(client.get(f"/api/v1/referrals/{case_id}", headers=sup_h))
    assert read.status_code == 200 and values["survivor.name"] in read.get_data(as_text=True)

    # The web form, and the supervisor's case page.
    web = app.test_client()
    web_login(web, focal.email, PASSWORD)
    page = keep(web.get("/referrals/new")).get_data(as_text=True)
    form = {**FORM, "area": place["village"].code, "csrf_token": csrf_token(page),
            "name": f"CanaryWebName{secrets.token_hex(3)}", "phone": "+996555" + str(secrets.randbelow(900000) + 100000),
            "contact_notes": f"CanaryWebNotes{secrets.token_hex(3)}", "narrative": f"CanaryWebStory{secrets.token_hex(3)}"}
    values.update({"web.name": form["name"], "web.phone": form["phone"], "web.notes": form["contact_notes"],
                   "web.narrative": form["narrative"]})
    sent = keep(web.post("/referrals/new", data=form))
    assert sent.status_code == 302
    web_case = sent.headers["Location"].split("/referrals/")[1].split("?")[0]
    keep(web.get(f"/referrals/{web_case}"))
    sup_web = app.test_client()
    web_login(sup_web, supervisor.email, PASSWORD, pyotp.TOTP(supervisor.totp_secret_plain).now())
    shown = keep(sup_web.get(f"/cases/{web_case}"))
    assert shown.status_code == 200 and form["narrative"] in shown.get_data(as_text=True)

    # Errors carrying case content in the request.
    bad = submission(place["district"].code, values)
    bad["survivor"]["sex"] = values["survivor.name"]
    bad[values["perpetrator.name"]] = values["incident.narrative"]
    assert keep(client.post("/api/v1/referrals", json=bad, headers=focal_h)).status_code == 422
    assert keep(client.post("/api/v1/referrals", data=values["incident.narrative"] + "{",
                            content_type="application/json", headers=focal_h)).status_code == 400
    assert keep(web.post("/referrals/new", data={**form, "area": "NOT-MINE"})).status_code == 422
    assert keep(web.post("/referrals/new", data={**form, "csrf_token": "stale"})).status_code == 400
    assert keep(client.get(f"/api/v1/referrals/{values['survivor.name']}", headers=sup_h)).status_code == 404
    assert keep(client.get(f"/nowhere/{values['perpetrator.name']}?q={values['survivor.phone']}")).status_code == 404
    assert keep(client.get(f"/api/v1/referrals?q={values['survivor.address']}", headers=focal_h)).status_code in (200, 422)

    # A 500 whose exception text quotes case content (as a database error quoting a value would).
    from referral.referrals import services

    def broken(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError(f"cannot render {values['survivor.name']} / {values['incident.narrative']}")

    monkeypatch.setattr(services, "read_referral", broken)
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)
    failed = keep(client.get(f"/api/v1/referrals/{case_id}", headers=sup_h))
    assert failed.status_code == 500

    lines = parsed(json_lines["raw"])
    raw = json_lines["raw"].getvalue()
    assert_absent(raw.encode("utf-8"), values, "the JSON log stream")
    assert case_id not in raw and reference not in raw and web_case not in raw
    for record in caplog.records:
        assert_absent(record.getMessage().encode("utf-8"), values, f"log record {record.name}")

    # Every line: the fields, and inside a request the id the client was given.
    given = {resp.headers["X-Request-ID"] for resp in responses}
    assert "" not in given and len(given) == len(responses)
    access = [line for line in lines if line["logger"] == "referral.access"]
    answered = {line["request_id"] for line in access}
    assert given <= answered and len(answered) == len(access)  # one access line per request
    for line in lines:
        assert REQUIRED <= line.keys(), line
        if line["context"] == "http":
            assert line["request_id"] in answered, line
    rules = {rule.rule for rule in app.url_map.iter_rules()} | {"<unmatched>"}
    for line in access:
        assert line["path"] in rules and isinstance(line["status"], int) and line["duration_ms"] >= 0, line
    assert {"/api/v1/referrals/<referral_id>", "/referrals/new", "<unmatched>"} <= {line["path"] for line in access}
    assert {400, 404, 422, 500} <= {line["status"] for line in access}

    # The 500 was logged with its traceback (testing), and the traceback says what failed, not the text.
    crash = [line for line in lines if line["level"] == "ERROR" and "exc_info" in line]
    assert crash and crash[0]["request_id"] == failed.headers["X-Request-ID"]
    assert "builtins.RuntimeError (message withheld)" in crash[0]["exc_info"]
    assert "broken" in crash[0]["exc_info"]  # the frame is there


def test_a_traceback_keeps_frames_and_types_and_drops_messages():
    try:
        try:
            raise KeyError("CanaryInner")
        except KeyError as exc:
            raise ValueError("CanaryOuter") from exc
    except ValueError as exc:
        text = redacted_traceback(exc)
    assert "Canary" not in text.replace('raise KeyError("CanaryInner")', "").replace(
        'raise ValueError("CanaryOuter") from exc', "")  # source lines are code, not data
    assert text.index("builtins.KeyError (message withheld)") < text.index("builtins.ValueError (message withheld)")
    assert text.count("Traceback (most recent call last):") == 2


def test_lines_outside_a_request_have_a_null_id_or_the_command(app, runner, json_lines):
    logging.getLogger("referral.test").warning("outside any request")
    result = runner.invoke(args=["outbox", "deliver", "--once"])
    assert result.exit_code == 0, result.output
    logging.getLogger("referral.test").info("after the command")
    lines = parsed(json_lines["raw"])
    outside = [line for line in lines if line["logger"] == "referral.test"]
    assert [line["request_id"] for line in outside] == [None, None]
    assert all(line["context"] is None for line in outside)


def test_a_command_names_itself_as_the_context():
    import click

    formatter = JsonFormatter()

    @click.command("deliver")
    def deliver() -> None:
        record = logging.getLogger("referral.worker").makeRecord(
            "referral.worker", logging.INFO, __file__, 1, "delivered %d", (3,), None)
        click.echo(formatter.format(record))

    from click.testing import CliRunner

    line = json.loads(CliRunner().invoke(deliver, prog_name="outbox").output)
    assert line["context"] == "cli:outbox" and line["request_id"] is None and line["message"] == "delivered 3"


def test_refusals_before_any_view_still_carry_the_request_id(client, people, json_lines):
    """The CSRF check runs in a before_request hook registered before ours: the id is set earlier."""
    focal, _ = people["focal"]
    web_login(client, focal.email, PASSWORD)
    resp = client.post("/referrals/new", data={"area": "x"})
    assert resp.status_code == 400
    assert len(resp.headers["X-Request-ID"]) == 32
    access = [line for line in parsed(json_lines["raw"]) if line["logger"] == "referral.access"]
    assert access[-1]["request_id"] == resp.headers["X-Request-ID"] and access[-1]["status"] == 400


def test_a_supplied_request_id_is_kept_and_a_malformed_one_replaced(client, json_lines):
    kept = client.get("/healthz", headers={"X-Request-ID": "proxy-abc.123_XYZ"})
    replaced = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert kept.headers["X-Request-ID"] == "proxy-abc.123_XYZ"
    assert replaced.headers["X-Request-ID"] != "bad id with spaces"
    ids = [line["request_id"] for line in parsed(json_lines["raw"]) if line["logger"] == "referral.access"]
    assert ids == [kept.headers["X-Request-ID"], replaced.headers["X-Request-ID"]]


def test_the_log_level_setting(monkeypatch, tmp_path):
    from config.settings import ConfigError, load_settings
    from referral import create_app
    from tests.conftest import app_settings

    monkeypatch.setenv("REFERRAL_LOG_LEVEL", "loud")
    with pytest.raises(ConfigError, match="REFERRAL_LOG_LEVEL"):
        load_settings({"ENV_NAME": "testing"})
    monkeypatch.setenv("REFERRAL_LOG_LEVEL", "warning")
    assert load_settings({"ENV_NAME": "testing"})["LOG_LEVEL"] == "WARNING"
    try:
        quiet = create_app({**app_settings("sqlite:///" + str(tmp_path / "q.sqlite3"), tmp_path), "LOG_LEVEL": "WARNING"})
        assert not logging.getLogger("referral.access").isEnabledFor(logging.INFO)  # no access lines
        assert logging.getLogger("referral.access").isEnabledFor(logging.WARNING)
        assert quiet.test_client().get("/healthz").status_code == 200
    finally:
        logging.getLogger("referral").setLevel(logging.INFO)


def test_gunicorn_with_its_config_writes_only_json_lines(tmp_path):
    """Boot, worker and shutdown lines from gunicorn, the app's access lines: all JSON, and no raw path."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "REFERRAL_ENV": "testing", "REFERRAL_DATABASE_URL": "sqlite:///" + str(tmp_path / "g.sqlite3"),
           "REFERRAL_KEYRING": str(tmp_path / "keyring.json")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    stderr = tmp_path / "gunicorn.err"
    with open(stderr, "wb") as err:
        server = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "-c", "config/gunicorn.py", "-w", "2",
                                   "-b", f"127.0.0.1:{port}", "wsgi:app"], cwd=root, env=env,
                                  stdout=subprocess.DEVNULL, stderr=err)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/referrals/CanaryInPath?q=CanaryInQuery", timeout=5)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    text = stderr.read_text()
    lines = [json.loads(line) for line in text.splitlines()]  # every line, gunicorn's too, is JSON
    loggers = {line["logger"] for line in lines}
    assert {"gunicorn.error", "referral.access"} <= loggers
    assert any(line["message"].startswith("Booting worker") for line in lines)
    assert "Canary" not in text
    access = [line for line in lines if line["logger"] == "referral.access"]
    assert access[-1]["path"] == "/api/v1/referrals/<referral_id>" and access[-1]["status"] == 401
    assert access[-1]["request_id"]
