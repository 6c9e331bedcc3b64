"""Step statuses kept current with the cases, so the unit summary is a ``GROUP BY`` (issue 10).

A session event notes each case whose judged facts a flush changed — the case row's judged columns, its
offers' times, its actions — and just before the transaction commits, those cases are judged again
(``compliance.timeline``) and their ``step_statuses`` and ``case_timings`` rows replaced. No workflow
function has to remember it, and the rows commit or roll back with the change that caused them. A read
inside a transaction that has not committed yet calls ``sync`` first. Time needs no refresh: a row says
when it turns breached. ``rebuild`` judges every case again (``flask standards rebuild``).
"""
from __future__ import annotations

import datetime as dt
import functools
from collections import Counter
from collections.abc import Iterable
from typing import Any

from sqlalchemy import bindparam, event, func, inspect, or_, select
from sqlalchemy.orm import Session

from referral.db import Rows, insert_rows, keys_as_written, local_zone
from referral.referrals.models import Referral
from referral.referrals.workflow_models import CaseAction, Offer
from referral.services_dir.models import ServiceReferral, ServiceReferralStatus
from referral.standards.compliance import BREACHED, counted_against, timeline
from referral.standards.loader import STANDARD_BODIES
from referral.standards.models import CaseTiming, StepStatus

# What the rows are made of (standards.services.bulk_facts): a change to anything else leaves them be.
JUDGED: dict[type, tuple[str, ...]] = {
    Referral: ("created_at", "first_accepted_at", "incident_date", "closed_at", "status", "flags", "gbv_type",
               "perpetrator_relationship", "age_group", "standard_id", "unit_id", "assigned_officer_id"),
    # Acceptances and releases: whom steps count against (``status`` too: a hold is an accepted offer).
    Offer: ("referral_id", "offered_at", "status", "responded_at", "released_at"),
    CaseAction: ("referral_id", "type", "created_at"),
    # A sent one satisfies a step. Not its status: a provider's answer changes no fact, and a system
    # suggestion is never turned into a sent referral (sending makes a new row).
    ServiceReferral: ("referral_id", "service_type", "created_at"),
}
STEP_COLUMNS = ("referral_id", "step_code", "standard_id", "status", "due_at", "breaches_at", "breach_month",
                "unit_id", "officer_id", "submitted_at")
TIMING_COLUMNS = ("referral_id", "unit_id", "submitted_at", "to_accept_us", "to_contact_us")
_PENDING = "standards.step_statuses.pending"  # session.info: {case id: True if the case is new}
# session.info: ids of cases whose actions, sent service referrals or acceptances (offers answered) changed
# since the last sync. A case created in this transaction and absent from it has none, so sync does not ask
# for them. That holds because every write of a CaseAction, a ServiceReferral or an answered Offer goes
# through the ORM's flush or insert_objects, which these events see (the Core UPDATE that cancels open offers
# answers none);
# a Core write of one for a case created in the same transaction would have to add the case here itself.
_ACTED = "standards.step_statuses.acted"
_BATCH = 1000
_MICROSECOND = dt.timedelta(microseconds=1)


# -- keeping the rows current ---------------------------------------------------------

def _changed_cases(obj: Any, whole: bool) -> list[str]:
    """The case(s) ``obj`` belongs to if flushing it changes what the rows hold (``whole``: it was added or
    deleted), else none."""
    watched = JUDGED.get(type(obj))
    if watched is None:
        return []
    state = inspect(obj)
    if not whole and not any(state.attrs[name].history.has_changes() for name in watched):
        return []
    if isinstance(obj, Referral):
        return [obj.id]
    # An offer or action moved to another case (never done today) changes both.
    return [i for i in (obj.referral_id, *state.attrs["referral_id"].history.deleted) if i is not None]


@event.listens_for(Session, "before_flush")
def _note_deleted(session: Session, _flush_context: Any, _instances: Any) -> None:
    # Before the DELETE: a deleted row's case can still be read (after it, an expired one could not).
    pending: dict[str, bool] = session.info.setdefault(_PENDING, {})
    for obj in session.deleted:
        for case_id in _changed_cases(obj, whole=True):
            pending.setdefault(case_id, False)
            _note_actions(session, obj, case_id)


