"""The case workflow (SPEC §3): accept, decline, recuse, act, close, reassign, withdraw, deadlines.

Every function takes the acting user, checks visibility and permission, locks
the case row (``FOR UPDATE`` on PostgreSQL; SQLite transactions begin
IMMEDIATE), re-checks the state under the lock, changes it, audits, flushes.
An illegal transition is ``InvalidTransition`` (409).
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from referral.accounts.models import User
from referral.audit.service import DENIED, record
from referral.db import local_today, utcnow
from referral.errors import N_, P_, Forbidden, InvalidTransition, Message, NotFound, Phrase, Stage, ValidationFailed
from referral.notify import events
from referral.referrals import crypto, routing
from referral.referrals.models import Referral, Status, new_id, parse_case_id
from referral.referrals.workflow_models import (
    ActionType, Alert, AlertKind, CaseAction, Offer, OfferStatus, ProtectionOrder,
)
from referral.security.permissions import (CaseView, Permission, case_view, closes_without_approval, is_submitter,
                                          may_work, require, supervises)
from referral.security.sealed import seal_field

DECLINE_REASONS = ("conflict_of_interest", "workload", "unavailable", "outside_competence", "other")
CLOSE_OUTCOMES = ("services_provided", "protection_order_in_place", "referred_elsewhere", "survivor_declined",
                  "perpetrator_charged", "no_further_action", "other")
WORKING = (Status.accepted, Status.in_progress)
# How far a protection order's dates may lie from today, and its expiry from its issue: generous for any real
# order (or one she already held when the case began), and it stops a mistyped year (2062, 0001, 9999) from
# standing on the case as an order in force for centuries, or one long expired.
ORDER_YEARS = 5


def _years_from(day: dt.date, years: int) -> dt.date:
    """The same day ``years`` later (earlier if negative); 29 February becomes the 28th."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def _locked(session: Session, actor: User, referral_id: str, action: str) -> tuple[Referral, CaseView]:
    """Lock the case row, then decide visibility on what is now committed (404 + denied event if none)."""
    referral = None
    case_id = parse_case_id(referral_id)
    if case_id is not None:
        referral = session.scalar(select(Referral).where(Referral.id == case_id)
                                  .with_for_update().execution_options(populate_existing=True))
    level = case_view(actor, referral) if referral is not None else None
    if referral is None or level is None:
        record(session, actor, action, object_type="referral", object_id=case_id or "malformed-id", outcome=DENIED,
               reason="not visible to this user" if referral is not None else "no such case")
        raise NotFound(N_("No such referral."))
    return referral, level


def _open_offer(session: Session, referral: Referral, officer: User) -> Offer | None:
    return session.scalar(select(Offer).where(Offer.referral_id == referral.id, Offer.officer_id == officer.id,
                                              Offer.status == OfferStatus.open))


def _unassign(session: Session, referral: Referral, now: dt.datetime) -> Offer | None:
    """The assigned officer no longer holds the case from ``now`` (the one way a case loses its officer):
    their accepted offer records the release (and is returned), so the case's steps that fall due from then
    on no longer count against them."""
    held = None if referral.assigned_officer_id is None else session.scalar(
        select(Offer).where(Offer.referral_id == referral.id, Offer.officer_id == referral.assigned_officer_id,
                            Offer.status == OfferStatus.accepted, Offer.released_at.is_(None))
        .order_by(Offer.responded_at.desc(), Offer.id.desc()).limit(1))
    if held is not None:
        # Never before the acceptance it ends (another server's clock, a given ``now``): at worst an empty hold.
        held.released_at = max(now, held.responded_at) if held.responded_at else now
    referral.assigned_officer_id, referral.accepted_at = None, None
    return held


def _cancel_open_offers(session: Session, referral: Referral, now: dt.datetime, reason: str) -> None:
    """``reason`` "taken" (another officer accepted) keeps the summary visible to the losers; others do not."""
    session.execute(update(Offer).where(Offer.referral_id == referral.id, Offer.status == OfferStatus.open)
                    .values(status=OfferStatus.cancelled, responded_at=now, reason=reason))


