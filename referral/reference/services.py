"""Reference data for admins: list the area tree, units and organisations; set a unit's routing mode.

Every function takes the acting admin, checks the permission first, writes its
audit event and flushes; the request that called it commits.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import joinedload, selectinload

from referral.accounts.models import User
from referral.audit.service import DENIED, record
from referral.errors import N_, Message, NotFound, ValidationFailed
from referral.reference.models import Area, Organisation, RoutingMode, Unit
from referral.security.permissions import Permission, require


def _tree_order(session: Any) -> list[tuple[int, int]]:
    """Every area id with its depth, parents before children, siblings by code (depth first)."""
    children: dict[int | None, list[tuple[str, int]]] = defaultdict(list)
    for area_id, parent_id, code in session.execute(select(Area.id, Area.parent_id, Area.code)):
        children[parent_id].append((code, area_id))
    order: list[tuple[int, int]] = []
    seen: set[int] = set()
    stack = [(area_id, 0) for _code, area_id in sorted(children[None], reverse=True)]
    while stack:
        area_id, depth = stack.pop()
        if area_id in seen:
            continue
        seen.add(area_id)
        order.append((area_id, depth))
        stack.extend((child, depth + 1) for _code, child in sorted(children[area_id], reverse=True))
    # The loader never makes a cycle; should the table hold one anyway, its areas are still listed.
    leftovers = sorted((code, area_id) for kids in children.values() for code, area_id in kids if area_id not in seen)
    order.extend((area_id, 0) for _code, area_id in leftovers)
    return order


def list_areas(session: Any, actor: User, *, page: int, per_page: int) -> tuple[list[tuple[Area, int]], int]:
    """The area tree as (area, depth) pairs in depth-first order, one page of it."""
    require(actor, Permission.ADMIN_REFERENCE_MANAGE)
    order = _tree_order(session)
    window = order[(page - 1) * per_page:page * per_page]
    rows = {a.id: a for a in session.scalars(
        select(Area).options(joinedload(Area.parent)).where(Area.id.in_([i for i, _d in window])))}
    record(session, actor, "area.list", object_type="area")
    return [(rows[i], depth) for i, depth in window if i in rows], len(order)


def _page(session: Any, model: Any, options: list[Any], *, page: int, per_page: int) -> tuple[list[Any], int]:
    total = session.scalar(select(func.count()).select_from(model)) or 0
    items = session.scalars(select(model).options(*options).order_by(model.code)
                            .limit(per_page).offset((page - 1) * per_page)).all()
    return list(items), total


def list_units(session: Any, actor: User, *, page: int, per_page: int) -> tuple[list[Unit], int]:
    require(actor, Permission.ADMIN_REFERENCE_MANAGE)
    found = _page(session, Unit, [selectinload(Unit.areas)], page=page, per_page=per_page)
    record(session, actor, "unit.list", object_type="unit")
    return found


def list_organisations(session: Any, actor: User, *, page: int, per_page: int) -> tuple[list[Organisation], int]:
    require(actor, Permission.ADMIN_REFERENCE_MANAGE)
    found = _page(session, Organisation, [selectinload(Organisation.areas), selectinload(Organisation.services)],
                  page=page, per_page=per_page)
    record(session, actor, "organisation.list", object_type="organisation")
    return found


def set_routing_mode(session: Any, actor: User, unit_code: str, mode: str) -> Unit:
    """Change how a unit's new referrals are offered: ``direct`` (the least-loaded eligible officer)
    or ``pool`` (every eligible officer at once). Offers already made are left as they are."""
    require(actor, Permission.ADMIN_REFERENCE_MANAGE)
    try:
        wanted = RoutingMode(mode)
    except ValueError:
        raise ValidationFailed(fields={"routing": [Message(N_("Must be one of: %(choices)s."),
                                                           choices=", ".join(m.value for m in RoutingMode))]}) \
            from None
    # A code never holds a NUL (PostgreSQL could not even compare one): such a code is simply unknown.
    unit = None if "\x00" in unit_code else session.scalar(select(Unit).where(Unit.code == unit_code))
    if unit is None:
        # Not echoed into the log: what was typed in place of a code could be anything.
        record(session, actor, "unit.routing", object_type="unit", object_id="unknown", outcome=DENIED,
               reason="no unit has this code")
        raise NotFound(N_("No unit has this code."))
    before = unit.routing_mode
    unit.routing_mode = wanted
    session.flush()
    change = f"{before.value} -> {wanted.value}" if before is not wanted else f"{wanted.value} (unchanged)"
    record(session, actor, "unit.routing", object_type="unit", object_id=unit.code, reason=f"routing {change}")
    return unit
