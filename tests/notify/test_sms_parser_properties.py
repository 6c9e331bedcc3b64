"""Properties of the SMS code parser (SPEC §9): total over any text, exact on every valid code."""
from __future__ import annotations

from hypothesis import assume, example, given
from hypothesis import strategies as st

from referral.notify.sms import NO, REPORT_WORDS, STATUS_WORDS, TYPE_ANSWER, YES, parse
from referral.referrals.schemas import AGE_GROUPS, ANSWERS

# Separators a phone may put between words: spaces, several of them, a tab or a line break.
gaps = st.text(alphabet=" \t\n\u00a0", min_size=1, max_size=3)
area_codes = st.from_regex(r"[A-Z]{2}(-[A-Z0-9]{1,4}){0,3}", fullmatch=True)
references = st.from_regex(r"R-[0-9A-Z]{4}-[0-9A-Z]{4}", fullmatch=True)
# Cyrillic keyboards type these for the Latin type letters P, E and S.
LOOKALIKE_TYPES = {"Е": "E", "С": "S"}  # not Р: P by its look, R by its sound (refused)


def any_case(word: str):  # type: ignore[no-untyped-def]
    """The word as a phone may send it: upper, lower or mixed case."""
    return st.lists(st.booleans(), min_size=len(word), max_size=len(word)).map(
        lambda flips: "".join(c.lower() if f else c for c, f in zip(word, flips, strict=True)))


def joined(words: list[str], data) -> str:  # type: ignore[no-untyped-def]
    lead, tail = data.draw(st.text(alphabet=" \n", max_size=2)), data.draw(st.text(alphabet=" \n", max_size=2))
    return lead + "".join(w + (data.draw(gaps) if i < len(words) - 1 else "") for i, w in enumerate(words)) + tail


@given(st.text(max_size=600))
@example("")
@example("GBV")
@example("GBV KG-C-ALM-1 P 26-40")
@example("STATUS")
@example("ß ǅ ﬃ İ ᾳ")  # letters whose upper case is longer or different
def test_any_text_parses_without_raising(text):  # type: ignore[no-untyped-def]
    parsed = parse(text)
    assert parsed.kind in ("report", "status", "malformed")
    assert parsed.language in (None, "ru", "ky", "tg", "uz")
    if parsed.kind == "report":
        assert parsed.data is not None and parsed.reference is None
    if parsed.kind == "status":
        assert parsed.reference and parsed.data is None
    if parsed.kind == "malformed":
        assert parsed.data is None and parsed.reference is None


@given(data=st.data(), keyword=st.sampled_from(sorted(REPORT_WORDS)), area=area_codes,
       kind=st.sampled_from(sorted(TYPE_ANSWER) + sorted(LOOKALIKE_TYPES)), age=st.sampled_from(AGE_GROUPS),
       danger=st.sampled_from(sorted(YES | NO)))
def test_every_valid_report_round_trips_in_every_language(data, keyword, area, kind, age, danger):  # type: ignore[no-untyped-def]
    words = [data.draw(any_case(keyword)), data.draw(any_case(area)), data.draw(any_case(kind)), age,
             data.draw(any_case(danger))]
    parsed = parse(joined(words, data))
    assert parsed.kind == "report"
    assert parsed.language == REPORT_WORDS[keyword]
    assert parsed.data is not None
    assert parsed.data["area"] == area
    assert parsed.data["survivor"] == {"age_group": age}
    chosen = TYPE_ANSWER[LOOKALIKE_TYPES.get(kind, kind)]
    assert parsed.data["incident"]["answers"] == {name: name == chosen for name in ANSWERS}
    assert parsed.data["incident"]["immediate_danger"] is (danger in YES)
    # The code carries no consent but to the police (docs/decisions.md): nothing else is consented.
    assert parsed.data["consent"] == {"police": True, "services": False, "sms_contact": False, "statistics": False,
                                      "given_by": "survivor"}


@given(data=st.data(), keyword=st.sampled_from(sorted(STATUS_WORDS)), reference=references)
def test_every_status_request_round_trips(data, keyword, reference):  # type: ignore[no-untyped-def]
    parsed = parse(joined([data.draw(any_case(keyword)), data.draw(any_case(reference))], data))
    assert (parsed.kind, parsed.language, parsed.reference) == ("status", STATUS_WORDS[keyword], reference)


valid_parts = st.fixed_dictionaries({
    "keyword": st.sampled_from(sorted(REPORT_WORDS)), "area": area_codes, "kind": st.sampled_from(sorted(TYPE_ANSWER)),
    "age": st.sampled_from(AGE_GROUPS), "danger": st.sampled_from(sorted(YES | NO))})
words = st.text(alphabet=st.characters(blacklist_categories=("Z", "Cc", "Cs")), min_size=1, max_size=8)


@given(parts=valid_parts, broken=st.sampled_from(["kind", "age", "danger"]), junk=words)
def test_a_report_with_a_wrong_word_is_refused_in_its_language(parts, broken, junk):  # type: ignore[no-untyped-def]
    upper = junk.upper().replace("ʼ", "'")
    allowed = {"kind": set(TYPE_ANSWER) | set(LOOKALIKE_TYPES), "age": set(AGE_GROUPS), "danger": YES | NO}[broken]
    assume(upper not in allowed)
    parts = {**parts, broken: junk}
    parsed = parse(" ".join(parts[k] for k in ("keyword", "area", "kind", "age", "danger")))
    assert (parsed.kind, parsed.language, parsed.data) == ("malformed", REPORT_WORDS[parts["keyword"]], None)


@given(parts=valid_parts, count=st.integers(0, 9).filter(lambda n: n != 5), extra=words)
def test_a_report_with_too_few_or_too_many_words_is_refused(parts, count, extra):  # type: ignore[no-untyped-def]
    sequence = [parts[k] for k in ("keyword", "area", "kind", "age", "danger")] + [extra] * 4
    parsed = parse(" ".join(sequence[:count]))
    assert parsed.kind == "malformed"
    assert parsed.language == (REPORT_WORDS[parts["keyword"]] if count else None)


@given(head=words, rest=st.lists(words, max_size=5))
def test_text_that_starts_with_no_keyword_is_refused(head, rest):  # type: ignore[no-untyped-def]
    assume(head.upper().replace("ʼ", "'") not in REPORT_WORDS | STATUS_WORDS)
    parsed = parse(" ".join([head, *rest]))
    assert (parsed.kind, parsed.language) == ("malformed", None)