def _transition_error(referral: Referral, doing: Phrase) -> InvalidTransition:
    return InvalidTransition(N_("A case that is %(status)s cannot be %(doing)s."),
                             params={"status": Stage(referral.status.value), "doing": doing})


def accept(session: Session, actor: User, referral_id: str, *, now: dt.datetime | None = None) -> Referral:
    """One winner: the first officer holding an open offer who accepts while the case is still offered.

    An officer without a current certification for this case is refused (403) even with an offer.
    """
    now = now or utcnow()
    require(actor, Permission.REFERRAL_ACCEPT)
    referral, _level = _locked(session, actor, referral_id, "referral.accept")
    if referral.status is not Status.offered:
        raise _transition_error(referral, P_("accepted"))
    offer = _open_offer(session, referral, actor)
    if offer is None:
        raise InvalidTransition(N_("This case is no longer offered to you."))
    missing = routing.missing_certifications(session, actor, referral, local_today(now))
    if missing:
        record(session, actor, "referral.accept", object_type="referral", object_id=referral.id, outcome=DENIED,
               reason=f"no current certification: {', '.join(missing)}")
        raise Forbidden(N_("You need a current certification (%(courses)s) to accept this case."),
                        params={"courses": ", ".join(missing)},
                        code="certification_required")
    # Accepted after its deadline, before a tick saw the miss: the case is taken (an officer has it now), but the
    # miss counts as a breach exactly as the tick would have counted it (SPEC §3.5).
    _count_late_answers(session, referral, now, f"accepted late by officer {actor.id}")
    offer.status, offer.responded_at = OfferStatus.accepted, now
    _cancel_open_offers(session, referral, now, "taken")
    referral.status, referral.assigned_officer_id, referral.accepted_at = Status.accepted, actor.id, now
    referral.first_accepted_at = referral.first_accepted_at or now
    session.flush()
    record(session, actor, "referral.accept", object_type="referral", object_id=referral.id)
    events.survivor(session, referral, "survivor_contact")  # "your contact will call you soon", if she agreed
    return referral


def _count_late_answers(session: Session, referral: Referral, now: dt.datetime, how: str,
                        officer_id: int | None = None) -> None:
    """Open offers past their deadline answered before a tick saw them: each an audited breach, an
    acceptance_missed alert and the supervisor told, as ``sla_tick`` records a miss (``officer_id``: that
    officer's offer only)."""
    query = select(Offer.officer_id).where(Offer.referral_id == referral.id, Offer.status == OfferStatus.open,
                                           Offer.deadline < now)
    if officer_id is not None:
        query = query.where(Offer.officer_id == officer_id)
    lapsed = session.scalars(query).all()
    for late_officer in lapsed:
        record(session, None, "sla.breach", object_type="referral", object_id=referral.id,
               reason=f"acceptance deadline missed by officer {late_officer} ({how})")
    if lapsed:
        session.add(Alert(kind=AlertKind.acceptance_missed, referral_id=referral.id, unit_id=referral.unit_id,
                          created_at=now))
        events.breached(session, referral)


def decline(session: Session, actor: User, referral_id: str, reason: str, *,
            now: dt.datetime | None = None) -> Referral:
    """Decline with a reason; the case goes to the next eligible officer, never back to this one."""
    now = now or utcnow()
    require(actor, Permission.REFERRAL_ACCEPT)
    # The case first: a probe of someone else's case is a 404 and a denied event, whatever its body said.
    referral, _level = _locked(session, actor, referral_id, "referral.decline")
    if reason not in DECLINE_REASONS:
        raise ValidationFailed(fields={"reason": [Message(N_("Give one of: %(choices)s."),
                                                          choices=", ".join(DECLINE_REASONS))]})
    offer = _open_offer(session, referral, actor)
    if referral.status is not Status.offered or offer is None:
        raise InvalidTransition(N_("This case is not offered to you."))
    _count_late_answers(session, referral, now, f"declined late by officer {actor.id}", officer_id=actor.id)
    offer.status, offer.responded_at, offer.reason = OfferStatus.declined, now, reason
    session.flush()
    record(session, actor, "referral.decline", object_type="referral", object_id=referral.id, reason=reason)
    if session.scalar(select(Offer.id).where(Offer.referral_id == referral.id, Offer.status == OfferStatus.open)
                      .limit(1)) is None:
        routing.route(session, referral, now=now, actor=actor)
    return referral


