"""One way for a page to run a state change: CSRF-checked form, one commit, a flashed answer."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import flash
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf import FlaskForm

from referral.audit.service import keep_only_refusals_after_failure
from referral.errors import DomainError
from referral.extensions import db


def run_page_action(form: FlaskForm, call: Callable[[Any], Any], *, valid: bool = True) -> None:
    """Run ``call(actor)`` if the form (and ``valid``) pass; commit once, or keep only its refusals.

    A 404 is re-raised so the page answers "not found" exactly as the API does;
    other domain errors become a flashed message on the page the user came from.
    """
    if not valid or not form.validate_on_submit():
        flash(_("The form expired. Reload the page and try again."))
        return
    try:
        call(current_user._get_current_object())
        db.session.commit()
        flash(_("Saved."))
    except DomainError as err:
        if keep_only_refusals_after_failure(db.session):
            db.session.commit()
        if err.status == 404:
            raise
        flash(err.translated())
