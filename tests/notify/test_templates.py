"""Templates: five languages, one segment for Cyrillic, and no way to carry case content."""
import pytest

from referral.errors import ValidationFailed
from referral.notify.templates import LANGUAGES, PARAMS, STAGES, TEMPLATES, render
from tests.referrals.helpers import canaries

GSM7 = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
           "¿abcdefghijklmnopqrstuvwxyzäöñüà")
LONGEST = {"reference": "R-WWWW-WWWW", "date": "2026-12-31", "count": "9999", "stage": "services_only"}


def segments(text: str) -> int:
    """SMS segments: 160 GSM-7 characters in one, else 70 UCS-2 characters (67 a part when split)."""
    if set(text) <= GSM7:
        return 1 if len(text) <= 160 else -(-len(text) // 153)
    return 1 if len(text) <= 70 else -(-len(text) // 67)


def longest_params(template: str) -> dict:
    text = TEMPLATES[template]["en"]
    return {k: v for k, v in LONGEST.items() if "{" + k + "}" in text}


@pytest.mark.parametrize("template", sorted(TEMPLATES))
@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_template_exists_in_every_language_and_fits_one_segment(template, lang):
    params = longest_params(template)
    if "stage" in params:  # the longest stage word of this language
        params["stage"] = max(STAGES[lang], key=lambda code: len(STAGES[lang][code]))
    text = render(template, lang, params)
    assert "{" not in text and text.strip()
    cyrillic = any("\u0400" <= ch <= "\u04ff" for ch in text)
    if cyrillic:
        assert len(text) <= 70, f"{template}/{lang} is {len(text)} characters: {text}"
    assert segments(text) == 1, f"{template}/{lang}: {text}"


def test_kyrgyz_and_tajik_templates_are_not_russian_copies():
    for template, texts in TEMPLATES.items():
        if template == "sms_status":
            continue  # only a reference and a stage word, which differ per language
        assert texts["ky"] != texts["ru"] and texts["tg"] != texts["ru"], template


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_no_template_can_carry_case_content(template):
    """Every case value offered as any parameter is refused before it could be stored or sent."""
    for key in list(PARAMS) + ["name", "narrative", "phone", "note"]:
        for value in canaries().values():
            with pytest.raises(ValidationFailed):
                render(template, "ru", {key: value})
    text = render(template, "ru", longest_params(template))
    for value in canaries().values():
        assert value not in text


def test_unknown_templates_and_stage_codes():
    with pytest.raises(ValidationFailed):
        render("nope", "en", {})
    assert render("sms_status", "xx", {"reference": "R-AAAA-BBBB", "stage": "closed"}) == "Amanat: R-AAAA-BBBB: closed."


def test_templates_take_exactly_their_parameters_and_stage_only_a_status():
    with pytest.raises(ValidationFailed):
        render("new_offer", "ru", {})  # a missing parameter is refused when queued, not at delivery
    with pytest.raises(ValidationFailed):
        render("break_glass", "ru", {"reference": "R-AAAA-BBBB"})  # one it does not use
    with pytest.raises(ValidationFailed):
        render("sms_status", "ru", {"reference": "R-AAAA-BBBB", "stage": "aigul_bishkek"})
