"""Screenshots of the main pages at a cheap phone's width; with REFERRAL_SCREENSHOTS=1 they refresh docs/screenshots."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from config.settings import PROJECT_ROOT
from referral.accounts.services import NewUser, create_user
from referral.extensions import db
from referral.reference.models import Area, AreaKind, Organisation, OrganisationKind

pytestmark = pytest.mark.browser
PASSWORD = "screenshot passphrase"
DOCS = PROJECT_ROOT / "docs" / "screenshots"


@pytest.fixture(scope="module")
def focal(live_app):
    with live_app.app_context():
        area = Area(code="SS-D", name="Alamudun district", kind=AreaKind.district)
        db.session.add_all([area, Organisation(code="WG-SS", name="Women's council", kind=OrganisationKind.womens_group,
                                               areas=[area])])
        db.session.flush()
        user, _ = create_user(None, NewUser(email="screens@test.amanat.example", name="Gulnara", role="focal_point",
                                            password=PASSWORD, org="WG-SS"))
        db.session.commit()
        return user.email


def test_main_pages_render_on_a_small_screen(browser, live_server, focal, tmp_path):
    context = browser.new_context(viewport={"width": 360, "height": 740})
    page = context.new_page()
    shots: list[Path] = []
    try:
        page.goto(f"{live_server}/login?lang=ky")
        shots.append(tmp_path / "login-ky.png")
        page.screenshot(path=shots[-1], full_page=True)
        page.goto(f"{live_server}/login?lang=en")
        page.get_by_label("E-mail").fill(focal)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.goto(f"{live_server}/referrals/new")
        shots.append(tmp_path / "referral-form-en.png")
        page.screenshot(path=shots[-1], full_page=True)
        page.goto(f"{live_server}/referrals/new?lang=tg")
        shots.append(tmp_path / "referral-form-tg.png")
        page.screenshot(path=shots[-1])
        # Nothing overflows sideways on a 360-pixel phone.
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
    finally:
        context.close()
    for shot in shots:
        assert shot.stat().st_size > 5_000
    if os.environ.get("REFERRAL_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        for shot in shots:
            shutil.copy(shot, DOCS / shot.name)
