"""Admin pages: accounts, reference data and courses, for admins only, CSRF on every form; a new account or a
reset authenticator gets a set-up link shown once, and the admin never sees a password or a TOTP secret."""
import datetime as dt
import re

import pyotp
import pytest
from sqlalchemy import func, select

from referral.accounts.models import User
from referral.audit.models import AuditEvent
from referral.db import utcnow
from referral.extensions import db
from referral.reference.models import RoutingMode
from referral.standards.models import Certification, Course
from tests.factories import PASSWORD, AreaFactory, OrganisationFactory, UnitFactory
from tests.web.helpers import csrf_token, enrol, link_path, next_code, open_link, web_login

PAGES = ["/admin/users", "/admin/reference", "/admin/courses"]
POSTS = ["/admin/users", "/admin/users/{user}/deactivate", "/admin/users/{user}/unlock",
         "/admin/users/{user}/reset-totp", "/admin/users/{user}/enrolment", "/admin/reference/units/{unit}/routing",
         "/admin/courses", "/admin/certifications"]
OTHER_ROLES = ["focal_point", "officer", "supervisor", "service_provider", "oversight"]
LINK = re.compile(r'id="enrolment-link" value="([^"]+)"')
NEW_USER = {"email": "New.Officer@Test.Amanat.Example", "name": "New Officer", "role": "officer", "org": "",
            "gender": "female", "languages": ["ky", "ru"], "phone": "+996 555 123 456"}


def sign_in(client, user):
    code = pyotp.TOTP(user.totp_secret_plain).now() if user.totp_secret_plain else None
    assert web_login(client, user.email, PASSWORD, code).status_code == 302


def token(client, path="/"):
    return csrf_token(client.get(path).get_data(as_text=True))


def events(action):
    return db.session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)).all()


def user_count():
    return db.session.scalar(select(func.count()).select_from(User))


@pytest.fixture()
def admin(client, make_user):
    user = make_user("admin")
    sign_in(client, user)
    return user


@pytest.fixture()
def targets(make_user):
    return {"user": make_user("officer").id, "unit": UnitFactory().code}


# -- who may use the pages -------------------------------------------------------------------

def test_every_admin_route_is_in_the_matrix(app):
    rules = {(m, r.rule) for r in app.url_map.iter_rules() if r.rule.startswith("/admin")
             for m in r.methods - {"HEAD", "OPTIONS"}}
    listed = {("GET", p) for p in PAGES} | {("POST", re.sub(r"\{(\w+)\}", lambda x: {
        "user": "<int:user_id>", "unit": "<unit_code>"}[x.group(1)], p)) for p in POSTS}
    assert rules == listed


def test_each_page_renders_for_an_admin_without_scripts(client, admin):
    home = client.get("/").get_data(as_text=True)
    for path in PAGES:
        assert f'href="{path}"' in home
        page = client.get(path)
        html = page.get_data(as_text=True)
        assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
        assert "<script" not in html and len(page.get_data()) < 30 * 1024


@pytest.mark.parametrize("role", OTHER_ROLES)
def test_other_roles_are_refused_every_page_and_form(client, make_user, targets, role):
    user = make_user(role)
    sign_in(client, user)
    csrf = token(client)
    for path in PAGES:
        assert client.get(path).status_code == 403, path
    for path in POSTS:
        resp = client.post(path.format(**targets), data={**NEW_USER, "routing": "pool", "csrf_token": csrf})
        assert resp.status_code == 403, path
    assert db.session.get(User, targets["user"]).active
    assert not db.session.scalar(select(User).where(User.email == "new.officer@test.amanat.example"))
    denied = [e for e in events("access.denied") if e.actor_id == user.id]
    assert len(denied) == len(PAGES) + len(POSTS) and all(e.outcome == "denied" for e in denied)


def test_signed_out_visitors_are_sent_to_the_login_page(client):
    for path in PAGES:
        resp = client.get(path)
        assert resp.status_code == 302 and "/login" in resp.headers["Location"]


@pytest.mark.parametrize("path", POSTS)
def test_every_form_needs_its_csrf_token(client, admin, targets, path):
    before = user_count()
    resp = client.post(path.format(**targets), data={**NEW_USER, "routing": "pool"})
    assert resp.status_code == 400
    assert user_count() == before and db.session.get(User, targets["user"]).active


# -- accounts ----------------------------------------------------------------------------------

def no_secret_in(html, *secrets):
    """Nothing an admin is shown may carry a TOTP secret or a password."""
    assert 'id="totp-secret"' not in html and "otpauth://" not in html and 'type="password"' not in html
    for secret in secrets:
        assert secret not in html


