"""OWASP ASVS 5.0 requirements Amanat claims for its web and API surface, one test (or more) each.

Every test name starts with the requirement it proves (``v3_4_3`` is ASVS 5.0.0
V3.4.3) and its docstring quotes what is checked. Unit-level checks that
already exist elsewhere are named where they are, not repeated: the password
rule function (tests/accounts/test_passwords_totp.py), the API lockout and API
TOTP replay (tests/accounts/test_tokens_api.py), the web timeouts walked minute
by minute (tests/web/test_login_sessions.py), CSRF on the session-authenticated
API (same file). The tests here prove each requirement at the HTTP edge, on every
route or response kind where the requirement says "every".
"""
from __future__ import annotations

import datetime as dt
import re

import pyotp
import pytest
import time_machine
from flask import url_for
from sqlalchemy import select

from referral.accounts.models import Role, UserSession
from referral.extensions import db
from referral.security import limits, passwords
from referral.security.permissions import PUBLIC, declared_access
from tests.conftest import IsolatedClient, app_settings
from tests.factories import PASSWORD
from tests.referrals.helpers import minimal
from tests.web.helpers import csrf_token, enrol, web_login

T0 = dt.datetime(2026, 11, 25, 8, 0, 0, tzinfo=dt.UTC)
YEAR = 365 * 24 * 3600


def code(user, when=None):
    return pyotp.TOTP(user.totp_secret_plain).at(when or dt.datetime.now(dt.UTC))


def csp(response) -> dict[str, set[str]]:
    """The Content-Security-Policy as {directive: {sources}}."""
    header = response.headers.get("Content-Security-Policy", "")
    policy: dict[str, set[str]] = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            policy[words[0].lower()] = set(words[1:])
    return policy


@pytest.fixture()
def case(client, place, people, officers):
    _focal, focal_h = people["focal"]
    resp = client.post("/api/v1/referrals", json=minimal(place["district"].code), headers=focal_h)
    assert resp.status_code == 201
    return resp.get_json()


