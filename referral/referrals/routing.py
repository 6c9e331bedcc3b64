"""Routing (SPEC §3.3): the covering unit, eligible officers, offers, escalation."""
from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import Date, and_, bindparam, exists, func, literal, select
from sqlalchemy.orm import Session

from referral import rowload
from referral.accounts.models import Gender, Role, User
from referral.notify import events
from referral.audit.service import record
from referral.db import local_today
from referral.reference.models import Area, Unit, ancestry, unit_areas
from referral.referrals.models import Referral, Status
from referral.referrals.workflow_models import Alert, AlertKind, Offer, OfferStatus
from referral.standards.loader import choosing, like_literal, remember, standard_for
from referral.standards.models import Certification, Course, CourseRequirement, Standard

OPEN_CASE_STATES = (Status.accepted, Status.in_progress)


@dataclass(frozen=True)
class Place:
    """An area with its ancestors (``Area.lineage()`` walks them without a query) and the active units that
    cover each of them (area id → units, by id); for a submission, the standard in force for its country
    and whether the reference drawn for it is taken."""

    area: Area
    cover: dict[int, list[Unit]]
    standard: Standard | None = None
    reference_taken: bool = False


@functools.cache
def _place() -> Any:
    # One statement, built once: every submission asks. Beside being round trips fewer, it spares
    # PostgreSQL the planning of the covering units' own query (an IN list of the lineage's ids), which it
    # planned afresh on every execution: more time than running it. The standard in force (on ``:on``) is
    # that of the lineage's root, the country; ``:reference`` is the one the submission drew.
    tree = ancestry()
    country = (select(Area.code).join(tree, Area.id == tree.c.id).where(Area.parent_id.is_(None))
               .scalar_subquery())
    listed = literal("%,") + like_literal(country) + literal(",%")
    standard = choosing(Standard.id, listed).scalar_subquery()
    taken = exists().where(Referral.reference == bindparam("reference"))
    # Columns, made into objects by rowload: past the ORM's per-query set-up, which cost more than the rest
    # of this read (docs/performance.md, session 14).
    return (select(*rowload.columns_of(Area), *rowload.columns_of(Unit), *rowload.columns_of(Standard),
                   taken.label("taken")).join(tree, Area.id == tree.c.id)
            .outerjoin(unit_areas, unit_areas.c.area_id == Area.id)
            .outerjoin(Unit, and_(Unit.id == unit_areas.c.unit_id, Unit.active.is_(True)))
            .outerjoin(Standard, Standard.id == standard)
            .order_by(Unit.id))


_PLACE_UNIT = len(rowload.columns_of(Area))  # where a row of _place() holds the unit's columns, the standard's
_PLACE_STANDARD = _PLACE_UNIT + len(rowload.columns_of(Unit))


def place(session: Session, area_code: str, *, on: dt.date, reference: str = "") -> Place | None:
    """The area with this code, its ancestors and the units covering them, in one query; None if no such
    area. With it, the standard in force on ``on`` for the area's country, and whether ``reference`` is a
    case's already."""
    rows = rowload.execute(session, _place(), {"code": area_code, "reference": reference, "on": on}).all()
    cover: dict[int, list[Unit]] = {}
    areas = []
    for row in rows:
        found = rowload.load(session, Area, row)
        areas.append(found)
        units = cover.setdefault(found.id, [])
        unit = rowload.load(session, Unit, row, _PLACE_UNIT)
        if unit is not None:
            units.append(unit)
    area = Area.linked(areas, area_code)
    if area is None:
        return None
    root = area.lineage()[-1]
    if root.parent_id is None:
        standard = remember(session, rowload.load(session, Standard, rows[0], _PLACE_STANDARD))
    else:  # a parent cycle (a database edited by hand): the country is where lineage() stops, as before
        standard = standard_for(session, root.code, on)
    return Place(area, cover, standard, bool(rows[0][-1]))


def covering_unit(place: Place, *, exclude: int | None = None) -> Unit | None:
    """The unit covering the place's area or its nearest ancestor (optionally not ``exclude``); the lowest
    id where several cover one area."""
    for area in place.area.lineage():
        for unit in place.cover.get(area.id, ()):
            if unit.id != exclude:
                return unit
    return None


def missing_certifications(session: Session, officer: User, referral: Referral, today: dt.date) -> list[str]:
    """Codes of the required courses ``officer`` holds no current certification for."""
    return list(session.scalars(_missing_for_one("child" in referral.flag_list),
                                {"officer_id": officer.id, "today": today}))


def _courses_lacking(child: bool, officer: Any) -> Any:
    """The courses a case needs (a child's case: the child course too) that ``officer`` — a user id column
    or parameter — holds no certification current on ``:today`` for. The one statement of the rule, for
    one officer (accepting) and for a unit's officers (routing)."""
    wanted = [CourseRequirement.all] + ([CourseRequirement.child] if child else [])
    today = bindparam("today", type_=Date())
    current = (select(Certification.id).where(Certification.user_id == officer, Certification.course_id == Course.id,
                                              Certification.completed_on <= today, Certification.expires_on > today)
               .correlate(User, Course).exists())  # two levels below users: say so, or it joins users again
    return select(Course.code).where(Course.required_for.in_(wanted), ~current)


@functools.cache
def _missing_for_one(child: bool) -> Any:
    return _courses_lacking(child, bindparam("officer_id")).order_by(Course.id)