@event.listens_for(Session, "after_flush")
def _note_changed_cases(session: Session, _flush_context: Any) -> None:
    pending: dict[str, bool] = session.info.setdefault(_PENDING, {})
    for obj in session.dirty:
        for case_id in _changed_cases(obj, whole=False):
            pending.setdefault(case_id, False)  # True stays: no sync since the case was created, so no rows
            _note_actions(session, obj, case_id)


@event.listens_for(Session, "pending_to_persistent")
def _note_new(session: Session, obj: Any) -> None:
    # Once written: a new case has its id, a new offer or action its case id, however they were set. Fired
    # by a flush and by referral.db.insert_objects alike (both register what they wrote the same way).
    pending: dict[str, bool] = session.info.setdefault(_PENDING, {})
    for case_id in _changed_cases(obj, whole=True):
        if isinstance(obj, Referral):
            pending[case_id] = True
        else:
            pending.setdefault(case_id, False)
            _note_actions(session, obj, case_id)


def _note_actions(session: Session, obj: Any, case_id: str) -> None:
    # A case created in this transaction with no action noted since has none: sync need not ask for them.
    # (A sent service referral is read with the actions; the system's suggestion is not a fact.)
    if isinstance(obj, CaseAction) or (isinstance(obj, ServiceReferral)
                                       and obj.status is not ServiceReferralStatus.suggested) \
            or (isinstance(obj, Offer) and obj.responded_at is not None):  # an acceptance: whom steps count against
        session.info.setdefault(_ACTED, set()).add(case_id)


@event.listens_for(Session, "before_commit")
def _judge_changed_cases(session: Session) -> None:
    if session.info.get(_PENDING) or session.new or session.dirty or session.deleted:
        sync(session)


@event.listens_for(Session, "after_transaction_end")
def _forget_on_end(session: Session, transaction: Any) -> None:
    if transaction.parent is None:  # the whole transaction ended: committed, or rolled back with its changes
        session.info.pop(_PENDING, None)
        session.info.pop(_ACTED, None)
        # Bodies of standards read in this transaction: a standard loaded in one that rolled back may not
        # exist afterwards, and its id could be given to another (SQLite reuses them).
        session.info.pop(STANDARD_BODIES, None)


def sync(session: Session) -> None:
    """Flush, then judge again every case this transaction changed; readers of the rows call this first."""
    session.flush()
    pending: dict[str, bool] = session.info.pop(_PENDING, None) or {}
    acted: set[str] = session.info.pop(_ACTED, None) or set()
    ids = sorted(pending)
    for start in range(0, len(ids), _BATCH):
        chunk = ids[start:start + _BATCH]
        if not all(pending[i] for i in chunk):  # a case created in this transaction has no rows yet
            for statement in _delete_statements():
                session.connection().execute(statement, {"ids": chunk})
        steps, timings = _rows(session, chunk, without_actions=frozenset(
            i for i in chunk if pending[i] and i not in acted))
        _insert(session, StepStatus, STEP_COLUMNS, steps)
        _insert(session, CaseTiming, TIMING_COLUMNS, timings)


@functools.cache
def _delete_statements() -> tuple[Any, ...]:
    return tuple(table.delete().where(table.c.referral_id.in_(bindparam("ids", expanding=True)))
                 for table in (StepStatus.__table__, CaseTiming.__table__))


def rebuild(session: Session, *, batch: int = 5000) -> dict[str, int]:
    """Judge every case again from scratch (after a bulk load, or to repair); the caller commits."""
    session.flush()
    session.info.pop(_PENDING, None)
    session.info.pop(_ACTED, None)
    for table in (StepStatus.__table__, CaseTiming.__table__):
        session.execute(table.delete())
    counts = {"cases": 0, "step_statuses": 0, "case_timings": 0}
    last = ""
    while True:
        ids = session.scalars(select(Referral.id).where(Referral.id > last).order_by(Referral.id).limit(batch)).all()
        if not ids:
            break
        steps, timings = _rows(session, ids)
        _insert(session, StepStatus, STEP_COLUMNS, steps)
        _insert(session, CaseTiming, TIMING_COLUMNS, timings)
        counts["cases"] += len(ids)
        counts["step_statuses"] += len(steps)
        counts["case_timings"] += len(timings)
        last = ids[-1]
    return counts


