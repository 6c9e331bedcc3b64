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