@pytest.fixture()
def production_app(app, database_url, db_session, tmp_path, monkeypatch):
    """The production configuration on the test database (its secrets from the environment, as it demands)."""
    from referral import create_app

    for var in ("REFERRAL_REDIS_URL", "REFERRAL_RATELIMIT_ENABLED", "REFERRAL_PROXY_HOPS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("REFERRAL_ENV", "production")
    monkeypatch.setenv("REFERRAL_SECRET_KEY", "p" * 48)
    monkeypatch.setenv("REFERRAL_SMS_SECRET", "g" * 48)
    monkeypatch.setenv("REFERRAL_DATABASE_URL", database_url)
    monkeypatch.setenv("REFERRAL_KEYRING", app.config["KEYRING_PATH"])
    settings = app_settings(database_url, tmp_path)
    settings.pop("ENV_NAME")
    settings["KEYRING_PATH"] = app.config["KEYRING_PATH"]
    production = create_app(settings)
    production.test_client_class = IsolatedClient
    assert production.config["ENV_NAME"] == "production"
    yield production
    with production.app_context():
        db.engine.dispose()


def https_client(application):
    """A client that speaks HTTPS, as browsers do to production behind its TLS proxy: every request's URL is
    https:// (the test client ignores a wsgi.url_scheme in environ_base, so that alone stayed plain HTTP).
    Like a browser under the pages' no-referrer policy, it sends no Referer."""
    client = application.test_client()
    plain_open = client.open

    def open_https(*args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs.setdefault("base_url", "https://localhost")
        return plain_open(*args, **kwargs)

    client.open = open_https  # type: ignore[method-assign]
    return client


def kinds_of_response(client, officer, limited_client):
    """One response of every kind the service gives: pages, API, errors, redirects, static files, 429."""
    yield "login page", client.get("/login")
    yield "refused form post", client.post("/login", data={"email": "a@b.c"})
    yield "anonymous redirect", client.get("/")
    yield "web 404", client.get("/no-such-page")
    yield "web 405", client.delete("/login")
    static = client.get("/static/web/amanat.css")
    static.close()  # a file response: release the file now, not at garbage collection
    yield "static file", static
    yield "health", client.get("/healthz")
    yield "api 401", client.get("/api/v1/me")
    yield "api 404", client.get("/api/v1/no-such")
    yield "api 422", client.post("/api/v1/auth/tokens", json={"email": "not-an-address"})
    for _ in range(11):
        limited = limited_client.post("/api/v1/auth/tokens", json={"email": "x@test.amanat.example", "password": "p"})
    yield "api 429", limited
    web_login(client, officer.email, PASSWORD, code(officer))
    yield "signed-in page", client.get("/")
    yield "signed-in api", client.get("/api/v1/me")


@pytest.fixture()
def every_response(client, make_user, limited_app):
    officer = make_user("officer")
    responses = list(kinds_of_response(client, officer, limited_app().test_client()))
    assert {label for label, _r in responses} >= {"api 429", "static file", "signed-in page"}
    statuses = {r.status_code for _l, r in responses}
    assert statuses >= {200, 302, 400, 401, 404, 405, 422, 429}, statuses
    return responses


# -- V3.4 Browser security mechanism headers -------------------------------------------------------

def test_v3_4_3_every_response_has_a_csp_with_object_src_and_base_uri_none(every_response):
    """V3.4.3: every response carries a CSP defining object-src 'none' and base-uri 'none', with an
    allowlist ('self') for everything else and no 'unsafe-inline'/'unsafe-eval' anywhere."""
    for label, resp in every_response:
        policy = csp(resp)
        assert policy.get("object-src") == {"'none'"}, label
        assert policy.get("base-uri") == {"'none'"}, label
        assert policy.get("default-src") == {"'self'"}, label
        assert not any(src.startswith("'unsafe-") for sources in policy.values() for src in sources), label


def test_v3_4_6_every_response_forbids_framing_with_csp_frame_ancestors(every_response):
    """V3.4.6: frame-ancestors on every response, and 'none': no page of Amanat can be embedded."""
    for label, resp in every_response:
        assert csp(resp).get("frame-ancestors") == {"'none'"}, label


def test_v3_4_4_every_response_has_nosniff(every_response):
    """V3.4.4: X-Content-Type-Options: nosniff on all responses."""
    for label, resp in every_response:
        assert resp.headers.get("X-Content-Type-Options") == "nosniff", label


def test_v3_4_5_every_response_has_a_referrer_policy(every_response):
    """V3.4.5: a Referrer-Policy that keeps URLs (which may name a case) from other sites."""
    for label, resp in every_response:
        assert resp.headers.get("Referrer-Policy") == "no-referrer", label


def test_v3_4_2_no_response_opens_itself_to_other_origins(every_response, client):
    """V3.4.2: no Access-Control-Allow-Origin anywhere, whatever Origin a request names: the API is for
    bearer-token clients and Amanat's own pages, never for scripts on other sites."""
    probes = [("api with origin", client.get("/api/v1/me", headers={"Origin": "https://elsewhere.example"})),
              ("preflight", client.options("/api/v1/referrals", headers={
                  "Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"}))]
    for label, resp in every_response + probes:
        assert not any(name.lower().startswith("access-control-") for name in resp.headers.keys()), label


def test_v3_4_1_hsts_for_a_year_with_subdomains_on_every_production_response(production_app, make_user,
                                                                               limited_app):
    """V3.4.1: Strict-Transport-Security on all responses, max-age of at least a year, subdomains
    included (L2). Production only: development and tests speak plain HTTP on localhost."""
    officer = make_user("officer")
    client = https_client(production_app)
    for label, resp in kinds_of_response(client, officer, limited_app().test_client()):
        if label == "api 429":
            continue  # from the limited (testing) app; production's own limits are checked below
        hsts = resp.headers.get("Strict-Transport-Security", "")
        max_age = re.search(r"max-age=(\d+)", hsts)
        assert max_age and int(max_age.group(1)) >= YEAR, (label, hsts)
        assert "includesubdomains" in hsts.lower(), (label, hsts)


def test_v3_4_1_no_hsts_outside_production(every_response, limited_app):
    for label, resp in every_response:
        assert "Strict-Transport-Security" not in resp.headers, label
    development = limited_app(ENV_NAME="development")
    assert development.config["ENV_NAME"] == "development"
    assert "Strict-Transport-Security" not in development.test_client().get("/login").headers


# -- V3.3 Cookie setup ----------------------------------------------------------------------------

def set_cookies(response) -> list[tuple[str, dict[str, str]]]:
    """Each Set-Cookie header as (name, {attribute: value}) with attribute names lower-cased."""
    parsed = []
    for header in response.headers.getlist("Set-Cookie"):
        first, *attributes = [part.strip() for part in header.split(";")]
        name = first.split("=", 1)[0]
        attrs = {}
        for attribute in attributes:
            key, _sep, value = attribute.partition("=")
            attrs[key.lower()] = value
        parsed.append((name, attrs))
    return parsed


def test_v3_3_production_cookies_are_host_prefixed_secure_httponly_and_samesite(production_app, make_user):
    """V3.3.1 Secure; V3.3.3 the __Host- prefix (so also Path=/ and no Domain); V3.3.4 HttpOnly on the
    session cookie; V3.3.2 SameSite set for its purpose (Lax: a link from an SMS opens the page signed in,
    while cross-site posts carry no cookie and every form needs its CSRF token besides)."""
    officer = make_user("officer")
    client = https_client(production_app)
    page = client.get("/login")
    signed_in = client.post("/login", data={"email": officer.email, "password": PASSWORD, "otp": code(officer),
                                            "csrf_token": csrf_token(page.get_data(as_text=True))})
    assert signed_in.status_code == 302, signed_in.get_data(as_text=True)  # no Referer needed (no-referrer policy)
    assert client.get("/").status_code == 200  # the cookie works over HTTPS
    home = client.get("/")
    signed_out = client.post("/logout", data={"csrf_token": csrf_token(home.get_data(as_text=True))})
    assert signed_out.status_code == 302 and client.get("/").status_code == 302  # signed out, over HTTPS
    # The token is still what a form needs over HTTPS: without it, refused.
    again = client.get("/login")
    assert client.post("/login", data={"email": officer.email, "password": PASSWORD,
                                       "otp": code(officer)}).status_code == 400
    assert again.status_code == 200
    cookies = set_cookies(page) + set_cookies(signed_in) + set_cookies(signed_out)
    assert len(cookies) >= 3
    for name, attrs in cookies:
        assert name.startswith("__Host-"), name
        assert "secure" in attrs and "httponly" in attrs, (name, attrs)
        assert attrs.get("samesite", "").lower() in ("lax", "strict"), (name, attrs)
        assert attrs.get("path") == "/" and "domain" not in attrs, (name, attrs)


# -- V3.5.1 Anti-forgery tokens on every web form ----------------------------------------------------

SAMPLE_ARGS = {"decision": "approve", "verb": "accept"}


def test_v3_5_1_every_web_post_route_refuses_a_request_without_its_csrf_token(app, client, make_user, case):
    """V3.5.1: every POST route of the web blueprint, enumerated from the URL map, refuses a signed-in
    user's request that lacks the anti-forgery token (400, nothing done), and one with another session's
    token; the same request with its own token gets past the check."""
    admin = make_user("admin")
    web_login(client, admin.email, PASSWORD, code(admin))
    rules = [rule for rule in app.url_map.iter_rules()
             if rule.endpoint.startswith("web.") and "POST" in (rule.methods or ())]
    endpoints = {rule.endpoint for rule in rules}
    assert {"web.login", "web.logout", "web.new_referral", "web.case_accept", "web.admin_users"} <= endpoints
    other = app.test_client()
    foreign_token = csrf_token(other.get("/login").get_data(as_text=True))
    for rule in rules:
        values = {arg: SAMPLE_ARGS.get(arg, case["id"] if arg == "referral_id" else 1) for arg in rule.arguments}
        with app.test_request_context():
            url = url_for(rule.endpoint, **values)
        for data in ({"text": "x", "reason": "x"}, {"text": "x", "csrf_token": foreign_token}):
            resp = client.post(url, data=data)
            assert resp.status_code == 400, (rule.rule, resp.status_code)
            assert "The form expired" in resp.get_data(as_text=True), rule.rule
    # Nothing above took effect: the session the refused /logout posts aimed at is still open.
    home = client.get("/")
    assert home.status_code == 200
    assert client.post("/logout", data={"csrf_token": csrf_token(home.get_data(as_text=True))}).status_code == 302
    assert client.get("/").status_code == 302


def test_v3_5_1_no_web_view_is_exempt_from_the_csrf_check(app):
    """V3.5.1: the CSRF check is on for the app, and only the API blueprint (bearer tokens; session
    callers are checked in the request guard) is exempt from it."""
    from referral.extensions import csrf

    assert app.config.get("WTF_CSRF_ENABLED", True) and app.config.get("WTF_CSRF_CHECK_DEFAULT", True)
    assert csrf._exempt_views == set()
    assert {blueprint.name for blueprint in csrf._exempt_blueprints} == {"api"}


# -- V14.3.2 Anti-caching headers on sensitive answers --------------------------------------------------

def test_v14_3_2_every_signed_in_page_and_every_api_answer_is_no_store(app, client, make_user, case, place,
                                                                      people, officers, api_as):
    """V14.3.2: Cache-Control: no-store on every page a signed-in user gets (every GET route of the web
    blueprint, for each role, whatever the status) and on every API answer, refusals included."""
    officer, officer_h = officers[0]
    for resp in (client.get("/api/v1/me"), client.get(f"/api/v1/referrals/{case['id']}"),
                 client.get(f"/api/v1/referrals/{case['id']}", headers=officer_h),
                 client.get("/api/v1/referrals", headers=officer_h), client.get("/api/v1/no-such", headers=officer_h)):
        assert resp.headers.get("Cache-Control") == "no-store", resp.request.path
    page_rules = [rule for rule in app.url_map.iter_rules()
                  if rule.endpoint.startswith("web.") and "GET" in (rule.methods or ())
                  and rule.endpoint not in ("web.static", "web.login")]
    assert {"web.case_page", "web.referral_status", "web.home"} <= {rule.endpoint for rule in page_rules}
    users = [people["focal"][0], officer, people["supervisor"][0]] + [
        make_user(role) for role in (Role.service_provider, Role.oversight, Role.admin)]
    for user in users:
        visitor = app.test_client()
        assert web_login(visitor, user.email, PASSWORD, code(user) if user.totp_secret_plain else None).status_code == 302
        for rule in page_rules:
            values = {arg: case["id"] if arg == "referral_id" else 999999 for arg in rule.arguments}
            with app.test_request_context():
                url = url_for(rule.endpoint, **values)
            resp = visitor.get(url)
            assert resp.headers.get("Cache-Control") == "no-store", (user.role.value, url, resp.status_code)


# -- V7.3 Session timeouts ---------------------------------------------------------------------------

def test_v7_3_1_an_idle_session_is_ended_on_the_server_not_just_forgotten(client, make_user):
    """V7.3.1: after 15 idle minutes the session is revoked in the database, for pages and for the API
    it also opens; turning the clock back (or a copied cookie) cannot bring it back."""
    officer = make_user("officer")
    with time_machine.travel(T0, tick=False) as clock:
        web_login(client, officer.email, PASSWORD, code(officer, T0))
        copied = client.get_cookie("amanat_session").value
        clock.shift(dt.timedelta(minutes=15))
        assert client.get("/api/v1/me").status_code == 200  # exactly 15 idle minutes: still alive
        clock.shift(dt.timedelta(minutes=15, seconds=1))
        assert client.get("/api/v1/me").status_code == 401
        row = db.session.scalar(select(UserSession).where(UserSession.user_id == officer.id))
        db.session.refresh(row)
        assert row.revoked_at is not None
        clock.move_to(T0 + dt.timedelta(minutes=16))
        client.set_cookie("amanat_session", copied)  # the pointer the browser had, replayed
        assert client.get("/").status_code == 302
        assert client.get("/api/v1/me").status_code == 401


def test_v7_3_2_a_session_lives_at_most_twelve_hours_from_sign_in(client, make_user):
    """V7.3.2: the absolute lifetime is 12 hours from sign-in, however busy the user is."""
    officer = make_user("officer")
    with time_machine.travel(T0, tick=False) as clock:
        web_login(client, officer.email, PASSWORD, code(officer, T0))
        row = db.session.scalar(select(UserSession).where(UserSession.user_id == officer.id))
        assert row.expires_at - row.created_at == dt.timedelta(hours=12)
        while dt.datetime.now(dt.UTC) + dt.timedelta(minutes=14) < T0 + dt.timedelta(hours=12):
            clock.shift(dt.timedelta(minutes=14))
            assert client.get("/api/v1/me").status_code == 200
        clock.move_to(T0 + dt.timedelta(hours=12))
        assert client.get("/api/v1/me").status_code == 401
        assert client.get("/").status_code == 302


# -- V6.2 Password security ---------------------------------------------------------------------------

def create_account(client, headers, password, n):
    """An admin invites, the holder sets the password on the set-up page: (answer to the holder, secret)."""
    invited = client.post("/api/v1/admin/users", headers=headers, json={
        "email": f"pw{n}@test.amanat.example", "name": "Password rules", "role": "oversight"})
    assert invited.status_code == 201, invited.get_json()
    return enrol(client.application.test_client(), invited.get_json()["enrolment"]["url"], password)


def test_v6_2_1_v6_2_9_length_from_8_to_128_where_passwords_are_set(client, login_as):
    """V6.2.1 at least 8 characters; V6.2.9 at least 64 permitted (up to 128 here), enforced where the
    holder sets the password (the set-up page; the operator's CLI calls the same rule function)."""
    _admin, headers = login_as("admin")
    for n, (password, accepted) in enumerate([("kel-tas", False), ("kel-tash", True), ("q" * 64, True),
                                              ("w" * 128, True), ("e" * 129, False)]):
        resp, _secret = create_account(client, headers, password, n)
        assert resp.status_code == (200 if accepted else 422), len(password)
        if not accepted:
            assert 'id="e-password"' in resp.get_data(as_text=True)


def test_v6_2_4_the_blocklist_holds_the_3000_most_common_passwords_the_policy_allows(client, login_as):
    """V6.2.4: passwords are checked against at least the top 3,000 that fit the policy (8+ characters),
    in any letter case."""
    fitting = [p for p in passwords.common_passwords() if passwords.MIN_LENGTH <= len(p) <= passwords.MAX_LENGTH]
    assert len(fitting) >= 3000
    _admin, headers = login_as("admin")
    for n, common in enumerate(["password1", "qwertyuiop", "iloveyou", "Sunshine1", "1q2w3e4r5t"]):
        resp, _secret = create_account(client, headers, common, n)
        assert resp.status_code == 422, common
        assert "too common" in resp.get_data(as_text=True)


def test_v6_2_5_v6_2_8_any_composition_and_checked_exactly_as_typed(client, login_as):
    """V6.2.5 no composition rules (lower-case only, spaces, Cyrillic all accepted); V6.2.8 the password
    is verified as received: no truncation, no change of case."""
    _admin, headers = login_as("admin")
    created = [create_account(client, headers, password, n)
               for n, password in enumerate(["only lower case words", "кыргыз тили сырсөз", "a" * 127 + "Z"])]
    assert [resp.status_code for resp, _secret in created] == [200, 200, 200]
    secret = created[2][1]
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2), tick=False):
        sign_in = {"email": "pw2@test.amanat.example", "otp": pyotp.TOTP(secret).now()}
        for altered in ("a" * 127, "a" * 127 + "z", "A" * 127 + "Z", "a" * 127 + "Z "):
            assert client.post("/api/v1/auth/tokens", json={**sign_in, "password": altered}).status_code == 401
        assert client.post("/api/v1/auth/tokens", json={**sign_in, "password": "a" * 127 + "Z"}).status_code == 201