def recuse(session: Session, actor: User, referral_id: str, reason: str, *,
           now: dt.datetime | None = None) -> Referral:
    """The assigned officer steps aside (e.g. conflict of interest); the case is routed again without them."""
    now = now or utcnow()
    require(actor, Permission.REFERRAL_ACCEPT)
    # The case first: a probe of someone else's case is a 404 and a denied event, whatever its body said.
    referral, _level = _locked(session, actor, referral_id, "referral.recuse")
    if reason not in DECLINE_REASONS:
        raise ValidationFailed(fields={"reason": [Message(N_("Give one of: %(choices)s."),
                                                          choices=", ".join(DECLINE_REASONS))]})
    if referral.status not in WORKING or referral.assigned_officer_id != actor.id:
        raise _transition_error(referral, P_("handed back by you"))
    accepted_at = referral.accepted_at
    offer = _unassign(session, referral, now)  # the actor's own acceptance: they are the assigned officer
    if offer is not None:
        offer.status, offer.reason = OfferStatus.declined, reason
    else:  # assigned without an offer row (data from before offers): remember the recusal and the hold
        session.add(Offer(referral_id=referral.id, officer_id=actor.id, offered_at=now, deadline=now,
                          responded_at=min(accepted_at or now, now), released_at=now,
                          status=OfferStatus.declined, reason=reason))
    _drop_closure_request(referral)  # the next officer starts from the case, not from this officer's request
    session.flush()
    record(session, actor, "referral.recuse", object_type="referral", object_id=referral.id, reason=reason)
    routing.route(session, referral, now=now, actor=actor)
    return referral


def add_action(session: Session, actor: User, referral_id: str, data: dict[str, Any], *,
               now: dt.datetime | None = None) -> CaseAction:
    """Record work on a case; the first action moves it from accepted to in progress."""
    now = now or utcnow()
    require(actor, Permission.REFERRAL_WORK)
    referral, level = _locked(session, actor, referral_id, "referral.action")
    if level is CaseView.OFFER:
        raise InvalidTransition(N_("Accept the case before working on it."))
    if not may_work(actor, referral, level):
        record(session, actor, "referral.action", object_type="referral", object_id=referral.id, outcome=DENIED,
               reason="not assigned to this user")
        raise NotFound(N_("No such referral."))
    if referral.status not in WORKING:
        raise _transition_error(referral, P_("worked on"))
    kind = ActionType(data["type"])
    if kind is ActionType.closure:
        raise ValidationFailed(fields={"type": [N_("Close the case with /close.")]})
    action = CaseAction(id=new_id(), referral_id=referral.id, actor_id=actor.id, type=kind, created_at=now)
    fields = []
    if data.get("note"):
        data_key = crypto.case_key(referral)
        if data_key is None:
            raise InvalidTransition(N_("This case has been erased."))
        action.note_sealed = seal_field(data_key, data["note"], case_id=referral.id, table="case_actions",
                                        column="note_sealed", row_id=action.id)
        fields.append("note")
    order = data.get("protection_order")
    if kind is ActionType.protection_order_issued:
        if not order:
            raise ValidationFailed(fields={"protection_order": [N_("Give issued_on and expires_on.")]})
        today = local_today(now)  # the officer's calendar, ahead of UTC's until 06:00 in Bishkek
        issued_on = order.get("issued_on") or today
        if issued_on > today:
            raise ValidationFailed(fields={"protection_order": {"issued_on": [N_("Cannot be in the future.")]}})
        if issued_on < _years_from(today, -ORDER_YEARS):
            raise ValidationFailed(fields={"protection_order": {"issued_on": [
                N_("At most five years ago: check the year.")]}})
        if order["expires_on"] <= issued_on:
            raise ValidationFailed(fields={"protection_order": {"expires_on": [N_("Must be after issued_on.")]}})
        if order["expires_on"] > _years_from(issued_on, ORDER_YEARS):
            raise ValidationFailed(fields={"protection_order": {"expires_on": [
                N_("At most five years after it was issued: check the year.")]}})
        session.add(ProtectionOrder(referral_id=referral.id, issued_on=issued_on,
                                    expires_on=order["expires_on"], recorded_by_id=actor.id, created_at=now))
    elif kind is ActionType.protection_order_extended:
        current = session.scalar(select(ProtectionOrder).where(ProtectionOrder.referral_id == referral.id)
                                 .order_by(ProtectionOrder.id.desc()).limit(1))
        if current is None:
            raise InvalidTransition(N_("There is no protection order to extend."))
        if not order or not order.get("expires_on") or order["expires_on"] <= current.expires_on:
            raise ValidationFailed(fields={"protection_order": {"expires_on": [N_("Must be later than the current expiry.")]}})
        if order["expires_on"] > _years_from(local_today(now), ORDER_YEARS):
            raise ValidationFailed(fields={"protection_order": {"expires_on": [
                N_("At most five years from now: check the year.")]}})
        current.expires_on, current.extensions = order["expires_on"], current.extensions + 1
    elif order:
        raise ValidationFailed(fields={"protection_order": [N_("Only for protection-order actions.")]})
    session.add(action)
    if referral.status is Status.accepted:
        referral.status = Status.in_progress
    session.flush()
    record(session, actor, "referral.action", object_type="referral", object_id=referral.id,
           reason=kind.value, fields=fields)
    return action