def rows_of_new_case(session: Session, referral: Referral) -> list[Rows] | None:
    """The step and timing rows of a case not written yet, judged from the objects about to be written with
    it (the case, its offers), for ``referral.db.insert_objects`` to write in the same statement; then
    ``written`` spares judging it again from the database at commit. None where only that will do: the
    case is in the database already, a default is still to be filled in, an action, a sent service
    referral or an answered offer is pending with it, a parent set as an object disagrees with the key
    beside it, or its standard's body is not in the session.

    Nothing of the case is in the database yet, so these objects are all there is to judge (tests compare
    the rows with a rebuild's on random submissions)."""
    from referral.standards.loader import STANDARD_BODIES
    from referral.standards.services import _facts_from, parsed_standard

    state = inspect(referral)
    if not state.pending or session.dirty or session.deleted or not keys_as_written(referral):
        return None  # keys_as_written: a unit set as an object, not as a key, would be judged on the old key
    columns = state.mapper.columns
    if any(state.dict.get(key) is None and columns[key].default is not None for key in JUDGED[Referral]):
        return None  # insert_objects would fill it in (a flush too): judge what is written, afterwards
    offered = []
    for obj in session.new:
        if isinstance(obj, (Offer, CaseAction, ServiceReferral)) and obj.referral_id in (referral.id, None):
            if isinstance(obj, CaseAction) or obj.referral_id is None or (
                    isinstance(obj, ServiceReferral) and obj.status is not ServiceReferralStatus.suggested) \
                    or (isinstance(obj, Offer) and (obj.responded_at is not None or obj.offered_at is None)):
                return None  # (an offer without its time: its write refuses it, not this judgement)
            if isinstance(obj, Offer):
                offered.append(obj.offered_at)
    standard = None
    if referral.standard_id is not None:
        body = session.info.get(STANDARD_BODIES, {}).get(referral.standard_id)
        if body is None:
            return None
        standard = parsed_standard(body)
    facts = _facts_from(referral, min(offered) if offered else None, ())
    steps, timings = _rows_of([(referral, facts, standard)])
    return [(StepStatus.__table__, STEP_COLUMNS, steps), (CaseTiming.__table__, TIMING_COLUMNS, timings)]


def written(session: Session, case_id: str) -> None:
    """The rows of the new case ``case_id`` (``rows_of_new_case``) went in with it: not judged again at
    commit, unless something has changed it since it was written through the ORM (its events note it). A
    Core write to the case's row or its offers later in the same transaction would go unseen: it must add
    the case to ``_PENDING`` itself (as ``_ACTED`` says of actions); none does."""
    pending: dict[str, bool] = session.info.get(_PENDING, {})
    acted: set[str] = session.info.get(_ACTED, set())
    if pending.get(case_id) is True and case_id not in acted:
        del pending[case_id]
    elif case_id in pending:
        pending[case_id] = False  # rows exist now: replace them


def _rows(session: Session, ids: list[str], *, without_actions: frozenset[str] = frozenset()) \
        -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The step and timing rows of these cases, in STEP_COLUMNS and TIMING_COLUMNS order."""
    from referral.standards.services import bulk_facts

    return _rows_of(bulk_facts(session, ids, without_actions=without_actions))


def _rows_of(judged: Iterable[tuple[Any, Any, Any]]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The rows of each (case, facts, parsed standard or None)."""
    steps: list[tuple[Any, ...]] = []
    timings: list[tuple[Any, ...]] = []
    zone = local_zone()  # a breach's month on the service's calendar, as statistics count months
    for case, facts, standard in judged:
        if facts.accepted_at is not None:
            contact = next((when for kind, when in facts.actions if kind == "contact_made"), None)
            to_accept = (facts.accepted_at - facts.submitted_at) // _MICROSECOND
            to_contact = None if contact is None else (contact - facts.accepted_at) // _MICROSECOND
            timings.append((case.id, case.unit_id, case.created_at, to_accept, to_contact))
        if standard is None:
            continue
        for step in timeline(standard, facts):
            may_breach = step.status == BREACHED or step.breaches_at is not None
            month = (step.due_at or case.created_at).astimezone(zone).strftime("%Y-%m") if may_breach else None
            steps.append((case.id, step.code, case.standard_id, step.status, step.due_at, step.breaches_at, month,
                          case.unit_id, counted_against(step, facts, case.assigned_officer_id), case.created_at))
    return steps, timings