# -- V6.5.1 One-time codes are usable once --------------------------------------------------------------

def test_v6_5_1_a_totp_code_used_on_the_web_is_refused_on_the_api_and_so_are_older_ones(app, client, make_user):
    """V6.5.1: a TOTP code is usable once, across channels: the code that signed in on the web cannot
    mint an API token in the same 30 seconds, nor can the previous step's code (still inside the drift
    window) once a newer one was used."""
    officer = make_user("officer")
    with time_machine.travel(T0 + dt.timedelta(seconds=35), tick=False):
        now = dt.datetime.now(dt.UTC)
        assert web_login(client, officer.email, PASSWORD, code(officer, now)).status_code == 302
        body = {"email": officer.email, "password": PASSWORD}
        client = app.test_client()  # the API door, without the web session
        replay = client.post("/api/v1/auth/tokens", json={**body, "otp": code(officer, now)})
        older = client.post("/api/v1/auth/tokens", json={**body, "otp": code(officer, now - dt.timedelta(seconds=30))})
        wrong = client.post("/api/v1/auth/tokens", json={**body, "otp": "000000"})
    assert replay.status_code == older.status_code == 401
    assert replay.get_json() == older.get_json() == wrong.get_json()


# -- V6.3 Brute force, lockout, and not telling who has an account ----------------------------------------

