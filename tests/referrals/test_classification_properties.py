"""Properties of the GBVIMS classification and the derived flags (SPEC §3.1, §3.2), over every input."""
from __future__ import annotations

import datetime as dt
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from referral.referrals.classification import (
    CHILD_AGE_GROUPS,
    DECISION_ORDER,
    EC_WINDOW,
    PEP_WINDOW,
    GbvType,
    classify,
    derive_flags,
)
from referral.referrals.schemas import AGE_GROUPS, ANSWERS, RELATIONSHIPS

# The order of SPEC §3.1, written out again so a reordering of the code's table is caught.
SPEC_ORDER = [("penetration", "rape"), ("sexual_contact", "sexual_assault"), ("physical_assault", "physical_assault"),
              ("forced_marriage", "forced_marriage"), ("denial_of_resources", "denial_of_resources"),
              ("psychological_abuse", "psychological_abuse")]
FLAG_ORDER = ["child", "intimate_partner", "clinical_urgent", "clinical_soon", "immediate_danger"]

answer_sets = st.fixed_dictionaries({name: st.booleans() for name in ANSWERS})
moments = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 12, 31),
                       timezones=st.just(dt.UTC))


def test_the_decision_order_is_the_specs():
    assert [(q, t.value) for q, t in DECISION_ORDER] == SPEC_ORDER
    assert {q for q, _t in DECISION_ORDER} == set(ANSWERS)


def test_every_combination_of_answers_has_exactly_the_first_yes_as_its_type():
    """All 64 combinations: the result is the type of the first "yes" in the order, else non_gbv."""
    for values in itertools.product([False, True], repeat=len(ANSWERS)):
        answers = dict(zip(ANSWERS, values, strict=True))
        first = next((t for q, t in SPEC_ORDER if answers[q]), "non_gbv")
        assert classify(answers) == GbvType(first), answers


@given(answers=answer_sets, index=st.integers(0, len(SPEC_ORDER) - 1))
def test_a_yes_higher_in_the_order_always_wins(answers, index):  # type: ignore[no-untyped-def]
    question, gbv_type = SPEC_ORDER[index]
    answers = {**answers, question: True}
    for earlier, _t in SPEC_ORDER[:index]:
        answers[earlier] = False
    assert classify(answers) == GbvType(gbv_type)
    # Whatever is answered below it changes nothing.
    for later, _t in SPEC_ORDER[index + 1:]:
        assert classify({**answers, later: not answers[later]}) == GbvType(gbv_type)


@given(st.dictionaries(st.text(max_size=20), st.booleans() | st.none() | st.integers() | st.text(max_size=5)))
def test_classify_is_total_over_any_mapping(answers):  # type: ignore[no-untyped-def]
    """Missing, unknown or odd answers never raise: they are simply not a "yes"."""
    result = classify(answers)
    assert isinstance(result, GbvType)
    if not any(answers.get(q) for q in ANSWERS):
        assert result is GbvType.non_gbv


@settings(max_examples=300)
@given(answers=answer_sets, age=st.sampled_from(AGE_GROUPS), relationship=st.none() | st.sampled_from(RELATIONSHIPS),
       danger=st.booleans(), incident=st.none() | st.dates(dt.date(2000, 1, 1), dt.date(2099, 12, 31)), now=moments)
def test_flags_follow_their_rules_in_a_fixed_order(answers, age, relationship, danger, incident, now):  # type: ignore[no-untyped-def]
    gbv_type = classify(answers)
    flags = derive_flags(gbv_type=gbv_type, age_group=age, relationship=relationship, immediate_danger=danger,
                         incident_date=incident, now=now)
    assert flags == [f for f in FLAG_ORDER if f in flags], "fixed order, no repeats"
    assert ("child" in flags) == (age in CHILD_AGE_GROUPS)
    assert ("intimate_partner" in flags) == (relationship in ("intimate_partner", "former_partner"))
    assert ("immediate_danger" in flags) == danger
    sexual = gbv_type in (GbvType.rape, GbvType.sexual_assault)
    if not sexual:
        assert "clinical_urgent" not in flags and "clinical_soon" not in flags
    elif incident is None:
        assert {"clinical_urgent", "clinical_soon"} <= set(flags)  # unknown date: never miss the window
    else:
        # Measured from the end of the incident day, the latest the incident can have happened.
        latest = dt.datetime.combine(incident + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)
        assert ("clinical_urgent" in flags) == (now - latest <= PEP_WINDOW)
        assert ("clinical_soon" in flags) == (now - latest <= EC_WINDOW)
    if "clinical_urgent" in flags:
        assert "clinical_soon" in flags  # the PEP window lies inside the contraception window
