"""The whole role → permission matrix, and deny-by-default for views."""
import pytest

from referral.accounts.models import Role
from referral.security.permissions import (
    PUBLIC, ROLE_PERMISSIONS, Permission, declared_access, has_permission, public, requires,
)

P = Permission
EVERYONE = {P.ACCOUNT_SELF_READ, P.ACCOUNT_TOKEN_REVOKE, P.ACCOUNT_PASSWORD_CHANGE, P.REFERRAL_READ,
            P.SERVICES_DIRECTORY, P.SERVICE_REFERRAL_READ}
HANDLERS = {P.CONSENT_RECORD, P.SERVICE_REFERRAL_CREATE}
EXPECTED = {
    Role.focal_point: EVERYONE | HANDLERS | {P.REFERRAL_SUBMIT, P.REFERRAL_ADD_INFORMATION, P.REFERRAL_WITHDRAW},
    Role.officer: EVERYONE | HANDLERS | {P.REFERRAL_ACCEPT, P.REFERRAL_WORK},
    Role.supervisor: EVERYONE | HANDLERS | {P.REFERRAL_WORK, P.REFERRAL_REASSIGN, P.COMPLIANCE_SUMMARY},
    Role.service_provider: EVERYONE | {P.SERVICE_REFERRAL_RESPOND},
    Role.oversight: EVERYONE | {P.AUDIT_VERIFY, P.COMPLIANCE_SUMMARY, P.AUDIT_READ, P.BREAK_GLASS, P.STATS_READ},
    Role.admin: EVERYONE | {P.ADMIN_USERS_MANAGE, P.ADMIN_REFERENCE_MANAGE, P.TRAINING_CERTIFICATION_RECORD},
}


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("permission", list(Permission))
def test_matrix(role, permission, make_user):
    user = make_user(role)
    assert has_permission(user, permission) == (permission in EXPECTED[role])


def test_every_role_is_in_the_map_and_nothing_else():
    assert set(ROLE_PERMISSIONS) == set(Role)
    assert {r: set(p) for r, p in ROLE_PERMISSIONS.items()} == EXPECTED


def test_inactive_users_hold_no_permission(make_user):
    admin = make_user("admin", active=False)
    assert not any(has_permission(admin, p) for p in Permission)
    assert not has_permission(None, P.ACCOUNT_SELF_READ)


def test_every_endpoint_declares_its_access(app):
    undeclared = [
        endpoint for endpoint, view in app.view_functions.items()
        if endpoint != "static" and not endpoint.endswith(".static") and declared_access(view) is None
    ]
    assert undeclared == []


EXPECTED_PUBLIC = {"health.healthz", "web.login", "web.logout", "api.create_token",
                   "api.sms_inbound",  # the gateway webhook: authenticated by its HMAC signature
                   "health.readyz",
                   "ops.metrics",  # the scrape: its own bearer secret (REFERRAL_METRICS_TOKEN), tests/ops
                   "api.openapi_document",  # documentation: shapes and rules only, tests/fuzz
                   "web.enrol"}  # the holder's set-up page: its one-time link is the credential, tests/accounts


def test_public_endpoints_are_exactly_the_expected_ones(app):
    public_endpoints = {e for e, v in app.view_functions.items() if declared_access(v) == PUBLIC}
    assert public_endpoints == EXPECTED_PUBLIC


def test_an_undeclared_view_is_refused_before_it_runs(tmp_path):
    """Deny by default: a view someone forgot to declare fails closed; a declared one asks for sign-in."""
    from referral import create_app
    from tests.conftest import app_settings

    other = create_app(app_settings("sqlite:///" + str(tmp_path / "x.sqlite3"), tmp_path))
    ran = []

    @other.get("/api/v1/forgotten")
    def forgotten():
        ran.append("forgotten")
        return "secret"

    @other.get("/api/v1/declared")
    @requires(P.ADMIN_USERS_MANAGE)
    def declared():
        ran.append("declared")
        return "ok"

    @other.get("/api/v1/open")
    @public
    def open_view():
        return "open"

    client = other.test_client()
    assert client.get("/api/v1/forgotten").status_code == 404
    assert client.get("/api/v1/declared").status_code == 401
    assert client.get("/api/v1/open").get_data(as_text=True) == "open"
    assert ran == []


def test_object_rules_beside_case_view(make_user):
    """The object-level rules the workflow asks (security/permissions.py is the one place they live)."""
    from types import SimpleNamespace

    from referral.security.permissions import (
        CaseView, closes_without_approval, is_submitter, may_override_consent, provider_sees_where, supervises,
    )

    supervisor, officer = make_user("supervisor"), make_user("officer")
    other_supervisor, focal = make_user("supervisor"), make_user("focal_point")
    provider, admin = make_user("service_provider"), make_user("admin")
    unit = SimpleNamespace(closure_approval=True)
    case = SimpleNamespace(unit_id=supervisor.unit_id, unit=unit, submitter_id=focal.id)
    # The supervisor of the case's unit, with its content in view, and nobody else.
    assert supervises(supervisor, case, CaseView.CONTENT)
    assert not supervises(supervisor, case, CaseView.OFFER) and not supervises(supervisor, case, None)
    assert not supervises(other_supervisor, case, CaseView.CONTENT)
    officer.unit_id = supervisor.unit_id
    assert not supervises(officer, case, CaseView.CONTENT)
    supervisor.unit_id = None
    assert not supervises(supervisor, SimpleNamespace(unit_id=None), CaseView.CONTENT)
    # Closure approval: only an officer's closure in a unit that asks for it waits.
    assert not closes_without_approval(officer, case) and closes_without_approval(other_supervisor, case)
    unit.closure_approval = False
    assert closes_without_approval(officer, case)
    assert closes_without_approval(officer, SimpleNamespace(unit=None))
    assert [may_override_consent(u) for u in (other_supervisor, officer, focal, admin)] == [True, False, False, False]
    # Withdrawal and erasure requests: the submitting focal point only, whoever else shares her id.
    assert is_submitter(focal, case)
    assert not is_submitter(make_user("focal_point"), case)
    assert not is_submitter(officer, SimpleNamespace(submitter_id=officer.id))
    # A provider's list (what it holds: tests/services_dir, a suggestion is not listed); others have none.
    assert provider_sees_where(provider) is not None
    assert provider_sees_where(officer) is None and provider_sees_where(focal) is None
    provider.organisation_id = None
    assert provider_sees_where(provider) is None