def close(session: Session, actor: User, referral_id: str, outcome: str, *,
          now: dt.datetime | None = None) -> Referral:
    now = now or utcnow()
    require(actor, Permission.REFERRAL_WORK)
    referral, level = _locked(session, actor, referral_id, "referral.close")  # the case first, as for a decline
    if outcome not in CLOSE_OUTCOMES:
        raise ValidationFailed(fields={"outcome": [Message(N_("Give one of: %(choices)s."),
                                                           choices=", ".join(CLOSE_OUTCOMES))]})
    if level is CaseView.OFFER:
        raise InvalidTransition(N_("Accept the case before closing it."))
    if not may_work(actor, referral, level):
        record(session, actor, "referral.close", object_type="referral", object_id=referral.id, outcome=DENIED,
               reason="not assigned to this user")
        raise NotFound(N_("No such referral."))
    if referral.status is not Status.in_progress:
        raise _transition_error(referral, P_("closed (it must be in progress)"))
    if referral.closure_requested_at is not None:
        raise InvalidTransition(N_("This closure is already waiting for the supervisor's approval."))
    missing = closure_checklist(session, referral)
    if missing:
        raise InvalidTransition(N_("Before closing, complete: %(steps)s."), params={"steps": ", ".join(missing)})
    if not closes_without_approval(actor, referral):
        referral.outcome, referral.closure_requested_at, referral.closure_requested_by_id = outcome, now, actor.id
        session.flush()
        record(session, actor, "referral.close_request", object_type="referral", object_id=referral.id,
               reason=outcome)
        return referral
    _finish_closure(session, actor, referral, outcome, now)
    record(session, actor, "referral.close", object_type="referral", object_id=referral.id, reason=outcome)
    return referral


def _finish_closure(session: Session, actor: User, referral: Referral, outcome: str, now: dt.datetime) -> None:
    referral.status, referral.closed_at, referral.outcome = Status.closed, now, outcome
    referral.closure_requested_at = referral.closure_requested_by_id = None
    session.add(CaseAction(referral_id=referral.id, actor_id=actor.id, type=ActionType.closure, created_at=now))
    session.flush()


def _drop_closure_request(referral: Referral) -> None:
    if referral.closure_requested_at is not None:
        referral.outcome = referral.closure_requested_at = referral.closure_requested_by_id = None


