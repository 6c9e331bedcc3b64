"""The focal point's referral form: the classification and consent questions in plain words."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
import secrets

from wtforms import (BooleanField, DateField, HiddenField, RadioField, SelectChoice, SelectField, StringField,
                     TextAreaField)
from wtforms.validators import DataRequired, Length, Optional

def choices(*pairs):  # type: ignore[no-untyped-def]
    return [SelectChoice(value, label) for value, label in pairs]


YES_NO = choices(("yes", _l("Yes")), ("no", _l("No")))

# A question not yet answered has no value: a first option the browser would pre-select (0–5) filed an
# untouched form as a small child's case.
CHOOSE = ("", _l("Choose…"))
ANSWER = _l("Answer this question.")

AGE_GROUPS = choices(CHOOSE, ("0-5", "0–5"), ("6-11", "6–11"), ("12-14", "12–14"), ("15-17", "15–17"),
                     ("18-25", "18–25"),
                     ("26-40", "26–40"), ("41-60", "41–60"), ("61+", "61+"))

QUESTIONS = {
    "penetration": _l("Was she forced into sex (any penetration, however slight)?"),
    "sexual_contact": _l("Was there any other unwanted sexual touching?"),
    "physical_assault": _l("Was she hit, beaten, choked or hurt in another physical way?"),
    "forced_marriage": _l("Was she forced into marriage, or married as a child?"),
    "denial_of_resources": _l("Was she kept from money, food, work, school or health care?"),
    "psychological_abuse": _l("Was she threatened, humiliated, watched or isolated?"),
}


class DayField(DateField):
    """A date, told in every language when it cannot be read (a phone without a date picker shows a text
    box; WTForms' own message has no Kyrgyz, Tajik or Uzbek)."""

    def process_formdata(self, valuelist):  # type: ignore[no-untyped-def]
        try:
            super().process_formdata(valuelist)
        except ValueError:
            raise ValueError(_l("Write the date as year-month-day, e.g. 2026-11-20.")) from None


def new_submission_key() -> str:
    return secrets.token_urlsafe(24)


class ReferralForm(FlaskForm):
    # Sent back with the answers: the same form sent twice (a double tap, a resend after a slow network)
    # files one case. Kept when the form comes back with errors.
    submission_key = HiddenField(default=new_submission_key)
    area = SelectField(_l("Where did it happen (village or district)?"), validators=[DataRequired(ANSWER)])
    age_group = SelectField(_l("Her age"), choices=AGE_GROUPS, validators=[DataRequired(ANSWER)], default="")
    sex = SelectField(_l("Sex"), choices=choices(("female", _l("Female")), ("male", _l("Male")), ("other", _l("Other"))),
                      default="female")
    name = StringField(_l("Her name (optional)"), validators=[Optional(), Length(max=200)])
    phone = StringField(_l("Her phone (optional, e.g. +996555123456)"), validators=[Optional(), Length(max=32)])
    contact_method = SelectField(_l("How can police contact her safely?"), choices=choices(
        ("via_focal_point", _l("Through me (the focal point)")), ("phone", _l("By phone call")),
        ("sms", _l("By SMS")), ("in_person", _l("In person"))), default="via_focal_point")
    contact_notes = TextAreaField(_l("Safe contact notes (when, who must not know)"),
                                  validators=[Optional(), Length(max=2000)])
    incident_date = DayField(_l("When did it happen?"), validators=[Optional()])
    penetration = RadioField(QUESTIONS["penetration"], choices=YES_NO, default="no")
    sexual_contact = RadioField(QUESTIONS["sexual_contact"], choices=YES_NO, default="no")
    physical_assault = RadioField(QUESTIONS["physical_assault"], choices=YES_NO, default="no")
    forced_marriage = RadioField(QUESTIONS["forced_marriage"], choices=YES_NO, default="no")
    denial_of_resources = RadioField(QUESTIONS["denial_of_resources"], choices=YES_NO, default="no")
    psychological_abuse = RadioField(QUESTIONS["psychological_abuse"], choices=YES_NO, default="no")
    immediate_danger = RadioField(_l("Is she in danger right now?"), choices=YES_NO, default="no")
    relationship = SelectField(_l("Who did it?"), choices=choices(
        ("", _l("Not said")), ("intimate_partner", _l("Husband or partner")),
        ("former_partner", _l("Former husband or partner")), ("family", _l("Family member")),
        ("acquaintance", _l("Someone she knows")), ("stranger", _l("A stranger")), ("other", _l("Someone else"))),
        default="")
    narrative = TextAreaField(_l("What happened, in her words (optional)"), validators=[Optional(), Length(max=20000)])
    consent_police = BooleanField(_l("She agrees that the police receive this referral"))
    consent_services = BooleanField(_l("She agrees to be referred to support services (shelter, health, legal, psychological)"))
    consent_sms = BooleanField(_l("She agrees to be contacted by SMS"))
    consent_statistics = BooleanField(_l("She agrees that anonymous figures about this case are counted"))
    given_by = SelectField(_l("Who gave this consent?"), choices=choices(
        ("survivor", _l("She herself")), ("caregiver", _l("Her parent or caregiver"))))
    female_officer = BooleanField(_l("She asks for a female officer"))

    def to_submission(self) -> dict:
        answers = {q: getattr(self, q).data == "yes" for q in QUESTIONS}
        body: dict = {
            "area": self.area.data,
            "survivor": {"age_group": self.age_group.data, "sex": self.sex.data,
                         "safe_contact": {"method": self.contact_method.data,
                                          "notes": self.contact_notes.data or None}},
            "incident": {"answers": answers, "immediate_danger": self.immediate_danger.data == "yes"},
            "consent": {"police": self.consent_police.data, "services": self.consent_services.data,
                        "sms_contact": self.consent_sms.data, "statistics": self.consent_statistics.data,
                        "given_by": self.given_by.data},
            "preferences": {"officer_gender": "female" if self.female_officer.data else "any"},
        }
        if self.name.data:
            body["survivor"]["name"] = self.name.data
        if self.phone.data:
            body["survivor"]["phone"] = self.phone.data
        if self.incident_date.data:
            body["incident"]["date"] = self.incident_date.data.isoformat()
        if self.narrative.data:
            body["incident"]["narrative"] = self.narrative.data
        if self.relationship.data:
            body["perpetrator"] = {"relationship": self.relationship.data}
        return body
