"""Apps whose database cannot be reached (connection refused at once), for health and metrics failures."""
from __future__ import annotations

import pytest

from referral import create_app
from tests.conftest import IsolatedClient, app_settings

UNREACHABLE = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2"


@pytest.fixture()
def unreachable_app(tmp_path):  # type: ignore[no-untyped-def]
    application = create_app(app_settings(UNREACHABLE, tmp_path))
    application.test_client_class = IsolatedClient
    yield application
    with application.app_context():
        from referral.extensions import db

        db.engine.dispose()
