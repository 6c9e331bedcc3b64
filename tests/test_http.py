"""HTTP basics: health, JSON errors, bad bodies never reach a 500."""
import pytest


def test_healthz_is_liveness(client):
    """Readiness (database, migrations, keyring) is /readyz: tests/ops/test_health.py."""
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok"}


def test_unknown_api_path_is_a_json_404(client):
    resp = client.get("/api/v1/nothing-here")
    assert resp.status_code == 404
    body = resp.get_json()
    assert set(body["error"]) == {"code", "message", "fields"}
    assert body["error"]["code"] == "not_found"


def test_wrong_method_is_405_json(client):
    resp = client.get("/api/v1/auth/tokens")
    assert resp.status_code == 405
    assert resp.get_json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize("body, content_type, status, code", [
    (b"{not json", "application/json", 400, "malformed_json"),
    (b"[1, 2]", "application/json", 400, "malformed_json"),
    (b"email=a", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
])
def test_bad_bodies_get_clear_errors(client, body, content_type, status, code):
    resp = client.post("/api/v1/auth/tokens", data=body, content_type=content_type)
    assert resp.status_code == status
    assert resp.get_json()["error"]["code"] == code


def test_wrong_types_and_unknown_fields_are_field_errors(client):
    resp = client.post("/api/v1/auth/tokens", json={"email": 5, "password": ["x"], "colour": "red"})
    assert resp.status_code == 422
    fields = resp.get_json()["error"]["fields"]
    assert set(fields) == {"email", "password", "colour"}
    assert "Unknown field" in fields["colour"][0]


def test_an_unexpected_error_is_a_generic_500_without_its_text(app, client, monkeypatch):
    from referral.accounts import auth

    def boom(*args, **kwargs):
        raise RuntimeError("survivor Canary Name lives at 1 Secret Street")

    monkeypatch.setattr(auth, "authenticate", boom)
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)
    resp = client.post("/api/v1/auth/tokens", json={"email": "a@b.example", "password": "x"})
    assert resp.status_code == 500
    text = resp.get_data(as_text=True)
    assert "Canary" not in text and "RuntimeError" not in text
    assert resp.get_json()["error"]["code"] == "internal_error"
    assert resp.headers["X-Request-ID"] in resp.get_json()["error"]["message"]


def test_security_headers_on_every_answer(client):
    resp = client.get("/login")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    csp = resp.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp


def test_unknown_field_names_that_are_not_identifiers_are_not_echoed(client):
    resp = client.post("/api/v1/auth/tokens", json={"email": "a@b.example", "password": "x",
                                                    "Aigerim Sultanova lives at 5 Oak St": 1, "extra_field": 2})
    assert resp.status_code == 422
    fields = resp.get_json()["error"]["fields"]
    assert "extra_field" in fields and "_unknown" in fields
    assert "Aigerim" not in resp.get_data(as_text=True)


def test_static_files_are_served_to_everyone(client):
    for path in ("/static/web/amanat.css", "/static/web/quick-exit.js"):
        resp = client.get(path)
        assert resp.status_code == 200, path
        resp.close()