def test_creating_an_account_shows_a_set_up_link_once_and_never_a_secret(client, admin):
    unit = UnitFactory()
    form = client.get("/admin/users").get_data(as_text=True)
    assert 'name="password"' not in form
    data = {**NEW_USER, "unit": unit.code, "csrf_token": csrf_token(form)}
    resp = client.post("/admin/users", data=data)
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store" and "Location" not in resp.headers
    url = LINK.search(html).group(1)
    no_secret_in(html)
    user = db.session.scalar(select(User).where(User.email == "new.officer@test.amanat.example"))
    assert user.unit_id == unit.id and user.language_list == ["ky", "ru"] and user.phone == "+996555123456"
    assert user.enrolment_pending and user.totp_secret_sealed is None
    assert [e.object_id for e in events("user.create")] == [str(user.id)]
    assert [(e.actor_id, e.object_id) for e in events("user.enrolment.issue")] == [(admin.id, str(user.id))]
    token = link_path(url).rsplit("/", 1)[1]
    with client.session_transaction() as stored:
        assert token not in repr(dict(stored))  # not flashed, not kept in the session
    later = client.get("/admin/users").get_data(as_text=True)
    assert "new.officer@test.amanat.example" in later and token not in later and "Not set up yet" in later
    assert f"/admin/users/{user.id}/enrolment" in later and f"/admin/users/{user.id}/reset-totp" not in later

    holder = client.application.test_client()
    done, secret = enrol(holder, url, "a fine long passphrase")
    assert done.status_code == 200
    for page in ("/admin/users", "/admin/users?role=officer"):
        no_secret_in(client.get(page).get_data(as_text=True), secret)
    other = client.application.test_client()
    assert web_login(other, user.email, "a fine long passphrase", next_code(secret)).status_code == 302


def test_a_focal_point_account_gets_a_link_that_sets_a_password_only(client, admin):
    group = OrganisationFactory()
    resp = client.post("/admin/users", data={**NEW_USER, "role": "focal_point", "org": group.code,
                                             "csrf_token": token(client, "/admin/users")})
    assert resp.status_code == 200
    url = LINK.search(resp.get_data(as_text=True)).group(1)
    holder = client.application.test_client()
    page, secret = open_link(holder, url)
    assert secret is None and 'id="quick-exit"' in page.get_data(as_text=True)
    done, _none = enrol(holder, url, "a fine long passphrase")
    assert done.status_code == 200
    assert web_login(holder, "new.officer@test.amanat.example", "a fine long passphrase").status_code == 302


@pytest.mark.parametrize("overrides, field", [
    ({"email": "not-an-email"}, "email"),
    ({"name": ""}, "name"),
    ({"phone": "12345"}, "phone"),
    ({"unit": ""}, "unit"),                                    # police without a unit
    ({"unit": "NO-SUCH"}, "unit"),
    ({"role": "focal_point"}, "org"),
    ({"languages": ["xx"]}, "languages"),
])
def test_invalid_account_data_is_shown_on_the_field_and_nothing_is_stored(client, admin, overrides, field):
    unit = UnitFactory()
    before = user_count()
    data = {**NEW_USER, "unit": unit.code, **overrides, "csrf_token": token(client, "/admin/users")}
    resp = client.post("/admin/users", data=data)
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert f'aria-describedby="e-{field}"' in html and f'id="e-{field}"' in html and 'aria-invalid="true"' in html
    assert user_count() == before and not LINK.search(html)
    assert 'id="e-filter-role"' not in html  # the list filter was fine; only the new account was not
    assert events("user.create") == []


def test_a_taken_email_is_a_conflict_on_the_email_field(client, admin, make_user):
    taken = make_user("oversight")
    resp = client.post("/admin/users", data={**NEW_USER, "email": taken.email.upper(), "role": "oversight",
                                             "csrf_token": token(client, "/admin/users")})
    assert resp.status_code == 409 and 'id="e-email"' in resp.get_data(as_text=True)


def test_the_list_filters_by_role_and_pages(client, admin, make_user):
    for _ in range(21):
        make_user("supervisor")
    supervisors = client.get("/admin/users?role=supervisor").get_data(as_text=True)
    assert "Accounts found: 21" in supervisors and "Page 1 of 2" in supervisors and admin.email not in supervisors
    second = client.get("/admin/users?role=supervisor&page=2").get_data(as_text=True)
    assert "Page 2 of 2" in second and 'rel="prev"' in second
    bad = client.get("/admin/users?role=chief")
    assert bad.status_code == 422 and 'id="e-filter-role"' in bad.get_data(as_text=True)


