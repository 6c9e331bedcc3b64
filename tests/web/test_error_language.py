"""Errors speak the reader's language on pages and stay English in the API (SPEC §10: five languages)."""
import ast
import functools
from pathlib import Path

import pyotp
import pytest
from babel.messages.pofile import read_po
from flask_babel import force_locale

from config.settings import PROJECT_ROOT
from referral.errors import N_, P_, DomainError, InvalidTransition, Stage
from tests.factories import PASSWORD
from tests.referrals.helpers import submission
from tests.web.helpers import csrf_token, web_login

# Modules whose messages only API clients, the SMS gateway or an operator at the command line read.
NOT_ON_A_PAGE = {"referral/api.py", "referral/accounts/views.py", "referral/notify/sms.py", "referral/notify/views.py",
                 "referral/notify/templates.py", "referral/reference/loader.py", "referral/standards/loader.py"}


@functools.cache
def catalog(lang: str) -> dict[str, str]:
    with (PROJECT_ROOT / "referral" / "translations" / lang / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        return {m.id: m.string for m in read_po(fh) if m.id}


def _error_classes(trees: dict[str, ast.Module]) -> set[str]:
    names = {"DomainError"}
    while True:
        more = {node.name for tree in trees.values() for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
                and any(isinstance(b, ast.Name) and b.id in names for b in node.bases)} - names
        if not more:
            return names
        names |= more


def _is_marked(node: ast.expr) -> bool:
    """``N_("…")``, or ``Message(N_("…"), …)`` (a marked template filled with codes or counts)."""
    if isinstance(node, ast.IfExp):
        return _is_marked(node.body) and _is_marked(node.orelse)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Message":
        return bool(node.args) and _is_marked(node.args[0])
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "N_"


def test_every_message_a_page_can_show_is_marked_for_translation():
    trees = {str(p.relative_to(PROJECT_ROOT)): ast.parse(p.read_text())
             for p in sorted((PROJECT_ROOT / "referral").rglob("*.py"))}
    errors = _error_classes(trees)
    assert {"NotFound", "InvalidTransition", "AuthFailed", "PasswordChangeRefused"} <= errors
    unmarked = []
    for path, tree in trees.items():
        if path in NOT_ON_A_PAGE:
            continue
        for node in ast.walk(tree):
            texts: list[ast.expr] = []
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in errors:
                texts += node.args[:1]
                texts += [el for kw in node.keywords if kw.arg == "fields" for lst in ast.walk(kw.value)
                          if isinstance(lst, ast.List) for el in lst.elts]
            # Field messages gathered before raising: errors["field"] = [...] and errors[...].append(...).
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name)
                                                    and t.value.id == "errors" for t in node.targets):
                texts += node.value.elts if isinstance(node.value, ast.List) else []
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "append"
                    and "errors" in ast.unparse(node.func.value)):
                texts += node.args[:1]
            # A ValueError whose text a service passes on as a field message (the phone number's).
            if (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and isinstance(node.exc.func, ast.Name)
                    and node.exc.func.id == "ValueError" and path == "referral/accounts/services.py"):
                texts += node.exc.args[:1]
            if isinstance(node, ast.ClassDef) and node.name in errors:
                texts += [s.value for s in node.body if isinstance(s, ast.Assign)
                          and any(isinstance(t, ast.Name) and t.id == "message" for t in s.targets)]
            for text in texts:
                literal = isinstance(text, ast.Constant) and isinstance(text.value, str)
                message = isinstance(text, ast.Call) and isinstance(text.func, ast.Name) and text.func.id == "Message"
                if (literal or message or isinstance(text, (ast.JoinedStr, ast.IfExp))) and not _is_marked(text):
                    unmarked.append(f"{path}:{text.lineno} {ast.unparse(text)}")
    # Messages built from codes at run time (lists of allowed values) are Message(N_(template), …) too.
    assert unmarked == [], "\n".join(unmarked)


def test_a_message_with_parameters_is_english_for_the_api_and_translated_for_a_page(app):
    template = "A case that is %(status)s cannot be %(doing)s."
    err = InvalidTransition(N_(template), params={"status": "closed", "doing": "accepted"})
    assert err.message == str(err) == "A case that is closed cannot be accepted."
    for lang in ("ky", "ru", "tg", "uz"):
        with app.test_request_context("/"), force_locale(lang):
            assert err.translated() == catalog(lang)[template] % {"status": "closed", "doing": "accepted"}
            assert "closed" in err.translated() and "A case that is" not in err.translated()
    # What could not be done is a marked phrase, the status a stage: both in words on a page, the API says
    # the English phrase and the code.
    phrased = InvalidTransition(N_(template), params={"status": Stage("closed"), "doing": P_("accepted")})
    assert phrased.message == "A case that is closed cannot be accepted."
    with app.test_request_context("/"), force_locale("ru"):
        assert phrased.translated() == catalog("ru")[template] % {"status": catalog("ru")["Closed"],
                                                                  "doing": catalog("ru")["accepted"]}
        assert "accepted" not in phrased.translated() and "closed" not in phrased.translated()
    plain = DomainError(fields={"area": [N_("No area has this code.")], "unknown": ["not in any catalog"]})
    with app.test_request_context("/"), force_locale("ru"):
        assert plain.translated() == " ".join([catalog("ru")["The request could not be processed."],
                                                catalog("ru")["No area has this code."], "not in any catalog"])
        assert plain.translated(with_fields=False) == catalog("ru")["The request could not be processed."]


