"""De-identified statistics in the style of the GBVIMS Incident Recorder, with small-cell suppression.

Only cases whose ``statistics`` consent is in force are counted. In every table a
count of 1–4 is shown as ``<5``; when a table has exactly one such cell, its
smallest other cell is suppressed too (``suppressed``), so the total cannot be
used to work the small one out. A total under 5 is itself ``<5``.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from referral.referrals.models import Referral
from referral.services_dir import consent
from referral.services_dir.models import ServiceReferral

SMALL = 5
DIMENSIONS = ("gbv_type", "age_group", "sex", "district", "month", "perpetrator_relationship",
              "time_to_report", "service_outcome")


def report_bucket(incident: dt.date | None, reported: dt.datetime) -> str:
    if incident is None:
        return "unknown"
    days = (reported.date() - incident).days
    for upper, label in ((3, "0-3"), (5, "4-5"), (14, "6-14"), (30, "15-30")):
        if days <= upper:
            return label
    return "over_30"


def district_of(referral: Referral) -> str:
    for place in referral.area.lineage():
        if place.kind.value == "district":
            return place.code
    return referral.area.code


def suppress(counts: Counter[str]) -> dict[str, Any]:
    cells: dict[str, Any] = dict(sorted(counts.items()))
    small = [k for k, v in cells.items() if 0 < v < SMALL]
    for key in small:
        cells[key] = "<5"
    if len(small) == 1:
        others = sorted((v, k) for k, v in counts.items() if v >= SMALL)
        if others:
            cells[others[0][1]] = "suppressed"
    total = sum(counts.values())
    return {"cells": cells, "total": total if total >= SMALL or total == 0 else "<5"}


def deidentified(session: Session, *, since: dt.date | None, until: dt.date | None,
                 now: dt.datetime) -> dict[str, Any]:
    query = select(Referral)
    if since:
        query = query.where(Referral.created_at >= dt.datetime.combine(since, dt.time.min, tzinfo=dt.UTC))
    if until:
        query = query.where(Referral.created_at < dt.datetime.combine(until + dt.timedelta(days=1), dt.time.min,
                                                                      tzinfo=dt.UTC))
    tables: dict[str, Counter[str]] = {d: Counter() for d in DIMENSIONS}
    counted = 0
    for referral in session.scalars(query):
        if not consent.is_active(session, referral.id, "statistics", now):
            continue
        counted += 1
        tables["gbv_type"][referral.gbv_type] += 1
        tables["age_group"][referral.age_group] += 1
        tables["sex"][referral.sex or "unknown"] += 1
        tables["district"][district_of(referral)] += 1
        tables["month"][referral.created_at.strftime("%Y-%m")] += 1
        tables["perpetrator_relationship"][referral.perpetrator_relationship or "unknown"] += 1
        tables["time_to_report"][report_bucket(referral.incident_date, referral.created_at)] += 1
        for outcome in session.scalars(select(ServiceReferral.outcome).where(
                ServiceReferral.referral_id == referral.id, ServiceReferral.outcome.is_not(None))):
            tables["service_outcome"][outcome.value] += 1
    return {"since": since.isoformat() if since else None, "until": until.isoformat() if until else None,
            "cases": counted if counted >= SMALL or counted == 0 else "<5",
            "tables": {name: suppress(counts) for name, counts in tables.items()}}


def as_csv_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = [["dimension", "category", "count"]]
    for name, table in report["tables"].items():
        for category, count in table["cells"].items():
            rows.append([name, category, str(count)])
        rows.append([name, "TOTAL", str(table["total"])])
    return rows