def test_deactivate_unlock_and_reset_the_authenticator(client, admin, make_user):
    officer = make_user("officer")
    officer.locked_until, officer.failed_logins = utcnow() + dt.timedelta(minutes=10), 5
    db.session.flush()
    page = client.get("/admin/users?role=officer").get_data(as_text=True)
    assert f"/admin/users/{officer.id}/unlock" in page
    csrf = csrf_token(page)
    assert client.post(f"/admin/users/{officer.id}/unlock", data={"csrf_token": csrf}).status_code == 302
    db.session.refresh(officer)
    assert officer.locked_until is None and officer.failed_logins == 0

    signed_in = client.application.test_client()
    assert web_login(signed_in, officer.email, PASSWORD, pyotp.TOTP(officer.totp_secret_plain).now()).status_code == 302
    reset = client.post(f"/admin/users/{officer.id}/reset-totp", data={"csrf_token": csrf})
    html = reset.get_data(as_text=True)
    assert reset.status_code == 200 and reset.headers["Cache-Control"] == "no-store"
    assert "Authenticator reset" in html
    no_secret_in(html, officer.totp_secret_plain)
    assert signed_in.get("/").status_code == 302  # signed out everywhere at once
    db.session.refresh(officer)
    assert officer.totp_secret_sealed is None
    other = client.application.test_client()
    done, secret = enrol(other, LINK.search(html).group(1), current_password=PASSWORD)
    assert done.status_code == 200 and secret != officer.totp_secret_plain
    no_secret_in(client.get("/admin/users").get_data(as_text=True), secret)
    assert web_login(other, officer.email, PASSWORD, next_code(secret)).status_code == 302

    assert client.post(f"/admin/users/{officer.id}/deactivate", data={"csrf_token": csrf}).status_code == 302
    db.session.refresh(officer)
    assert not officer.active
    assert other.get("/").status_code == 302  # signed out everywhere
    for action in ("user.unlock", "user.totp_reset", "user.deactivate"):
        assert [e.object_id for e in events(action)] == [str(officer.id)]


def test_refused_account_actions_are_explained(client, admin, make_user):
    focal = make_user("focal_point")
    csrf = token(client, "/admin/users")
    assert client.post(f"/admin/users/{focal.id}/reset-totp", data={"csrf_token": csrf}).status_code == 302
    assert "sign in without TOTP" in client.get("/admin/users").get_data(as_text=True)
    assert client.post(f"/admin/users/{focal.id}/enrolment", data={"csrf_token": csrf}).status_code == 302
    assert "set up already" in client.get("/admin/users").get_data(as_text=True)
    assert client.post(f"/admin/users/{admin.id}/deactivate", data={"csrf_token": csrf}).status_code == 302
    assert "cannot deactivate your own account" in client.get("/admin/users").get_data(as_text=True)
    db.session.refresh(admin)
    assert admin.active
    assert client.post("/admin/users/999999/unlock", data={"csrf_token": csrf}).status_code == 404


# -- reference data -----------------------------------------------------------------------------

def test_reference_page_shows_the_area_tree_units_and_organisations(client, admin):
    country = AreaFactory(kind="country")
    region = AreaFactory(kind="region", parent=country)
    district = AreaFactory(parent=region)
    unit = UnitFactory(areas=[district])
    provider = OrganisationFactory(kind="provider", areas=[region], service_types=["shelter"], coordinator=True)
    db.session.flush()  # the factory adds the services after its own flush
    page = client.get("/admin/reference")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert html.index(country.code) < html.index(region.code) < html.index(district.code)
    tree = html[html.index('class="tree"'):html.index('id="units"')]
    assert tree.count("<ul>") >= 2  # nested lists, one level per generation
    assert unit.name in html and provider.name in html and "Shelter" in html and "Coordinating provider" in html
    assert f'id="routing-{unit.code}"' in html
    for action in ("area.list", "unit.list", "organisation.list"):
        assert [e.actor_id for e in events(action)] == [admin.id]


def test_changing_a_units_routing_mode_persists_and_is_audited(client, admin):
    unit = UnitFactory()
    csrf = token(client, "/admin/reference")
    resp = client.post(f"/admin/reference/units/{unit.code}/routing", data={"routing": "pool", "csrf_token": csrf})
    assert resp.status_code == 302
    db.session.refresh(unit)
    assert unit.routing_mode is RoutingMode.pool
    (event,) = events("unit.routing")
    assert event.actor_id == admin.id and event.object_id == unit.code and event.reason == "routing direct -> pool"
    page = client.get("/admin/reference").get_data(as_text=True)
    assert "Saved." in page and re.search(r'<option value="pool" selected>', page)

    bad = client.post(f"/admin/reference/units/{unit.code}/routing", data={"routing": "fastest", "csrf_token": csrf})
    assert bad.status_code == 302 and "Choose direct or pool" in client.get("/admin/reference").get_data(as_text=True)
    db.session.refresh(unit)
    assert unit.routing_mode is RoutingMode.pool and len(events("unit.routing")) == 1
    missing = client.post("/admin/reference/units/NO-SUCH/routing", data={"routing": "pool", "csrf_token": csrf})
    assert missing.status_code == 404