def normalised(html: str, *words: str) -> str:
    for word in words:
        html = html.replace(word, "")
    return re.sub(r'name="csrf_token" type="hidden" value="[^"]+"', "", html)


def test_v6_3_1_v6_3_8_web_lockout_after_five_failures_answers_like_an_unknown_account(client, make_user,
                                                                                       monkeypatch):
    """V6.3.1 five failures in 15 minutes lock the account (then even the right password and code fail);
    V6.3.8 the locked account, a wrong password and an unknown e-mail get the same page and status, and
    each costs one password hash, so neither words, codes nor time tell them apart."""
    officer = make_user("officer")
    hashes = []
    real_verify = passwords.verify_password
    monkeypatch.setattr(passwords, "verify_password", lambda *a: hashes.append(1) or real_verify(*a))
    ghost = "ghost@test.amanat.example"
    with time_machine.travel(T0, tick=False) as clock:
        for _ in range(5):
            assert web_login(client, officer.email, "wrong password", code(officer)).status_code == 401
        db.session.refresh(officer)
        assert officer.locked_until == T0 + dt.timedelta(minutes=15)
        clock.shift(dt.timedelta(seconds=31))
        answers = {}
        for label, email, password in (("locked", officer.email, PASSWORD), ("unknown", ghost, PASSWORD)):
            hashes.clear()
            resp = web_login(client, email, password, code(officer))
            answers[label] = (resp.status_code, normalised(resp.get_data(as_text=True), email), len(hashes))
        assert answers["locked"] == answers["unknown"]
        assert answers["locked"][0] == 401 and answers["locked"][2] == 1
        clock.shift(dt.timedelta(minutes=15))
        assert web_login(client, officer.email, PASSWORD, code(officer)).status_code == 302