def _insert(session: Session, model: Any, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    # COPY on PostgreSQL: a rebuild writes about ten step rows a case, and a submission's ten cost half as
    # much that way as by INSERT (referral.db.insert_rows).
    insert_rows(session, model.__table__, columns, rows)


# -- reading --------------------------------------------------------------------------

def _within(table: Any, unit_id: int | None, start: dt.datetime | None, end: dt.datetime | None) -> list[Any]:
    where = []
    if unit_id is not None:
        where.append(table.unit_id == unit_id)
    if start is not None:
        where.append(table.submitted_at >= start)
    if end is not None:
        where.append(table.submitted_at < end)
    return where


def counts(session: Session, now: dt.datetime, *, unit_id: int | None, start: dt.datetime | None,
           end: dt.datetime | None) -> Counter[tuple[str, int | None, str, str | None]]:
    """Steps counted by (step, assigned officer, status at ``now``, month of the breach or None) over the
    cases of the unit (None: every unit) submitted in [start, end).

    Grouped on the stored columns and on whether ``breaches_at`` has passed, so the database can use a
    hash over the index; folding the few thousand groups into statuses is done here.
    """
    late = (StepStatus.breaches_at < now).label("late")
    rows = (select(StepStatus.step_code, StepStatus.officer_id, StepStatus.status, StepStatus.breach_month, late)
            .where(*_within(StepStatus, unit_id, start, end)).subquery())
    grouped = (select(rows.c.step_code, rows.c.officer_id, rows.c.status, rows.c.breach_month, rows.c.late,
                      func.count())
               .group_by(rows.c.step_code, rows.c.officer_id, rows.c.status, rows.c.breach_month, rows.c.late))
    out: Counter[tuple[str, int | None, str, str | None]] = Counter()
    for step, officer, status, month, is_late, n in session.execute(grouped):
        status = BREACHED if is_late else status
        out[(step, officer, status, month if status == BREACHED else None)] += n
    return out


def overdue_unrecorded(session: Session, now: dt.datetime, states: tuple[Any, ...],
                       limit: int | None = None) -> list[Any]:
    """(referral_id, step_code, due_at) of every step breached at ``now`` — judged so, or past the time its
    open deadline turns breached — of a case in ``states``, for which ``sla tick`` has recorded no breach
    yet; in case and step order, the first ``limit``. This transaction's own changes count (``sync`` first)."""
    from referral.standards.models import StepBreach

    sync(session)
    recorded = (select(StepBreach.id).where(StepBreach.referral_id == StepStatus.referral_id,
                                            StepBreach.step_code == StepStatus.step_code).exists())
    return list(session.execute(
        select(StepStatus.referral_id, StepStatus.step_code, StepStatus.due_at)
        .join(Referral, Referral.id == StepStatus.referral_id)
        .where(Referral.status.in_(states), or_(StepStatus.status == BREACHED, StepStatus.breaches_at < now),
               ~recorded)
        .order_by(StepStatus.referral_id, StepStatus.step_code).limit(limit)))


def median_hours(session: Session, *, unit_id: int | None, start: dt.datetime | None,
                 end: dt.datetime | None) -> tuple[float | None, float | None]:
    """Median hours from submission to first acceptance, and from first acceptance to the first contact made,
    of the same floats judging each case gives (``timedelta.total_seconds() / 3600``): the database picks
    the one or two middle values, exact in microseconds."""
    where = _within(CaseTiming, unit_id, start, end)
    return _median(session, CaseTiming.to_accept_us, where), _median(session, CaseTiming.to_contact_us, where)


def _median(session: Session, column: Any, where: list[Any]) -> float | None:
    ranked = (select(column.label("us"), func.row_number().over(order_by=column).label("rank"),
                     func.count().over().label("n"))
              .where(column.is_not(None), *where).subquery())
    middle = select(ranked.c.us).where(or_(ranked.c.rank == (ranked.c.n + 1) // 2,
                                           ranked.c.rank == (ranked.c.n + 2) // 2))
    return median([(us * _MICROSECOND).total_seconds() / 3600 for us in session.scalars(middle)])


def median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
