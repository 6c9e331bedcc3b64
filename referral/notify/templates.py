"""Message templates in five languages. They carry references, dates and counts, never case content.

Parameters are checked against a pattern before anything is stored, so a caller
cannot slip a name or a story into a message by mistake. Every Cyrillic text
fits one 70-character SMS segment with the longest parameter (a test counts).
"""
from __future__ import annotations

import re
import string
from typing import Any

from referral.errors import ValidationFailed

# The only parameters a message may carry, and what each must look like.
PARAMS = {
    "reference": re.compile(r"^R-[0-9A-Z]{4}-[0-9A-Z]{4}$"),
    "date": re.compile(r"^\d{4}-\d{2}-\d{2}$"),
    "count": re.compile(r"^\d{1,4}$"),
    "stage": re.compile(r"^(submitted|offered|declined|accepted|in_progress|escalated|closed|withdrawn|"
                        r"services_only)$"),   # a case status, shown through STAGES
}

TEMPLATES: dict[str, dict[str, str]] = {
    "new_offer": {
        "en": "Amanat: new case {reference} for you. Please log in.",
        "ru": "Amanat: новое дело {reference} для вас. Войдите в систему.",
        "ky": "Amanat: сизге жаңы иш {reference}. Системага кириңиз.",
        "tg": "Amanat: парвандаи нав {reference} барои шумо. Ворид шавед.",
        "uz": "Amanat: siz uchun yangi ish {reference}. Tizimga kiring.",
    },
    "escalation": {
        "en": "Amanat: case {reference} needs the supervisor. Please log in.",
        "ru": "Amanat: дело {reference} ждёт начальника. Войдите в систему.",
        "ky": "Amanat: {reference} иши башчыны күтөт. Системага кириңиз.",
        "tg": "Amanat: парвандаи {reference} сардорро интизор аст. Ворид шавед.",
        "uz": "Amanat: {reference} ishi boshliqni kutmoqda. Tizimga kiring.",
    },
    "breach": {
        "en": "Amanat: a deadline was missed on case {reference}. Please log in.",
        "ru": "Amanat: пропущен срок по делу {reference}. Войдите.",
        "ky": "Amanat: {reference} иши боюнча мөөнөт өттү. Кириңиз.",
        "tg": "Amanat: мӯҳлати парвандаи {reference} гузашт. Ворид шавед.",
        "uz": "Amanat: {reference} ishi boʻyicha muddat oʻtdi. Kiring.",
    },
    "certificate_expiring": {
        "en": "Amanat: your GBV certificate expires on {date}. Please renew it.",
        "ru": "Amanat: ваш сертификат истекает {date}. Продлите его.",
        "ky": "Amanat: сертификатыңыздын мөөнөтү {date} бүтөт. Жаңылаңыз.",
        "tg": "Amanat: мӯҳлати сертификати шумо {date} тамом мешавад.",
        "uz": "Amanat: sertifikatingiz muddati {date} da tugaydi. Yangilang.",
    },
    "protection_order_expiring": {
        "en": "Amanat: a protection order in case {reference} expires on {date}. Please log in.",
        "ru": "Amanat: охранный ордер по делу {reference} истекает {date}.",
        "ky": "Amanat: {reference} ишиндеги коргоо ордери {date} бүтөт.",
        "tg": "Amanat: ордери ҳифзи парвандаи {reference} {date} тамом мешавад.",
        "uz": "Amanat: {reference} ishidagi himoya orderi {date} da tugaydi.",
    },
    "service_referral": {
        "en": "Amanat: new service referral {reference}. Please log in.",
        "ru": "Amanat: новое направление {reference}. Войдите в систему.",
        "ky": "Amanat: жаңы жолдомо {reference}. Системага кириңиз.",
        "tg": "Amanat: муроҷиати нав {reference}. Ворид шавед.",
        "uz": "Amanat: yangi yoʻllanma {reference}. Tizimga kiring.",
    },
    "withdrawn": {
        "en": "Amanat: case {reference} was withdrawn. Please log in.",
        "ru": "Amanat: дело {reference} отозвано. Войдите в систему.",
        "ky": "Amanat: {reference} иши кайтарылып алынды. Кириңиз.",
        "tg": "Amanat: парвандаи {reference} бозхонд шуд. Ворид шавед.",
        "uz": "Amanat: {reference} ishi qaytarib olindi. Tizimga kiring.",
    },
    "break_glass": {
        "en": "Amanat: break-glass access was opened. Please review it.",
        "ru": "Amanat: открыт экстренный доступ. Проверьте его.",
        "ky": "Amanat: өзгөчө кирүү ачылды. Текшериңиз.",
        "tg": "Amanat: дастрасии фаврӣ кушода шуд. Санҷед.",
        "uz": "Amanat: favqulodda kirish ochildi. Tekshiring.",
    },
    "sms_received": {
        "en": "Amanat: received. Reference {reference}.",
        "ru": "Amanat: принято. Номер {reference}.",
        "ky": "Amanat: кабыл алынды. Номери {reference}.",
        "tg": "Amanat: қабул шуд. Рақам {reference}.",
        "uz": "Amanat: qabul qilindi. Raqam {reference}.",
    },
    "sms_status": {
        "en": "Amanat: {reference}: {stage}.",
        "ru": "Amanat: {reference}: {stage}.",
        "ky": "Amanat: {reference}: {stage}.",
        "tg": "Amanat: {reference}: {stage}.",
        "uz": "Amanat: {reference}: {stage}.",
    },
    "sms_unknown_reference": {
        "en": "Amanat: no referral of yours has this reference.",
        "ru": "Amanat: у вас нет обращения с таким номером.",
        "ky": "Amanat: мындай номердеги кайрылууңуз жок.",
        "tg": "Amanat: муроҷиати шумо бо ин рақам нест.",
        "uz": "Amanat: bu raqamli murojaatingiz yoʻq.",
    },
    "sms_format": {
        "en": "Amanat format: GBV <area> <R/S/P/F/D/E> <age> <Y/N>, e.g. GBV KG-C-ALM-1 P 26-40 N",
        "ru": "Формат: GBV <район> <R/S/P/F/D/E> <возраст> <Y/N>",
        "ky": "Формасы: GBV <аймак> <R/S/P/F/D/E> <жашы> <Y/N>",
        "tg": "Шакл: GBV <маҳал> <R/S/P/F/D/E> <синну сол> <Y/N>",
        "uz": "Format: GBV <hudud> <R/S/P/F/D/E> <yosh> <Y/N>, masalan GBV KG-C-ALM-1 P 26-40 N",
    },
    "survivor_contact": {
        "en": "Hello, your contact will call you soon.",
        "ru": "Здравствуйте, вам скоро позвонят.",
        "ky": "Саламатсызбы, сизге жакында чалышат.",
        "tg": "Салом, ба шумо ба наздикӣ занг мезананд.",
        "uz": "Salom, sizga tez orada qoʻngʻiroq qilishadi.",
    },
}
EMAIL_SUBJECT = {"en": "Amanat", "ru": "Amanat", "ky": "Amanat", "tg": "Amanat", "uz": "Amanat"}

