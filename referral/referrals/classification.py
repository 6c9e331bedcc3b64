"""GBVIMS classification (SPEC §3.1) and derived flags (§3.2). Pure functions of the answers."""
from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping


class GbvType(enum.StrEnum):
    rape = "rape"
    sexual_assault = "sexual_assault"
    physical_assault = "physical_assault"
    forced_marriage = "forced_marriage"
    denial_of_resources = "denial_of_resources"
    psychological_abuse = "psychological_abuse"
    non_gbv = "non_gbv"


# The GBVIMS decision order: the first "yes" wins.
DECISION_ORDER: tuple[tuple[str, GbvType], ...] = (
    ("penetration", GbvType.rape),
    ("sexual_contact", GbvType.sexual_assault),
    ("physical_assault", GbvType.physical_assault),
    ("forced_marriage", GbvType.forced_marriage),
    ("denial_of_resources", GbvType.denial_of_resources),
    ("psychological_abuse", GbvType.psychological_abuse),
)

CHILD_AGE_GROUPS = frozenset({"0-5", "6-11", "12-14", "15-17"})
PARTNER_RELATIONSHIPS = frozenset({"intimate_partner", "former_partner"})
PEP_WINDOW = dt.timedelta(hours=72)        # HIV post-exposure prophylaxis
EC_WINDOW = dt.timedelta(hours=120)        # emergency contraception


def classify(answers: Mapping[str, bool]) -> GbvType:
    for question, gbv_type in DECISION_ORDER:
        if answers.get(question):
            return gbv_type
    return GbvType.non_gbv


def derive_flags(*, gbv_type: GbvType, age_group: str, relationship: str | None, immediate_danger: bool,
                 incident_date: dt.date | None, now: dt.datetime) -> list[str]:
    """Flags in a fixed order.

    Only the incident *date* is known, not the hour, so the clinical windows are
    measured from the end of that day — the latest the incident can have
    happened — so that a case is never wrongly judged too late for PEP.
    """
    flags = []
    if age_group in CHILD_AGE_GROUPS:
        flags.append("child")
    if relationship in PARTNER_RELATIONSHIPS:
        flags.append("intimate_partner")
    if gbv_type in (GbvType.rape, GbvType.sexual_assault):
        if incident_date is None:
            # Unknown date: treat as recent, so the health offer is never missed for lack of a date.
            flags.extend(["clinical_urgent", "clinical_soon"])
        else:
            elapsed = now - dt.datetime.combine(incident_date + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)
            if elapsed <= PEP_WINDOW:
                flags.append("clinical_urgent")
            if elapsed <= EC_WINDOW:
                flags.append("clinical_soon")
    if immediate_danger:
        flags.append("immediate_danger")
    return flags