def decide_closure(session: Session, actor: User, referral_id: str, approve: bool, *,
                   now: dt.datetime | None = None) -> Referral:
    """The unit supervisor approves a requested closure (the checklist is checked again) or sends it back."""
    now = now or utcnow()
    require(actor, Permission.REFERRAL_REASSIGN)  # the supervisor's own powers over the unit's cases
    action = "referral.close_approve" if approve else "referral.close_reject"
    referral, level = _locked(session, actor, referral_id, action)
    if not supervises(actor, referral, level):
        record(session, actor, action, object_type="referral", object_id=referral.id, outcome=DENIED,
               reason="not this supervisor's unit")
        raise NotFound(N_("No such referral."))
    if referral.status is not Status.in_progress or referral.closure_requested_at is None:
        raise InvalidTransition(N_("No closure is waiting for approval on this case."))
    outcome = referral.outcome or "other"
    if approve:
        missing = closure_checklist(session, referral)
        if missing:
            raise InvalidTransition(N_("Before closing, complete: %(steps)s."), params={"steps": ", ".join(missing)})
        _finish_closure(session, actor, referral, outcome, now)
    else:
        _drop_closure_request(referral)
        session.flush()
    record(session, actor, action, object_type="referral", object_id=referral.id, reason=outcome)
    return referral


def closure_checklist(session: Session, referral: Referral) -> list[str]:
    """Steps the standard in force requires before closure that are not done yet.

    The closure step of the case's standard names them (e.g. risk assessment,
    rights information, safety plan).
    """
    from referral.standards.compliance import missing_before_closure
    from referral.standards.models import Standard
    from referral.standards.services import case_facts

    standard = session.get(Standard, referral.standard_id) if referral.standard_id else None
    if standard is None:
        return []
    return missing_before_closure(standard.body, case_facts(session, referral), utcnow())


def reassign(session: Session, actor: User, referral_id: str, officer_id: int, *,
             now: dt.datetime | None = None) -> Referral:
    """A supervisor offers the case to a chosen, eligible officer of the unit; earlier offers and assignment end."""
    now = now or utcnow()
    require(actor, Permission.REFERRAL_REASSIGN)
    referral, level = _locked(session, actor, referral_id, "referral.reassign")
    if not supervises(actor, referral, level):
        record(session, actor, "referral.reassign", object_type="referral", object_id=referral.id,
               outcome=DENIED, reason="not this supervisor's unit")
        raise NotFound(N_("No such referral."))
    if referral.status not in (Status.offered, Status.escalated, Status.accepted, Status.in_progress):
        raise _transition_error(referral, P_("reassigned"))
    target = session.get(User, officer_id)
    eligible = [] if referral.unit is None else routing.eligible_officers(session, referral, referral.unit,
                                                                          today=local_today(now))
    # Never back to an officer who declined, recused or let it lapse (conflicts of interest included).
    if target is None or target not in eligible or target.id in routing.already_tried(session, referral):
        raise ValidationFailed(fields={"officer_id": [N_("Not an eligible officer of this unit for this case.")]})
    _cancel_open_offers(session, referral, now, "reassigned")
    _unassign(session, referral, now)
    _drop_closure_request(referral)
    session.add(Offer(referral_id=referral.id, officer_id=target.id, offered_at=now,
                      deadline=routing.accept_deadline(referral, now)))
    referral.status = Status.offered
    session.flush()
    record(session, actor, "referral.reassign", object_type="referral", object_id=referral.id,
           reason=f"offered to officer {target.id}")
    events.offered(session, referral, [target])
    return referral


def _stop_police_work(session: Session, referral: Referral, now: dt.datetime, reason: str) -> None:
    """Offers end, a closure request is dropped, and the officers who held the case are told (by reference)."""
    told = [referral.assigned_officer_id] if referral.assigned_officer_id else []
    told += session.scalars(select(Offer.officer_id).where(Offer.referral_id == referral.id,
                                                           Offer.status == OfferStatus.open)).all()
    _cancel_open_offers(session, referral, now, reason)
    _drop_closure_request(referral)
    events.withdrawn(session, referral, told)


def withdraw(session: Session, actor: User, referral_id: str, *, now: dt.datetime | None = None) -> Referral:
    """The survivor asks to stop: work stops, offers end, the officer is told (notifications issue)."""
    now = now or utcnow()
    require(actor, Permission.REFERRAL_WITHDRAW)
    referral, level = _locked(session, actor, referral_id, "referral.withdraw")
    if not is_submitter(actor, referral):
        record(session, actor, "referral.withdraw", object_type="referral", object_id=referral.id,
               outcome=DENIED, reason="only the submitter withdraws a case")
        raise NotFound(N_("No such referral."))
    if referral.status in (Status.closed, Status.withdrawn):
        raise _transition_error(referral, P_("withdrawn"))
    _stop_police_work(session, referral, now, "withdrawn")
    referral.status, referral.closed_at = Status.withdrawn, now
    session.flush()
    record(session, actor, "referral.withdraw", object_type="referral", object_id=referral.id)
    return referral


