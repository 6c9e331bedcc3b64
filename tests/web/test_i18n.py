"""Five languages: every message translated in each, and the choice rules (SPEC §9, §10)."""

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from config.settings import PROJECT_ROOT
from referral.i18n import LANGUAGES

TRANSLATIONS = PROJECT_ROOT / "referral" / "translations"
LOANWORDS = {"Телефон", "Статистика"}


def extracted_messages() -> set[str]:
    method_map = [("referral/**.py", "python"), ("referral/web/templates/**.html", "jinja2")]
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
            str(PROJECT_ROOT), method_map=method_map, keywords={"_": None, "gettext": None, "_l": None, "N_": None, "P_": None,
                                                               "lazy_gettext": None, "ngettext": (1, 2)}):
        found.add(message if isinstance(message, str) else message[0])
    return found


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_message_is_translated(lang):
    with (TRANSLATIONS / lang / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        catalog = read_po(fh)
    translated = {m.id: m for m in catalog if m.id}
    wanted = extracted_messages()
    assert len(wanted) > 50
    missing = sorted(w for w in wanted if w not in translated or not translated[w].string
                     or translated[w].fuzzy)
    assert missing == [], f"untranslated in {lang}: {missing[:5]}"


@pytest.mark.parametrize("lang, letters", [("ky", "өүң"), ("tg", "ӣӯҳқҷғ")])
def test_kyrgyz_and_tajik_use_their_own_letters(lang, letters):
    with (TRANSLATIONS / lang / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        text = "".join(m.string for m in read_po(fh) if m.id)
    with (TRANSLATIONS / "ru" / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        russian = {m.string for m in read_po(fh) if m.id}
    assert all(ch in text for ch in letters)
    with (TRANSLATIONS / lang / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        # International loanwords are spelt the same in Tajik and Russian; nothing else may be copied.
        copied = [m.id for m in read_po(fh) if m.id and m.string in russian and m.string not in LOANWORDS]
    assert copied == [], f"{lang} strings identical to Russian: {copied}"


def test_language_follows_lang_then_accept_language(client):
    assert 'lang="ru"' in client.get("/login", headers={"Accept-Language": "ru"}).get_data(as_text=True)
    page = client.get("/login?lang=tg", headers={"Accept-Language": "ru"}).get_data(as_text=True)
    assert '<html lang="tg">' in page and "Воридшавӣ" in page
    # Remembered for the session.
    again = client.get("/login", headers={"Accept-Language": "ru"}).get_data(as_text=True)
    assert '<html lang="tg">' in again
    assert '<html lang="en">' in client.application.test_client().get("/login?lang=xx").get_data(as_text=True)
    assert "Kirish" in client.get("/login?lang=uz").get_data(as_text=True)
    assert "Кирүү" in client.get("/login?lang=ky").get_data(as_text=True)


def test_uzbek_writes_its_apostrophes_with_the_modifier_letters():
    # Oʻ, gʻ and the tutuq belgisi are the letters U+02BB and U+02BC, not quotation marks: a search for
    # "oʻzgartirish" must find every page that says it.
    with (TRANSLATIONS / "uz" / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        wrong = [m.string for m in read_po(fh) if m.id and ("\u2018" in m.string or "\u2019" in m.string)]
    assert wrong == []