def eligible_officers(session: Session, referral: Referral, unit: Unit, *, today: dt.date,
                      exclude: Iterable[int] = (), loads: dict[int, int] | None = None) -> list[User]:
    """Active officers of ``unit`` who can sign in (set up by their holder), currently certified for this
    case, of the asked gender and language.

    One query: each officer comes with the number of courses this case requires that they hold no current
    certification for (what ``missing_certifications`` names), so eligibility is that number being 0.
    ``loads``: filled with each officer's number of open (accepted or in-progress) cases, from the same
    query, for direct routing.
    """
    excluded = set(exclude)
    found = rowload.execute(session, _officers_with_missing_courses("child" in referral.flag_list, loads is not None),
                            {"unit_id": unit.id, "today": today}).all()
    width = len(rowload.columns_of(User))
    rows = [(rowload.load(session, User, row), *row[width:]) for row in found]
    if loads is not None:
        loads.update({row[0].id: row[2] for row in rows})
    return [o for o, lacking, *_load in rows if not lacking and o.id not in excluded
            and not (referral.officer_gender == "female" and o.gender is not Gender.female)
            and not (referral.survivor_language and referral.survivor_language not in o.language_list)]


@functools.cache
def _officers_with_missing_courses(child: bool, with_loads: bool) -> Any:
    """Officers of the unit ``:unit_id`` who can sign in, each with the number of courses a case needs
    (a child's case: the child course too) they hold no certification current on ``:today`` for, and
    (``with_loads``) their number of open cases. Built once per kind of case."""
    missing = (_courses_lacking(child, User.id).with_only_columns(func.count(), maintain_column_froms=True)
               .correlate(User).scalar_subquery())
    columns: list[Any] = [*rowload.columns_of(User), missing]  # the officers made into objects by rowload
    if with_loads:
        columns.append(select(func.count()).select_from(Referral)
                       .where(Referral.assigned_officer_id == User.id, Referral.status.in_(OPEN_CASE_STATES))
                       .correlate(User).scalar_subquery())
    return (select(*columns).where(User.unit_id == bindparam("unit_id"), User.role == Role.officer,
                                   User.active.is_(True), User.enrolment_pending.is_(False))
            .order_by(User.id))


def accept_deadline(referral: Referral, now: dt.datetime) -> dt.datetime:
    """The standard's acceptance step (1 h urgent / 24 h otherwise by default); settings if no standard."""
    if referral.standard_id is not None:
        from referral.extensions import db
        from referral.standards.compliance import step_hours
        from referral.standards.models import Standard

        standard = db.session.get(Standard, referral.standard_id)
        hours = step_hours(standard.body, "accept", referral.is_urgent) if standard else None
        if hours is not None:
            return now + dt.timedelta(hours=hours)
    config = current_app.config
    if referral.is_urgent:
        return now + dt.timedelta(minutes=config["ACCEPT_URGENT_MINUTES"])
    return now + dt.timedelta(hours=config["ACCEPT_HOURS"])


def already_tried(session: Session, referral: Referral) -> set[int]:
    """Officers who declined, recused or let an offer lapse: never offered this case again."""
    return set(session.scalars(select(Offer.officer_id).where(
        Offer.referral_id == referral.id, Offer.status.in_((OfferStatus.declined, OfferStatus.expired)))))


def route(session: Session, referral: Referral, *, now: dt.datetime, actor: User | None = None,
          first: bool = False) -> list[Offer]:
    """Offer the case (direct: to the least-loaded eligible officer; pool: to all), or escalate.

    ``first``: a case just submitted, which nobody can have declined yet.
    """
    unit = referral.unit
    direct = unit is not None and unit.routing_mode.value == "direct"
    loads: dict[int, int] | None = {} if direct else None  # read with the officers: one query, not two
    everyone = [] if unit is None else eligible_officers(session, referral, unit, today=local_today(now),
                                                         loads=loads)
    tried = set() if first else already_tried(session, referral)
    officers = [o for o in everyone if o.id not in tried]
    if not officers:
        # A coverage gap is a unit with nobody trained for the case, not one whose officers all declined.
        gap = not everyone
        escalate(session, referral, now=now, coverage_gap=gap, actor=actor,
                 reason="no eligible officer" if gap else "every eligible officer declined or missed the deadline")
        return []
    if loads is not None:
        officers = [min(officers, key=lambda o: (loads[o.id], o.id))]
    deadline = accept_deadline(referral, now)
    offers = [Offer(referral_id=referral.id, officer_id=o.id, offered_at=now, deadline=deadline) for o in officers]
    session.add_all(offers)
    referral.status = Status.offered
    record(session, actor, "referral.offer", object_type="referral", object_id=referral.id,
           reason=f"offered to {len(offers)} officer(s) in {unit.code}, deadline {deadline.isoformat()}")
    events.offered(session, referral, officers)
    return offers


def escalate(session: Session, referral: Referral, *, now: dt.datetime, reason: str, coverage_gap: bool,
             actor: User | None = None) -> None:
    referral.status = Status.escalated
    referral.escalated_at = now
    if coverage_gap:
        session.add(Alert(kind=AlertKind.coverage_gap, referral_id=referral.id,
                          unit_id=referral.unit_id, created_at=now))
    session.flush()
    record(session, actor, "referral.escalate", object_type="referral", object_id=referral.id, reason=reason)
    events.escalated(session, referral)
