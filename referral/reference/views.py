"""API: the reference data as admins see it (areas, units, organisations), read-only.

Items use the keys of the reference YAML (SPEC §10), so a listing reads like the file that loaded it.
"""
from __future__ import annotations

from typing import Any

from referral.api import api, paged_listing
from referral.reference import services
from referral.reference.models import Area, Organisation, Unit
from referral.security.permissions import Permission, requires


def area_out(area: Area, depth: int) -> dict[str, Any]:
    return {"code": area.code, "name": area.name, "kind": area.kind.value,
            "parent": area.parent.code if area.parent else None, "depth": depth}


def unit_out(unit: Unit) -> dict[str, Any]:
    return {"code": unit.code, "name": unit.name, "areas": [a.code for a in unit.areas],
            "routing": unit.routing_mode.value, "closure_approval": unit.closure_approval, "active": unit.active}


def organisation_out(org: Organisation) -> dict[str, Any]:
    return {"code": org.code, "name": org.name, "kind": org.kind.value,
            "services": [s.value for s in org.service_types], "areas": [a.code for a in org.areas],
            "coordinator": org.coordinator, "active": org.active}


@api.get("/admin/areas")
@requires(Permission.ADMIN_REFERENCE_MANAGE)
def admin_list_areas():  # type: ignore[no-untyped-def]
    """The area tree, depth first: parents before their children, siblings by code."""
    return paged_listing(services.list_areas, lambda pair: area_out(*pair))


@api.get("/admin/units")
@requires(Permission.ADMIN_REFERENCE_MANAGE)
def admin_list_units():  # type: ignore[no-untyped-def]
    return paged_listing(services.list_units, unit_out)


@api.get("/admin/organisations")
@requires(Permission.ADMIN_REFERENCE_MANAGE)
def admin_list_organisations():  # type: ignore[no-untyped-def]
    return paged_listing(services.list_organisations, organisation_out)