# Stages in which the police hold or are about to hold the case; a closed case stays closed.
WITH_POLICE = (Status.submitted, Status.offered, Status.declined, Status.accepted, Status.in_progress,
               Status.escalated)


def leave_police(session: Session, actor: User, referral: Referral, now: dt.datetime) -> bool:
    """The survivor withdrew her consent to police (SPEC §4): an open case leaves the police at once.

    Offers end, the officers who held it are told (a reference only), and the case becomes
    ``services_only``, which no police role can see; the area's coordinating provider gets it as a
    submission without police consent would. What the officers recorded stays on the case, and the unit
    keeps it in its compliance figures up to now. The caller holds the case's row lock. Returns whether
    the case moved.
    """
    if referral.status not in WITH_POLICE:
        return False
    from referral.services_dir.services import coordinator_for, route_to_coordinator

    _stop_police_work(session, referral, now, "consent_withdrawn")
    # The unit keeps the case in its figures (what its officers did, and missed, while they held it);
    # the police's clocks stop now, as for a withdrawal. No police role sees a services-only case.
    _unassign(session, referral, now)
    referral.closed_at = now
    referral.status = Status.services_only
    coordinator = None if referral.coordinator_id else coordinator_for(session, referral.area)
    if coordinator is not None:
        referral.coordinator_id = coordinator.id
    session.flush()
    if coordinator is not None:
        route_to_coordinator(session, actor, referral, coordinator, now)
    record(session, actor, "referral.services_only", object_type="referral", object_id=referral.id,
           reason="police consent withdrawn" + (f"; coordinator {coordinator.code}" if coordinator else ""))
    return True


def sla_tick(session: Session, *, now: dt.datetime | None = None) -> dict[str, int]:
    """Expire offers past their deadline: each miss is a breach, the supervisor is alerted, the case re-offered.

    Safe to run twice at once: each case row is locked (``SKIP LOCKED`` on
    PostgreSQL) and its offers re-read under the lock, so a case is handled by
    one tick only and an accept that won the race is left alone.
    """
    now = now or utcnow()
    stats = {"breaches": 0, "reoffered": 0, "escalated": 0}
    due = session.scalars(select(Offer.referral_id).where(Offer.status == OfferStatus.open, Offer.deadline < now)
                          .distinct()).all()
    for referral_id in due:
        referral = session.scalar(select(Referral).where(Referral.id == referral_id)
                                  .with_for_update(skip_locked=True).execution_options(populate_existing=True))
        if referral is None or referral.status is not Status.offered:
            continue
        lapsed = session.scalars(select(Offer).where(Offer.referral_id == referral.id, Offer.status == OfferStatus.open,
                                                     Offer.deadline < now)
                                 .execution_options(populate_existing=True)).all()
        if not lapsed:
            continue
        for offer in lapsed:
            offer.status, offer.responded_at = OfferStatus.expired, now
            stats["breaches"] += 1
            record(session, None, "sla.breach", object_type="referral", object_id=referral.id,
                   reason=f"acceptance deadline missed by officer {offer.officer_id}")
        session.add(Alert(kind=AlertKind.acceptance_missed, referral_id=referral.id, unit_id=referral.unit_id,
                          created_at=now))
        events.breached(session, referral)
        referral.escalated_at = now
        session.flush()
        still_open = session.scalar(select(Offer.id).where(Offer.referral_id == referral.id,
                                                           Offer.status == OfferStatus.open).limit(1))
        if still_open is None:
            offers = routing.route(session, referral, now=now)
            stats["reoffered" if offers else "escalated"] += 1
        session.commit()  # one case at a time: locks are held briefly
    from referral.standards.services import tick_steps

    stats.update(tick_steps(session, now, between_batches=session.commit))
    session.commit()
    return stats