# -- V2.4.1 / V6.3.1 Rate limits ------------------------------------------------------------------------

def amount(spec: str) -> int:
    """The smallest budget in a limits string such as "20/minute;300/hour"."""
    return min(int(part.split("/")[0]) for part in spec.split(";"))


def from_address(n: int) -> dict:
    return {"environ_base": {"REMOTE_ADDR": f"192.0.2.{n}"}}


def test_v6_3_1_sign_in_attempts_per_account_are_limited_across_web_and_api(limited_app, make_user):
    """V6.3.1: one account gets LOGIN_PER_ACCOUNT attempts however many addresses they come from, shared
    by the web form and the token API; an unknown e-mail is limited the same way, so a 429 does not
    reveal which accounts exist."""
    client = limited_app().test_client()
    focal = make_user("focal_point")
    budget = amount(limits.LOGIN_PER_ACCOUNT)
    token = csrf_token(client.get("/login").get_data(as_text=True))
    for n in range(budget):
        if n % 2:
            resp = client.post("/api/v1/auth/tokens", json={"email": focal.email, "password": "nope"}, **from_address(n))
        else:
            resp = client.post("/login", data={"email": focal.email, "password": "nope", "csrf_token": token},
                               **from_address(n))
        assert resp.status_code == 401, n
    over_api = client.post("/api/v1/auth/tokens", json={"email": focal.email.upper(), "password": PASSWORD},
                           **from_address(200))
    over_web = client.post("/login", data={"email": focal.email, "password": PASSWORD, "csrf_token": token},
                           **from_address(201))
    assert over_api.status_code == over_web.status_code == 429
    ghost = "ghost@test.amanat.example"
    for n in range(budget):
        client.post("/api/v1/auth/tokens", json={"email": ghost, "password": "nope"}, **from_address(n))
    over_ghost = client.post("/api/v1/auth/tokens", json={"email": ghost, "password": PASSWORD}, **from_address(202))
    assert over_ghost.status_code == 429 and over_ghost.get_json() == over_api.get_json()
    # Another account from the same addresses is untouched.
    other = make_user("focal_point")
    assert client.post("/api/v1/auth/tokens", json={"email": other.email, "password": PASSWORD},
                       **from_address(200)).status_code == 201


