"""GBVIMS classification table and derived flags."""
import datetime as dt

import pytest

from referral.referrals.classification import GbvType, classify, derive_flags

QUESTIONS = ("penetration", "sexual_contact", "physical_assault", "forced_marriage", "denial_of_resources",
             "psychological_abuse")
NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def answers(*yes):
    return {q: q in yes for q in QUESTIONS}


@pytest.mark.parametrize("yes, expected", [
    ((), GbvType.non_gbv),
    (("psychological_abuse",), GbvType.psychological_abuse),
    (("denial_of_resources", "psychological_abuse"), GbvType.denial_of_resources),
    (("forced_marriage", "denial_of_resources"), GbvType.forced_marriage),
    (("physical_assault", "forced_marriage", "psychological_abuse"), GbvType.physical_assault),
    (("sexual_contact", "physical_assault"), GbvType.sexual_assault),
    (QUESTIONS, GbvType.rape),
    (("penetration",), GbvType.rape),
])
def test_first_yes_in_the_gbvims_order_wins(yes, expected):
    assert classify(answers(*yes)) is expected


def flags(**kw):
    base = dict(gbv_type=GbvType.physical_assault, age_group="26-40", relationship=None, immediate_danger=False,
                incident_date=None, now=NOW)
    base.update(kw)
    return derive_flags(**base)


@pytest.mark.parametrize("age_group, child", [("0-5", True), ("15-17", True), ("18-25", False), ("61+", False)])
def test_child_flag(age_group, child):
    assert ("child" in flags(age_group=age_group)) is child


@pytest.mark.parametrize("relationship, partner", [("intimate_partner", True), ("former_partner", True),
                                                   ("family", False), (None, False)])
def test_intimate_partner_flag(relationship, partner):
    assert ("intimate_partner" in flags(relationship=relationship)) is partner


# Now is 12:00; a date's window counts from the end of that day (the latest the incident can have been).
@pytest.mark.parametrize("days_ago, urgent, soon", [
    (0, True, True), (2, True, True), (3, True, True),     # 3 days ago ended 60 h ago
    (4, False, True), (5, False, True),                    # 84 h, 108 h
    (6, False, False), (30, False, False),                 # 132 h
])
def test_clinical_windows_for_rape_and_sexual_assault(days_ago, urgent, soon):
    date = NOW.date() - dt.timedelta(days=days_ago)
    for kind in (GbvType.rape, GbvType.sexual_assault):
        got = flags(gbv_type=kind, incident_date=date)
        assert ("clinical_urgent" in got) is urgent and ("clinical_soon" in got) is soon
    assert "clinical_urgent" not in flags(gbv_type=GbvType.physical_assault, incident_date=date)


def test_unknown_date_of_a_rape_is_treated_as_urgent():
    assert {"clinical_urgent", "clinical_soon"} <= set(flags(gbv_type=GbvType.rape))


def test_immediate_danger_and_order():
    assert flags(gbv_type=GbvType.rape, age_group="12-14", relationship="intimate_partner", immediate_danger=True,
                 incident_date=NOW.date()) == ["child", "intimate_partner", "clinical_urgent", "clinical_soon",
                                               "immediate_danger"]
