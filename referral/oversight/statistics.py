"""De-identified statistics in the style of the GBVIMS Incident Recorder, with small-cell suppression.

Only cases whose ``statistics`` consent is in force are counted. In every table a
count of 1–4 reads ``<5`` (SPEC §8), and the smallest other cells read ``suppressed``
until the total and the visible cells cannot pin a small one to a single value.
Fewer than 5 cases in all show no cells at all (one case's cells would be its
profile), and periods are whole calendar months (a day could hold one case), on the
service's calendar (``LOCAL_TIMEZONE``), that have ended: figures asked before and after a new
case of a month still running would differ by her cells.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.orm import aliased
from sqlalchemy.orm import Session

from referral.db import local_midnight, local_zone
from referral.referrals.models import Referral
from referral.services_dir.models import ServiceReferral

SMALL = 5
DIMENSIONS = ("gbv_type", "age_group", "sex", "district", "month", "perpetrator_relationship",
              "time_to_report", "service_outcome")


def report_bucket(incident: dt.date | None, reported: dt.datetime, zone: dt.tzinfo = dt.UTC) -> str:
    """Days from the incident to the report, both on the service's calendar (``zone``): the incident date
    is the day a person gave, so the report's day is counted where she gave it."""
    if incident is None:
        return "unknown"
    days = (reported.astimezone(zone).date() - incident).days
    for upper, label in ((3, "0-3"), (5, "4-5"), (14, "6-14"), (30, "15-30")):
        if days <= upper:
            return label
    return "over_30"


SMALL_MARK, HIDDEN = "<5", "suppressed"


def _pinned(small: int, complements: int, hidden_sum: int) -> bool:
    """Whether the total and the visible cells pin a small cell down to one value: each small cell is
    1..4 and each complementary cell 5 or more (what the two marks say), and together they make
    ``hidden_sum``."""
    others_least = (small - 1) + 5 * complements
    others_most = None if complements else 4 * (small - 1)
    least = 1 if others_most is None else max(1, hidden_sum - others_most)
    most = min(SMALL - 1, hidden_sum - others_least)
    return most <= least


def suppress(counts: Counter[str]) -> dict[str, Any]:
    """Counts of 1-4 read ``<5`` (SPEC §8); the smallest other cells read ``suppressed`` too until the
    total and the visible cells no longer pin any small one to a single value, knowing that a ``<5`` is
    1-4 and a ``suppressed`` at least 5."""
    cells: dict[str, Any] = {k: v for k, v in sorted(counts.items()) if v > 0}
    total = sum(cells.values())
    if 0 < total < SMALL:
        return {"cells": {}, "total": "<5"}  # every cell would be a few identifiable people
    small = {k for k, v in cells.items() if v < SMALL}
    complements: set[str] = set()
    visible = sorted((v, k) for k, v in cells.items() if k not in small)
    while small and visible and _pinned(len(small), len(complements),
                                         sum(cells[k] for k in small | complements)):
        complements.add(visible.pop(0)[1])
    return {"cells": {k: SMALL_MARK if k in small else HIDDEN if k in complements else v for k, v in cells.items()},
            "total": total}


# A month counts an hour after it ends: a case stamped in its last moments is committed a moment later,
# so figures asked at midnight and again a second after could differ by exactly her cells.
SETTLE = dt.timedelta(hours=1)


def last_ended_day(today: dt.date) -> dt.date:
    """The last day of the last month that has ended by ``today``."""
    return today.replace(day=1) - dt.timedelta(days=1)


def last_counted_day(now: dt.datetime, zone: Any) -> dt.date:
    """The last day statistics count at ``now``: that of the last month ended (in ``zone``) over SETTLE ago."""
    return last_ended_day((now - SETTLE).astimezone(zone).date())