def test_v6_3_1_sign_in_attempts_per_address_are_limited_then_recover(limited_app, make_user):
    """V6.3.1 and V2.4.1 (costly resources: each attempt is an argon2 hash): one address gets
    LOGIN_PER_ADDRESS attempts a minute across accounts; another address is unaffected; after the
    window it may try again."""
    client = limited_app().test_client()
    focal = make_user("focal_point")
    budget = amount(limits.LOGIN_PER_ADDRESS)
    with time_machine.travel(T0, tick=False) as clock:
        for n in range(budget):
            resp = client.post("/api/v1/auth/tokens", json={"email": f"spray{n}@test.amanat.example",
                                                            "password": "Winter2026!"}, **from_address(1))
            assert resp.status_code == 401
        refused = client.post("/api/v1/auth/tokens", json={"email": focal.email, "password": PASSWORD},
                              **from_address(1))
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["Retry-After"]) <= 61
        assert client.post("/api/v1/auth/tokens", json={"email": focal.email, "password": PASSWORD},
                           **from_address(2)).status_code == 201
        clock.shift(dt.timedelta(seconds=61))
        assert client.post("/api/v1/auth/tokens", json={"email": focal.email, "password": PASSWORD},
                           **from_address(1)).status_code == 201


def test_v2_4_1_account_set_up_tries_are_limited_per_link_and_per_address(limited_app, make_user):
    """V2.4.1 (each try hashes a password; after a reset each proves one): a set-up link gets
    ENROL_PER_LINK tries however many addresses they come from, an address ENROL_PER_ADDRESS a minute
    whatever links it tries; opening the page is not limited."""
    from referral.accounts.enrolment import issue_link
    from referral.accounts.models import EnrolmentKind

    application = limited_app()
    client = application.test_client()
    links = [issue_link(None, make_user("officer"), EnrolmentKind.authenticator).token for _ in range(2)]
    db.session.commit()
    token = csrf_token(client.get(f"/enrol/{links[0]}").get_data(as_text=True))
    wrong = {"csrf_token": token, "current_password": "not the password", "otp": "000000"}
    for n in range(amount(limits.ENROL_PER_LINK)):
        assert client.post(f"/enrol/{links[0]}", data=wrong, **from_address(n)).status_code == 422, n
    assert client.post(f"/enrol/{links[0]}", data=wrong, **from_address(99)).status_code == 429
    assert client.get(f"/enrol/{links[0]}", **from_address(99)).status_code == 200
    assert client.post(f"/enrol/{links[1]}", data=wrong, **from_address(99)).status_code == 422  # another link
    per_address = amount(limits.ENROL_PER_ADDRESS)
    for n in range(per_address):
        client.post(f"/enrol/unknown-{n}", data=wrong, **from_address(100))
    assert client.post(f"/enrol/{links[1]}", data=wrong, **from_address(100)).status_code == 429