# Short stage words for SMS (the web shows longer ones).
STAGES: dict[str, dict[str, str]] = {
    "en": {"submitted": "received", "offered": "waiting for an officer", "declined": "waiting for an officer",
           "accepted": "taken by an officer", "in_progress": "being handled", "escalated": "with the supervisor",
           "closed": "closed", "withdrawn": "withdrawn", "services_only": "with support services"},
    "ru": {"submitted": "принято", "offered": "ждёт сотрудника", "declined": "ждёт сотрудника",
           "accepted": "принято сотрудником", "in_progress": "в работе", "escalated": "у начальника",
           "closed": "закрыто", "withdrawn": "отозвано", "services_only": "у служб помощи"},
    "ky": {"submitted": "кабыл алынды", "offered": "кызматкерди күтөт", "declined": "кызматкерди күтөт",
           "accepted": "кызматкер алды", "in_progress": "иштелүүдө", "escalated": "башчыда",
           "closed": "жабылды", "withdrawn": "кайтарылды", "services_only": "жардам кызматында"},
    "tg": {"submitted": "қабул шуд", "offered": "кормандро интизор", "declined": "кормандро интизор",
           "accepted": "корманд гирифт", "in_progress": "дар кор", "escalated": "назди сардор",
           "closed": "баста шуд", "withdrawn": "бозхонд шуд", "services_only": "дар хадамоти ёрӣ"},
    "uz": {"submitted": "qabul qilindi", "offered": "xodimni kutmoqda", "declined": "xodimni kutmoqda",
           "accepted": "xodim oldi", "in_progress": "ishlanmoqda", "escalated": "boshliqda",
           "closed": "yopildi", "withdrawn": "qaytarildi", "services_only": "yordam xizmatida"},
}
LANGUAGES = ("ky", "ru", "tg", "uz", "en")


def placeholders(template: str) -> set[str]:
    return {name for _text, name, _spec, _conv in string.Formatter().parse(TEMPLATES[template]["en"]) if name}


def check_params(template: str, params: dict[str, Any]) -> dict[str, str]:
    """Exactly the template's parameters, each of its own shape; anything else is refused before it is stored."""
    if template not in TEMPLATES:
        raise ValidationFailed(f"Unknown message template {template}.")
    if set(params) != placeholders(template):
        raise ValidationFailed(f"Template {template} takes {sorted(placeholders(template))}.")
    clean = {}
    for key, value in params.items():
        pattern = PARAMS.get(key)
        text = str(value)
        if pattern is None or not pattern.fullmatch(text):
            raise ValidationFailed(f"Message parameter {key} is not allowed in this form.")
        clean[key] = text
    return clean


def render(template: str, language: str, params: dict[str, Any]) -> str:
    lang = language if language in LANGUAGES else "en"
    values = check_params(template, params)
    if "stage" in values:
        values["stage"] = STAGES[lang].get(values["stage"], values["stage"])
    return TEMPLATES[template][lang].format(**values)