# -- courses and certifications ------------------------------------------------------------------

def test_creating_and_updating_a_course(client, admin):
    csrf = token(client, "/admin/courses")
    data = {"code": "T-NEW", "name": "New course", "validity_months": "", "required_for": "none", "csrf_token": csrf}
    assert client.post("/admin/courses", data=data).status_code == 302
    course = db.session.scalar(select(Course).where(Course.code == "T-NEW"))
    assert course.validity_months == 24 and course.name == "New course"
    assert "Course created." in client.get("/admin/courses").get_data(as_text=True)
    edit = client.get("/admin/courses?edit=T-NEW").get_data(as_text=True)
    assert 'value="New course"' in edit and "Change course" in edit
    changed = {**data, "name": "Renamed course", "validity_months": "12", "required_for": "child"}
    assert client.post("/admin/courses", data=changed).status_code == 302
    db.session.refresh(course)
    assert (course.name, course.validity_months, course.required_for.value) == ("Renamed course", 12, "child")
    assert [e.object_id for e in events("course.create")] == ["T-NEW"] == [e.object_id for e in events("course.update")]


@pytest.mark.parametrize("overrides, field", [
    ({"code": "lower case"}, "code"), ({"name": ""}, "name"), ({"validity_months": "two"}, "validity_months"),
    ({"validity_months": "0"}, "validity_months"), ({"required_for": "everyone"}, "required_for"),
])
def test_invalid_course_data_is_refused(client, admin, overrides, field):
    data = {"code": "T-BAD", "name": "Course", "validity_months": "", "required_for": "none", **overrides,
            "csrf_token": token(client, "/admin/courses")}
    resp = client.post("/admin/courses", data=data)
    assert resp.status_code == 422 and f'id="e-{field}"' in resp.get_data(as_text=True)
    assert db.session.scalar(select(Course).where(Course.code == "T-BAD")) is None


def test_recording_a_certification(client, admin, courses, make_user):
    officer = make_user("officer")
    csrf = token(client, "/admin/courses")
    data = {"email": officer.email.upper(), "course": "T-CORE", "completed": "2025-01-31", "csrf_token": csrf}
    assert client.post("/admin/certifications", data=data).status_code == 302
    cert = db.session.scalar(select(Certification).where(Certification.user_id == officer.id))
    assert cert.expires_on == dt.date(2027, 1, 31) and cert.recorded_by_id == admin.id
    assert "valid until 2027-01-31" in client.get("/admin/courses").get_data(as_text=True)
    assert [e.object_id for e in events("training.certification.record")] == [str(officer.id)]
    again = client.post("/admin/certifications", data=data)
    assert again.status_code == 409 and "already recorded" in again.get_data(as_text=True)


@pytest.mark.parametrize("overrides, field, words", [
    ({"completed": "31/01/2025"}, "completed", "YYYY-MM-DD"),
    ({"completed": "2025-02-30"}, "completed", "YYYY-MM-DD"),
    ({"completed": "1900-01-01"}, "completed", "YYYY-MM-DD"),
    ({"completed": (dt.date.today() + dt.timedelta(days=3)).isoformat()}, "completed", "future"),
    ({"email": "nobody@test.amanat.example"}, "email", "No account has this e-mail."),
    ({"email": "not-an-email"}, "email", "valid e-mail"),
    ({"email": "focal"}, "email", "Not a police account."),
    ({"course": "NO-SUCH"}, "course", "Not a valid choice"),
])
def test_bad_certification_data_gets_a_clear_error(client, admin, courses, make_user, overrides, field, words):
    officer, focal = make_user("officer"), make_user("focal_point")
    if overrides.get("email") == "focal":
        overrides = {"email": focal.email}
    data = {"email": officer.email, "course": "T-CORE", "completed": "2025-01-31", **overrides,
            "csrf_token": token(client, "/admin/courses")}
    resp = client.post("/admin/certifications", data=data)
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422 and f'id="e-{field}"' in html and words in html
    assert db.session.scalar(select(func.count()).select_from(Certification)) == 0