def test_v2_4_1_referral_submission_is_limited_per_account_across_web_and_api(limited_app, place, people,
                                                                              officers):
    """V2.4.1 (garbage data, notification cost): one focal point gets SUBMIT_PER_ACCOUNT submissions a
    minute, shared by the API and the web form; other focal points keep theirs."""
    client = limited_app().test_client()
    focal, headers = people["focal"]
    budget = amount(limits.SUBMIT_PER_ACCOUNT)
    for n in range(budget):
        resp = client.post("/api/v1/referrals", json=minimal(place["district"].code), headers=headers,
                           **from_address(n))
        assert resp.status_code == 201, resp.get_json()
    refused = client.post("/api/v1/referrals", json=minimal(place["district"].code), headers=headers)
    assert refused.status_code == 429
    web_login(client, focal.email, PASSWORD)
    form = csrf_token(client.get("/referrals/new").get_data(as_text=True))
    assert client.post("/referrals/new", data={"csrf_token": form, "area": place["village"].code}).status_code == 429
    assert client.get("/referrals/new").status_code == 200  # reading the form is not limited


def test_v2_4_1_referral_submission_is_limited_per_address(limited_app, place, login_as):
    """V2.4.1: one address gets SUBMIT_PER_ADDRESS submissions a minute whoever signs them (malformed
    ones count: each still costs a request)."""
    client = limited_app().test_client()
    per_address, per_account = amount(limits.SUBMIT_PER_ADDRESS), amount(limits.SUBMIT_PER_ACCOUNT)
    sent = 0
    while sent < per_address:
        _focal, headers = login_as("focal_point", organisation=place["group"])
        for _ in range(min(per_account, per_address - sent)):
            assert client.post("/api/v1/referrals", json={}, headers=headers, **from_address(7)).status_code == 422
            sent += 1
    _fresh, headers = login_as("focal_point", organisation=place["group"])
    assert client.post("/api/v1/referrals", json={}, headers=headers, **from_address(7)).status_code == 429
    assert client.post("/api/v1/referrals", json={}, headers=headers, **from_address(8)).status_code == 422