def check_period(since: dt.date | None, until: dt.date | None, last_day: dt.date) -> dt.date:
    """Whole calendar months only: a day or a week could hold a single case, and its cells would be her.
    Months that have ended only (up to ``last_day``): asked before and after a new case, a running month's
    figures would differ by exactly her cells. Returns the period's last day: ``until``, or ``last_day``
    when it is later or not given."""
    from referral.errors import N_, ValidationFailed

    problems: dict[str, list[str]] = {}
    if since is not None and since > last_day:
        problems["since"] = [N_("Statistics cover months that have ended: start before this month.")]
    if since is not None and since.day != 1:
        problems["since"] = [N_("Statistics cover whole months: start on the first day of a month.")]
    if until is not None and (until + dt.timedelta(days=1)).day != 1:
        problems["until"] = [N_("Statistics cover whole months: end on the last day of a month.")]
    if since is not None and until is not None and until < since:
        problems["until"] = [N_("The period must not end before it starts.")]
    if problems:
        raise ValidationFailed(fields=problems)
    return last_day if until is None or until > last_day else until


def deidentified(session: Session, *, since: dt.date | None, until: dt.date | None,
                 now: dt.datetime) -> dict[str, Any]:
    """Set-based: one query for the consenting cases' de-identified columns, one for service outcomes,
    the area tree once; then counting in memory (a year of cases in well under a second)."""
    from sqlalchemy import and_, or_

    from referral.reference.models import Area
    from referral.services_dir.models import Consent

    zone = local_zone()
    until = check_period(since, until, last_counted_day(now, zone))

    # A case counts when its latest statistics record is in force: an active record with no newer one
    # (an anti-join the database answers with a hash, where ranking every record needed a sort).
    newer = aliased(Consent)
    superseded = exists().where(newer.referral_id == Consent.referral_id, newer.scope == "statistics",
                                or_(newer.recorded_at > Consent.recorded_at,
                                    and_(newer.recorded_at == Consent.recorded_at, newer.id > Consent.id)))
    query = (select(Referral.id, Referral.gbv_type, Referral.age_group, Referral.sex, Referral.area_id,
                    Referral.created_at, Referral.perpetrator_relationship, Referral.incident_date)
             .join(Consent, and_(Consent.referral_id == Referral.id, Consent.scope == "statistics",
                                 Consent.granted.is_(True), Consent.withdrawn_at.is_(None),
                                 or_(Consent.expires_at.is_(None), Consent.expires_at > now)))
             .where(~superseded))
    # Months, periods and report delays on the service's calendar (LOCAL_TIMEZONE), not UTC's: a case
    # reported at 02:00 in Bishkek on the first of a month belongs to that month.
    period = [Referral.created_at < local_midnight(until + dt.timedelta(days=1))]
    if since:
        period.append(Referral.created_at >= local_midnight(since))
    districts = _districts(session.execute(select(Area.id, Area.code, Area.kind, Area.parent_id)).all())
    if session.get_bind().dialect.name == "postgresql":
        tables, counted = _count_in_postgres(session, query.where(*period), districts, zone)
        return _report(since, until, tables, counted)
    rows = session.execute(query.where(*period)).tuples().all()
    # Columns counted whole (Counter runs in C), months by (year, month) and named once at the end.
    _ids, types, ages, sexes, area_ids, created, relationships, incidents = zip(*rows) if rows else ((),) * 8
    local = [when.astimezone(zone) for when in created]
    months = Counter((when.year, when.month) for when in local)
    tables: dict[str, Counter[str]] = {
        "gbv_type": Counter(types), "age_group": Counter(ages),
        "sex": Counter(sex or "unknown" for sex in sexes),
        "district": Counter(districts.get(area_id, "unknown") for area_id in area_ids),
        "month": Counter({f"{year:04d}-{month:02d}": n for (year, month), n in months.items()}),
        "perpetrator_relationship": Counter(rel or "unknown" for rel in relationships),
        "time_to_report": Counter(report_bucket(day, when, zone) for day, when in zip(incidents, created)),
        "service_outcome": Counter(),
    }
    if rows:
        # Outcomes of the period's service referrals, kept for the counted cases only (a set lookup,
        # rather than running the consent query a second time inside an IN).
        counted_ids = set(_ids)
        outcomes = (select(ServiceReferral.referral_id, ServiceReferral.outcome)
                    .join(Referral, Referral.id == ServiceReferral.referral_id)
                    .where(ServiceReferral.outcome.is_not(None), *period))
        tables["service_outcome"] = Counter(outcome.value for referral_id, outcome in session.execute(outcomes)
                                            if referral_id in counted_ids)
    return _report(since, until, tables, len(rows))


