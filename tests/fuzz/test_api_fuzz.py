"""Schemathesis against /api/v1/openapi.json, in-process, with a bearer token of each role (issue 11).

Every operation of the document is called with generated data, valid and
invalid, as each role in turn; every answer must be a documented status with a
body of the documented shape and content type, and never a 5xx. The calls run
on a small world of real records (cases offered, accepted, shared with a
provider, opened by break-glass) whose ids and codes are drawn two times in
three in place of random ones, so the fuzzer reaches past "not found" into the
services. Bounded for CI (about a minute): a fixed seed and four examples per
operation and role; ``REFERRAL_FUZZ=explore`` searches with a fresh seed and more
examples (``REFERRAL_FUZZ_EXAMPLES=N`` to choose) and prints what each operation answered;
``REFERRAL_FUZZ_ONLY=text`` keeps the operations whose label contains the text.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import time
from collections import defaultdict
from urllib.parse import urlencode

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from referral.accounts.models import Role
from referral.extensions import db
from tests.factories import OrganisationFactory
from tests.referrals.helpers import minimal, submission

# Unknown fields are named back only when they look like field names (referral/api.py, _safe_keys).
FIELD_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")


def _strings(value) -> list[str]:  # type: ignore[no-untyped-def]
    """Every text a request carries, values and keys, but keys that look like field names."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in ([] if FIELD_NAME.match(str(k)) else _strings(k)) + _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def no_input_echoed_in_errors(document_text: str):  # type: ignore[no-untyped-def]
    """A check: an error answer never repeats text the request sent, which may be case content (SPEC §7).

    Short strings, and words the document itself holds (field names, enum values), can occur in any
    message by chance, so only longer strings that the document does not contain count.
    """

    def no_input_echoed_in_errors(ctx, response, case):  # type: ignore[no-untyped-def]
        if response.status_code < 400:
            return None
        for sent in _strings(case.body) + _strings(case.query):
            if len(sent) >= 8 and sent in response.text and sent not in document_text:
                raise AssertionError(f"a {response.status_code} answer repeats a value the request sent")
        return None

    return no_input_echoed_in_errors


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXPLORE = os.environ.get("REFERRAL_FUZZ") == "explore"
EXAMPLES = int(os.environ.get("REFERRAL_FUZZ_EXAMPLES", 40 if EXPLORE else 4))
SMS_SECRET = "fuzz-gateway-secret"

# Generating a whole submission body is slow and large next to a unit test's inputs; that is expected here.
SLOW_GENERATION = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example,
                   HealthCheck.filter_too_much]
ENDS_CASES = ("/withdraw", "/erasure", "/close", "/approve", "/reject", "/decline", "/recuse", "/reassign")
ENDS_ACCOUNTS = ("/deactivate", "/reset-totp")
ROLES = [Role.focal_point, Role.officer, Role.supervisor, Role.service_provider, Role.oversight, Role.admin]


@pytest.fixture()
def api_schema(app, world):  # type: ignore[no-untyped-def]
    """The document as the app serves it, loaded the way any client would.

    Each request gets an app context of its own, as in production (see ``IsolatedClient``): the
    suite's app context would otherwise carry one request's signed-in user into the next.
    """

    def isolated(environ, start_response):  # type: ignore[no-untyped-def]
        with app.app_context():
            return app(environ, start_response)

    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", isolated)


def _submit(client, headers, body):  # type: ignore[no-untyped-def]
    resp = client.post("/api/v1/referrals", json=body, headers=headers)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["id"]


@pytest.fixture()
def world(app, client, place, people, officers, login_as, make_user):  # type: ignore[no-untyped-def]
    """One user of each role and the records they can reach, plus the ids a fuzzer would never guess."""
    focal, focal_h = people["focal"]
    supervisor, sup_h = people["supervisor"]
    clinic = OrganisationFactory(kind="provider", areas=[place["district"]], service_types=["health", "shelter"],
                                 coordinator=True)
    provider, prov_h = login_as(Role.service_provider, organisation=clinic)
    oversight, over_h = login_as(Role.oversight)
    admin, admin_h = login_as(Role.admin)

    offered = _submit(client, focal_h, minimal(place["district"].code))
    accepted = _submit(client, focal_h, submission(place["village"].code))
    services_only = minimal(place["district"].code)
    services_only["consent"] = {"police": False, "services": True, "sms_contact": False, "statistics": True}
    services_only = _submit(client, focal_h, services_only)
    officer, off_h = next((o, h) for o, h in officers
                          if client.post(f"/api/v1/referrals/{accepted}/accept", headers=h).status_code == 200)
    shared = client.post(f"/api/v1/referrals/{accepted}/service-referrals", headers=off_h,
                         json={"provider_id": clinic.id, "service_type": "health", "share": ["survivor.name"]})
    assert shared.status_code == 201, shared.get_json()
    grant = client.post("/api/v1/break-glass", headers=over_h,
                        json={"case_id": accepted, "justification": "Synthetic fuzzing justification text."})
    assert grant.status_code == 201, grant.get_json()

    previous_secret, app.config["SMS_SECRET"] = app.config.get("SMS_SECRET"), SMS_SECRET
    focal.phone = "+996700100200"
    db.session.commit()
    # Accounts for the admin's deactivate and reset-totp to act on without ending another role's run.
    victims = [make_user(role=r).id for r in (Role.focal_point, Role.officer, Role.service_provider)]
    users = {Role.focal_point: (focal, focal_h), Role.officer: (officer, off_h), Role.supervisor: (supervisor, sup_h),
             Role.service_provider: (provider, prov_h), Role.oversight: (oversight, over_h),
             Role.admin: (admin, admin_h)}
    known = {
        "referral_id": [offered, accepted, services_only], "case_id": [offered, accepted, services_only],
        "service_referral_id": [shared.get_json()["id"]], "grant_id": [grant.get_json()["id"]],
        "user_id": victims, "actor_id": [u.id for u, _h in users.values()],
        "officer_id": [u.id for u, _h in officers], "provider_id": [clinic.id],
        "area": [place["district"].code, place["village"].code], "unit": [place["unit"].code],
        "email": [officer.email], "course": ["T-CORE"], "from": [focal.phone],
    }
    yield {"users": users, "known": known}
    app.config["SMS_SECRET"] = previous_secret