def test_v2_4_1_sms_intake_is_limited_per_sender_and_forgeries_do_not_spend_it(limited_app, place, people,
                                                                              officers):
    """V2.4.1: one phone gets SMS_PER_SENDER messages an hour; forged (unsigned) messages naming that
    phone are refused with 401 and do not use up its budget."""
    from tests.notify.test_sms_inbound import PHONE, SECRET, send

    focal = people["focal"][0]
    focal.phone = PHONE
    db.session.flush()
    client = limited_app(SMS_SECRET=SECRET).test_client()
    for _ in range(amount(limits.SMS_PER_SENDER) + 5):
        assert send(client, "STATUS R-AAAA-BBBB", secret="forged").status_code == 401
    for n in range(amount(limits.SMS_PER_SENDER)):
        assert send(client, f"hello {n}").status_code == 200, n
    refused = send(client, f"GBV {place['district'].code} P 26-40 N")
    assert refused.status_code == 429 and refused.get_json()["error"]["code"] == "rate_limited"
    assert send(client, "hello", sender="+996555123999").status_code != 429  # another phone


def test_v2_4_1_sms_intake_is_limited_per_gateway_address(limited_app):
    """V2.4.1: the webhook takes SMS_PER_ADDRESS requests a minute from one address, forged ones
    included (each costs an HMAC), so a runaway or hostile sender cannot flood intake."""
    from tests.notify.test_sms_inbound import send

    client = limited_app(SMS_SECRET="s").test_client()
    for n in range(amount(limits.SMS_PER_ADDRESS)):
        assert send(client, "x", sender=f"+99655500{n:04d}", secret="forged").status_code == 401
    assert send(client, "x", sender="+996555009999", secret="forged").status_code == 429


def test_v2_4_1_a_refused_api_call_says_so_in_the_api_error_shape(limited_app):
    """429 on the API: the documented error body and a Retry-After in seconds."""
    client = limited_app().test_client()
    for _ in range(amount(limits.LOGIN_PER_ACCOUNT) + 1):
        resp = client.post("/api/v1/auth/tokens", json={"email": "g@test.amanat.example", "password": "p"})
    assert resp.status_code == 429
    assert resp.get_json() == {"error": {"code": "rate_limited", "fields": {},
                                         "message": "Too many requests. Wait a while and try again."}}
    assert 1 <= int(resp.headers["Retry-After"]) <= 15 * 60 + 1
    assert resp.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("lang", ["ky", "ru", "tg", "uz", "en"])
def test_v2_4_1_a_refused_web_form_gets_a_plain_page_in_the_readers_language(limited_app, lang):
    """429 on the web: a plain page in the reader's language (no JSON, no stack), with Retry-After."""
    from flask_babel import force_locale, gettext

    application = limited_app()
    client = application.test_client()
    token = csrf_token(client.get(f"/login?lang={lang}").get_data(as_text=True))
    for _ in range(amount(limits.LOGIN_PER_ACCOUNT) + 1):
        resp = client.post("/login", data={"email": "g@test.amanat.example", "password": "p", "csrf_token": token})
    assert resp.status_code == 429 and resp.mimetype == "text/html"
    assert int(resp.headers["Retry-After"]) >= 1
    with application.test_request_context(), force_locale(lang):
        message = gettext("Too many attempts. Wait a few minutes and try again.")
    if lang != "en":
        assert message != "Too many attempts. Wait a few minutes and try again.", lang
    html = resp.get_data(as_text=True)
    assert f'<html lang="{lang}">' in html and message in html


def test_limited_views_keep_their_access_declarations(limited_app):
    """The limiter wraps the views; the deny-by-default guard must still see what each declares."""
    application = limited_app()
    for endpoint in limits.LOGIN_ENDPOINTS + limits.SMS_ENDPOINTS + limits.ENROL_ENDPOINTS:
        assert declared_access(application.view_functions[endpoint]) == PUBLIC, endpoint
    for endpoint in limits.SUBMIT_ENDPOINTS:
        assert declared_access(application.view_functions[endpoint]) not in (None, PUBLIC), endpoint