def _report(since: dt.date | None, until: dt.date | None, tables: dict[str, Counter[str]],
            counted: int) -> dict[str, Any]:
    few = 0 < counted < SMALL  # then no table shows a cell: together they would be those cases' profiles
    return {"since": since.isoformat() if since else None, "until": until.isoformat() if until else None,
            "cases": counted if counted >= SMALL or counted == 0 else "<5",
            "tables": {name: {"cells": {}, "total": "<5"} if few else suppress(counts)
                       for name, counts in tables.items()}}


def _count_in_postgres(session: Session, query: Any, districts: dict[int, str],
                       zone: Any) -> tuple[dict[str, Counter[str]], int]:
    """Every table in one pass with GROUPING SETS, so only a few hundred counts leave the database.

    The same buckets as the Python path: months and report delays on the service's calendar (``zone``).
    """
    from sqlalchemy import Date, case, cast, literal

    base = query.subquery()
    local = func.timezone(zone.key, base.c.created_at)
    days = cast(local, Date) - base.c.incident_date
    dims = {
        "gbv_type": base.c.gbv_type, "age_group": base.c.age_group,
        "sex": func.coalesce(base.c.sex, literal("unknown")), "district": base.c.area_id,
        "month": func.to_char(local, "YYYY-MM"),
        "perpetrator_relationship": func.coalesce(base.c.perpetrator_relationship, literal("unknown")),
        "time_to_report": case((base.c.incident_date.is_(None), "unknown"), (days <= 3, "0-3"), (days <= 5, "4-5"),
                               (days <= 14, "6-14"), (days <= 30, "15-30"), else_="over_30"),
    }
    names, exprs = list(dims), list(dims.values())
    stmt = (select(func.grouping(*exprs).label("mask"), *exprs, func.count().label("n"))
            .group_by(func.grouping_sets(*exprs)))  # GROUPING SETS (a, b, ...): one set per table
    tables: dict[str, Counter[str]] = {name: Counter() for name in DIMENSIONS}
    width = len(exprs)
    for row in session.execute(stmt):
        # GROUPING(...) sets a bit for every expression *not* grouped; the one clear bit names the table.
        index = next(i for i in range(width) if not row.mask & (1 << (width - 1 - i)))
        value = row[1 + index]
        name = names[index]
        key = districts.get(value, "unknown") if name == "district" else value
        tables[name][key] += row.n
    counted = sum(tables["gbv_type"].values())
    if counted:
        outcomes = (select(ServiceReferral.outcome, func.count())
                    .where(ServiceReferral.outcome.is_not(None), ServiceReferral.referral_id.in_(select(base.c.id)))
                    .group_by(ServiceReferral.outcome))
        tables["service_outcome"] = Counter({outcome.value: n for outcome, n in session.execute(outcomes)})
    return tables, counted


def _districts(areas: list[Any]) -> dict[int, str]:
    """Each area's district code (itself when it has no district above it), from the whole tree at once."""
    by_id = {a.id: a for a in areas}
    out: dict[int, str] = {}
    for area in areas:
        node, seen = area, set()
        while node is not None and node.id not in seen:
            seen.add(node.id)
            if str(getattr(node.kind, "value", node.kind)) == "district":
                out[area.id] = node.code
                break
            node = by_id.get(node.parent_id)
        else:
            out[area.id] = area.code
    return out


def as_csv_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = [["dimension", "category", "count"]]
    for name, table in report["tables"].items():
        for category, count in table["cells"].items():
            rows.append([name, category, str(count)])
        rows.append([name, "TOTAL", str(table["total"])])
    return rows