# The ends of the calendar, where date arithmetic overflows: random dates seldom land there.
EDGE_DATES = ["0001-01-01", "9999-12-31"]
EDGE_TIMES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _sprinkle(values: dict, known: dict, data) -> None:  # type: ignore[no-untyped-def]
    """Replace some generated values with real ids and codes, and some dates with the calendar's ends
    (the draws decide which), so calls reach past "not found" and into date arithmetic."""
    for name, value in list(values.items()):
        # Real values two times in three, and in the simplest example (hypothesis's first): random ids
        # are always "not found", which says little.
        if name in known and data.draw(st.sampled_from([True, True, False]), label=f"real {name}"):
            values[name] = data.draw(st.sampled_from(known[name]), label=name)
        elif isinstance(value, str) and DATE.match(value) and data.draw(st.booleans(), label=f"edge {name}"):
            values[name] = data.draw(st.sampled_from(EDGE_TIMES if "T" in value else EDGE_DATES), label=name)


def _sign(case, now: int) -> None:  # type: ignore[no-untyped-def]
    """Sign the webhook body as the gateway would, so generated texts reach the SMS parser."""
    if not isinstance(case.body, dict):
        return
    raw = urlencode(case.body).encode()
    mac = hmac.new(SMS_SECRET.encode(), str(now).encode() + b"." + raw, hashlib.sha256).hexdigest()
    case.headers = {**(case.headers or {}), "X-Amanat-Timestamp": str(now), "X-Amanat-Signature": f"sha256={mac}"}


def test_no_operation_fails_or_breaks_its_contract(app, world, api_schema, api_as, subtests):  # type: ignore[no-untyped-def]
    """Each generated request is sent once as each role: the same input meets every permission path."""
    known = world["known"]
    checks = [*CHECKS, no_input_echoed_in_errors(json.dumps(api_schema.raw_schema))]
    # Calls that end what later calls need run last: a case's open state, then accounts and tokens.
    operations = sorted((result.ok() for result in api_schema.get_all_operations()),
                        key=lambda op: (op.path.endswith(ENDS_ACCOUNTS), op.path.endswith(ENDS_CASES)))
    routes = {(m.lower(), r.rule) for r in app.url_map.iter_rules() if r.endpoint.startswith("api.")
              for m in r.methods or () if m not in ("HEAD", "OPTIONS")}
    routes.discard(("get", "/api/v1/openapi.json"))  # schemathesis leaves out the document it was loaded from
    assert len(operations) == len(routes) > 40, "every API route is fuzzed"
    answered: dict[str, set[int]] = defaultdict(set)
    only = os.environ.get("REFERRAL_FUZZ_ONLY")  # e.g. "consents" while chasing one operation's failure
    for operation in operations:
        if only and only not in operation.label:
            continue
        strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                             operation.as_strategy(GenerationMode.NEGATIVE))

        @settings(max_examples=EXAMPLES, deadline=None, derandomize=not EXPLORE, database=None,
                  phases=[Phase.generate], suppress_health_check=SLOW_GENERATION)
        @given(case=strategy, data=st.data())
        def call(case, data):  # type: ignore[no-untyped-def]
            if case.path_parameters:
                _sprinkle(case.path_parameters, known, data)
            if case.query:
                _sprinkle(case.query, known, data)
            if isinstance(case.body, dict):
                _sprinkle(case.body, known, data)
            if operation.path == "/api/v1/sms/inbound" and data.draw(st.integers(0, 3), label="signed") > 0:
                _sign(case, int(time.time()))
            for role in ROLES:
                user, headers = world["users"][role]
                if operation.path == "/api/v1/auth/tokens/current" and operation.method == "delete":
                    headers = api_as(user)  # revoking the role's own token would end its run
                try:
                    response = case.call_and_validate(headers=headers, checks=checks)
                except Exception as exc:
                    exc.add_note(f"calling as {role.value}")
                    raise
                answered[operation.label].add(response.status_code)

        with subtests.test(msg=operation.label):
            call()
    reached = sorted(label for label, statuses in answered.items() if any(200 <= s < 300 for s in statuses))
    # Guards the fuzzer itself: if nearly every call stopped at "not found" or a validation error, the
    # run would prove little. Half the operations must have been carried out at least once.
    assert only or len(reached) >= len(operations) // 2, f"only {len(reached)} operations ever succeeded: {reached}"
    print(f"{len(reached)} of {len(operations)} operations succeeded at least once")
    if EXPLORE:
        for label, statuses in sorted(answered.items()):
            print(label, sorted(statuses))
