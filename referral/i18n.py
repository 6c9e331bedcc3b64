"""Languages (SPEC §9): Kyrgyz, Russian, Tajik, Uzbek (Latin), English.

The choice is ``?lang=`` (remembered in the session), else the browser's
``Accept-Language``, else English.
"""
from __future__ import annotations

from flask import Flask, request, session
from flask_babel import Babel

LANGUAGES = ("ky", "ru", "tg", "uz", "en")
LANGUAGE_NAMES = {"ky": "Кыргызча", "ru": "Русский", "tg": "Тоҷикӣ", "uz": "Oʻzbekcha", "en": "English"}
SESSION_KEY = "lang"

babel = Babel()


def select_locale() -> str:
    chosen = session.get(SESSION_KEY)
    if chosen in LANGUAGES:
        return chosen
    return request.accept_languages.best_match(LANGUAGES) or "en"


def init_i18n(app: Flask) -> None:
    babel.init_app(app, locale_selector=select_locale,
                   default_translation_directories=str(app.root_path) + "/translations")

    @app.before_request
    def _remember_language() -> None:
        lang = request.args.get("lang")
        if lang in LANGUAGES:
            session[SESSION_KEY] = lang

    @app.context_processor
    def _languages():  # type: ignore[no-untyped-def]
        from flask_babel import get_locale

        return {"page_lang": str(get_locale() or "en"), "language_names": LANGUAGE_NAMES,
                "stage_names": stage_names(), "lang_url": lang_url}


def lang_url(code: str) -> str:
    """This page in another language, keeping its other query arguments (e.g. ``next``)."""
    from urllib.parse import urlencode

    args = {k: v for k, v in request.args.items() if k != "lang"}
    args["lang"] = code
    return request.path + "?" + urlencode(args)


def stage_names() -> dict[str, str]:
    from flask_babel import gettext as _

    return {"submitted": _("Received"), "offered": _("Waiting for an officer"), "accepted": _("Taken by an officer"),
            "in_progress": _("Being handled"), "closed": _("Closed"), "declined": _("Waiting for an officer"),
            "escalated": _("With the police supervisor"), "withdrawn": _("Withdrawn"),
            "services_only": _("With support services")}
