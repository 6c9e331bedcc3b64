"""Judging a case against its standard, step by step (SPEC §5).

``evaluate`` is a pure function of the case's facts (times, flags, actions) and
the standard's body, so every status can be tested with a table of scenarios.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

MET, MET_LATE, BREACHED, PENDING, NOT_APPLICABLE = "met", "met_late", "breached", "pending", "not_applicable"
CHILD_AGE_GROUPS = frozenset({"0-5", "6-11", "12-14", "15-17"})


@dataclass(frozen=True)
class CaseFacts:
    submitted_at: dt.datetime
    offered_at: dt.datetime | None
    accepted_at: dt.datetime | None
    incident_date: dt.date | None
    closed_at: dt.datetime | None   # closed or withdrawn: when work on the case ended
    flags: tuple[str, ...]
    gbv_type: str
    relationship: str | None
    age_group: str
    urgent: bool
    actions: tuple[tuple[str, dt.datetime], ...]  # (type, when), in time order
    withdrawn: bool = False
    # Service referrals sent to a provider, as ("service_referral:<service type>", when), in time order. They
    # satisfy a step that names them; they are not officers' actions, so ordering rules (first_action) and
    # the closure checklist's "done at all" ignore them.
    services: tuple[tuple[str, dt.datetime], ...] = ()
    # Who held the case when: (officer id, from, until or None while they hold it), in time order. Not judged:
    # only whom a step counts against in per-officer figures (``counted_against``).
    holds: tuple[tuple[int, dt.datetime, dt.datetime | None], ...] = ()


@dataclass(frozen=True)
class StepResult:
    code: str
    name: str
    status: str
    due_at: dt.datetime | None = None
    done_at: dt.datetime | None = None
    # When a step was decided: when it was done, or when the first action broke an ordering rule.
    decided_at: dt.datetime | None = None

    def __post_init__(self) -> None:
        if self.decided_at is None and self.done_at is not None:
            object.__setattr__(self, "decided_at", self.done_at)

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.code, "name": self.name, "status": self.status,
                "due_at": self.due_at.isoformat() if self.due_at else None,
                "done_at": self.done_at.isoformat() if self.done_at else None}


def _applies(when: dict[str, Any], facts: CaseFacts) -> bool:
    if when.get("flags") and not set(when["flags"]) & set(facts.flags):
        return False
    if when.get("gbv_types") and facts.gbv_type not in when["gbv_types"]:
        return False
    if when.get("relationship") and facts.relationship not in when["relationship"]:
        return False
    if when.get("child") is not None and (facts.age_group in CHILD_AGE_GROUPS) != when["child"]:
        return False
    return True


def _event_time(event: str, facts: CaseFacts) -> dt.datetime | None:
    if event == "incident":
        if facts.incident_date is None:
            return facts.submitted_at
        # The latest the incident can have happened: the end of its day.
        return dt.datetime.combine(facts.incident_date + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)
    return {"submitted": facts.submitted_at, "offered": facts.offered_at, "accepted": facts.accepted_at}[event]


def _hours(step: dict[str, Any], settings: dict[str, float], urgent: bool) -> float:
    if urgent and step.get("urgent_deadline"):
        return settings[step["urgent_deadline"]]
    if step.get("deadline"):
        return settings[step["deadline"]]
    return float(step["deadline_hours"])


def _done_times(step: dict[str, Any], facts: CaseFacts) -> list[dt.datetime]:
    wanted = set(step["satisfied_by"])
    times = [when for kind, when in (*facts.actions, *facts.services) if kind in wanted]
    if "accepted" in wanted and facts.accepted_at is not None:
        times.append(facts.accepted_at)
    return sorted(times)


def _deadline_step(step: dict[str, Any], settings: dict[str, float], facts: CaseFacts, now: dt.datetime) -> StepResult:
    start = _event_time(step["event"], facts)
    if start is None:
        return StepResult(step["code"], step["name"], PENDING)
    due = start + dt.timedelta(hours=_hours(step, settings, facts.urgent))
    opens = start + dt.timedelta(hours=step["window_start_hours"]) if step.get("window_start_hours") else None
    done = [t for t in _done_times(step, facts) if opens is None or t >= opens]
    if done:
        return StepResult(step["code"], step["name"], MET if done[0] <= due else MET_LATE, due, done[0])
    # A case that ended before the step fell due no longer owes it.
    if facts.closed_at is not None and due > facts.closed_at:
        return StepResult(step["code"], step["name"], NOT_APPLICABLE, due)
    if now > due:
        return StepResult(step["code"], step["name"], BREACHED, due)
    if facts.closed_at is not None:
        return StepResult(step["code"], step["name"], NOT_APPLICABLE, due)
    return StepResult(step["code"], step["name"], PENDING, due)


def _first_action_step(step: dict[str, Any], facts: CaseFacts) -> StepResult:
    ignored = set(step.get("ignore") or [])
    relevant = [(kind, when) for kind, when in facts.actions if kind not in ignored]
    if not relevant:
        return StepResult(step["code"], step["name"], NOT_APPLICABLE if facts.closed_at else PENDING)
    kind, when = relevant[0]
    if kind in step["satisfied_by"]:
        return StepResult(step["code"], step["name"], MET, None, when)
    return StepResult(step["code"], step["name"], BREACHED, None, None, decided_at=when)


def evaluate(body: str | dict[str, Any], facts: CaseFacts, now: dt.datetime) -> list[StepResult]:
    doc = json.loads(body) if isinstance(body, str) else body
    settings = doc.get("settings", {})
    results: dict[str, StepResult] = {}
    for step in doc["steps"]:
        if not _applies(step.get("when") or {}, facts):
            results[step["code"]] = StepResult(step["code"], step["name"], NOT_APPLICABLE)
        elif step.get("rule") == "first_action":
            results[step["code"]] = _first_action_step(step, facts)
        elif step.get("rule") == "closure":
            results[step["code"]] = _closure_step(doc, step, facts, results)
        else:
            results[step["code"]] = _deadline_step(step, settings, facts, now)
    return list(results.values())


def _done(step: dict[str, Any], result: StepResult, facts: CaseFacts) -> bool:
    """Done for the closure checklist: met (even late), not applicable, or — for an
    ordering rule that was broken — done at all (the order is scored separately)."""
    if result.status in (MET, MET_LATE, NOT_APPLICABLE):
        return True
    if step.get("rule") == "first_action":
        return any(kind in step["satisfied_by"] for kind, _ in facts.actions)
    return False


def _missing(doc: dict[str, Any], requires: list[str], facts: CaseFacts, earlier: dict[str, StepResult]) -> list[str]:
    steps = {s["code"]: s for s in doc["steps"]}
    return [c for c in requires if c in earlier and not _done(steps[c], earlier[c], facts)]


def _closure_step(doc: dict[str, Any], step: dict[str, Any], facts: CaseFacts,
                  earlier: dict[str, StepResult]) -> StepResult:
    if facts.withdrawn:
        return StepResult(step["code"], step["name"], NOT_APPLICABLE)
    if facts.closed_at is None:
        return StepResult(step["code"], step["name"], PENDING)
    status = BREACHED if _missing(doc, step["requires"], facts, earlier) else MET
    return StepResult(step["code"], step["name"], status, None, facts.closed_at)


@dataclass(frozen=True)
class StepTimeline:
    """A step's status at every moment: ``status`` until ``breaches_at`` passes, ``breached`` after.

    ``breaches_at`` is None when the status no longer depends on time (only new facts change it).
    """
    code: str
    status: str
    due_at: dt.datetime | None
    breaches_at: dt.datetime | None
    # When it was done or decided (an ordering rule broken), if it was: with ``due_at``, whom it counts
    # against (``counted_against``).
    decided_at: dt.datetime | None = None

    def status_at(self, now: dt.datetime) -> str:
        return BREACHED if self.breaches_at is not None and now > self.breaches_at else self.status


_BEFORE_ANY_DEADLINE = dt.datetime.min.replace(tzinfo=dt.UTC)
_AFTER_EVERY_DEADLINE = dt.datetime.max.replace(tzinfo=dt.UTC)
_TICK = dt.timedelta(microseconds=1)  # datetimes have microsecond resolution: due + 1 µs is "past due"


def timeline(body: str | dict[str, Any], facts: CaseFacts) -> list[StepTimeline]:
    """``evaluate`` for every ``now`` at once, so a stored judgement never needs refreshing as time passes.

    Time enters ``evaluate`` only as ``now > due`` of deadline steps, so a status can change only at a
    due time, and only towards ``breached`` (an open deadline falls due; a closure checklist loses a step
    that was excused until it fell due). Judging before every deadline and after all of them shows which
    steps change; a deadline step changes at its own due time, any other step at the first due time past
    which it is breached.
    """
    doc = json.loads(body) if isinstance(body, str) else body
    early = evaluate(doc, facts, _BEFORE_ANY_DEADLINE)
    late = {r.code: r for r in evaluate(doc, facts, _AFTER_EVERY_DEADLINE)}
    dues = sorted({r.due_at for r in early if r.due_at is not None and r.status != late[r.code].status})
    out: list[StepTimeline] = []
    for result in early:
        after = late[result.code].status
        decided = result.decided_at
        if after == result.status:
            out.append(StepTimeline(result.code, result.status, result.due_at, None, decided))
            continue
        if after != BREACHED:
            raise ValueError(f"step {result.code}: {result.status} turns {after} with time")
        if result.due_at is not None:
            changes: dt.datetime | None = result.due_at
        else:
            changes = next((d for d in dues if _status(doc, facts, d + _TICK, result.code) == BREACHED), None)
            if changes is None:
                raise ValueError(f"step {result.code}: breached with time, but at no due time")
        out.append(StepTimeline(result.code, result.status, result.due_at, changes, decided))
    return out


def holder_at(holds: tuple[tuple[int, dt.datetime, dt.datetime | None], ...], at: dt.datetime) -> int | None:
    """The officer who held the case at ``at`` (from their acceptance until they no longer did), or None."""
    for officer, start, until in holds:
        if start <= at and (until is None or at < until):
            return officer
    return None


def counted_against(step: StepTimeline | StepResult, facts: CaseFacts, current: int | None) -> int | None:
    """The officer a step counts against: whoever held the case when it was met (done in time); for any
    other step, whoever held it when it fell due (a late step was let go late by them, whoever did it in
    the end), or, with no due time, when it was decided; a step with neither time, whoever holds the case
    now (``current``). A step that fell due while nobody held the case (on offer, or between a recusal and
    the next acceptance) counts against no officer, only the unit; one that falls due later counts against
    whoever holds the case now, and the case is judged again whenever it changes hands. No time here
    depends on when it is asked."""
    at = step.decided_at if step.status == MET else (step.due_at or step.decided_at)
    return current if at is None else holder_at(facts.holds, at)


def _status(doc: dict[str, Any], facts: CaseFacts, now: dt.datetime, code: str) -> str:
    return next(r.status for r in evaluate(doc, facts, now) if r.code == code)


def missing_before_closure(body: str | dict[str, Any], facts: CaseFacts, now: dt.datetime) -> list[str]:
    """Steps the closure checklist requires that are not done yet."""
    doc = json.loads(body) if isinstance(body, str) else body
    results = {r.code: r for r in evaluate(doc, facts, now)}
    missing: list[str] = []
    for step in doc["steps"]:
        if step.get("rule") == "closure":
            missing += _missing(doc, step["requires"], facts, results)
    return missing


def step_hours(body: str | dict[str, Any], code: str, urgent: bool) -> float | None:
    doc = json.loads(body) if isinstance(body, str) else body
    for step in doc["steps"]:
        if step["code"] == code and step.get("rule", "deadline") == "deadline":
            return _hours(step, doc.get("settings", {}), urgent)
    return None