def test_a_wrong_password_is_told_in_the_chosen_language(client, make_user):
    focal = make_user("focal_point")
    page = client.get("/login?lang=ky")
    answer = client.post("/login", data={"email": focal.email, "password": "not the password", "otp": "",
                                         "csrf_token": csrf_token(page.get_data(as_text=True))})
    html = answer.get_data(as_text=True)
    assert answer.status_code == 401
    assert catalog("ky")["Invalid e-mail, password or code."] in html
    assert "Invalid e-mail, password or code." not in html


@pytest.mark.parametrize("lang", ["ru", "tg", "uz"])
def test_error_pages_are_in_the_readers_language_and_the_api_stays_english(client, lang):
    missing = client.get(f"/no-such-page?lang={lang}")
    html = missing.get_data(as_text=True)
    assert missing.status_code == 404 and f'<html lang="{lang}">' in html
    assert catalog(lang)["Not found."] in html and "requested URL" not in html
    expired = client.post("/login", data={"email": "x@example.org", "password": "y"})
    assert expired.status_code == 400
    assert catalog(lang)["The form expired. Reload the page and try again."] in expired.get_data(as_text=True)
    api = client.get("/api/v1/no-such-thing", headers={"Accept-Language": lang})
    assert api.status_code == 404 and api.get_json()["error"]["message"].startswith("The requested URL")


def test_a_refused_case_action_is_flashed_in_the_officers_language(client, place, people, officers):
    case = client.post("/api/v1/referrals", json=submission(place["district"].code),
                       headers=people["focal"][1]).get_json()
    officer = officers[0][0]
    web_login(client, officer.email, PASSWORD, pyotp.TOTP(officer.totp_secret_plain).now())
    html = client.get(f"/cases/{case['id']}?lang=ru").get_data(as_text=True)
    client.post(f"/cases/{case['id']}/close", data={"csrf_token": csrf_token(html), "outcome": "no_further_action"})
    page = client.get(f"/cases/{case['id']}").get_data(as_text=True)
    assert catalog("ru")["Accept the case before closing it."] in page
    assert "Accept the case before closing it." not in page
    api = client.post(f"/api/v1/referrals/{case['id']}/close", json={"outcome": "no_further_action"},
                      headers={**officers[0][1], "Accept-Language": "ru"})
    assert api.status_code == 409 and api.get_json()["error"]["message"] == "Accept the case before closing it."


def test_a_case_nobody_may_see_is_not_found_in_the_readers_language(client, make_user):
    officer = make_user("officer")
    web_login(client, officer.email, PASSWORD, pyotp.TOTP(officer.totp_secret_plain).now())
    page = client.get("/cases/00000000000000000000000000?lang=uz")
    assert page.status_code == 404
    assert catalog("uz")["No such referral."] in page.get_data(as_text=True)


def test_the_marked_modules_exist():
    for path in NOT_ON_A_PAGE:
        assert Path(PROJECT_ROOT / path).is_file(), path


def test_a_field_message_built_from_codes_is_translated_on_a_page_and_english_in_the_api(client, place, people,
                                                                                        officers):
    from referral.referrals.workflow import DECLINE_REASONS

    case = client.post("/api/v1/referrals", json=submission(place["district"].code),
                       headers=people["focal"][1]).get_json()
    officer, headers = officers[0]
    choices = ", ".join(DECLINE_REASONS)
    api = client.post(f"/api/v1/referrals/{case['id']}/decline", json={"reason": "not a reason"},
                      headers={**headers, "Accept-Language": "ru"})
    assert api.status_code == 422 and api.get_json()["error"]["fields"]["reason"] == [f"Give one of: {choices}."]
    web_login(client, officer.email, PASSWORD, pyotp.TOTP(officer.totp_secret_plain).now())
    html = client.get(f"/cases/{case['id']}?lang=ru").get_data(as_text=True)
    client.post(f"/cases/{case['id']}/decline", data={"csrf_token": csrf_token(html), "reason": "not a reason"})
    page = client.get(f"/cases/{case['id']}").get_data(as_text=True)
    assert catalog("ru")["Give one of: %(choices)s."] % {"choices": choices} in page
    assert "Give one of" not in page


def test_a_message_reads_as_english_and_translates_its_template(app):
    from referral.errors import Message, field_messages, translate

    message = Message(N_("Between a few minutes and %(hours)s hours."), hours=12)
    assert message == "Between a few minutes and 12 hours." and isinstance(message, str)
    for lang in ("ky", "ru", "tg", "uz"):
        with app.test_request_context("/"), force_locale(lang):
            expected = catalog(lang)["Between a few minutes and %(hours)s hours."] % {"hours": 12}
            assert translate(message) == expected and "12" in expected and "hours" not in expected
            assert field_messages({"hours": [message], "nested": {"x": message}}) == [expected, expected]
