"""Areas, units and organisations: reference data loaded from YAML (SPEC §2, §10)."""
from __future__ import annotations

import enum
import functools
from typing import Any

from sqlalchemy import Boolean, Column, Enum, ForeignKey, String, Table, UniqueConstraint, bindparam, false, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship
from sqlalchemy.orm.attributes import set_committed_value

from referral.db import Base, code, intpk, name


class AreaKind(enum.StrEnum):
    country = "country"
    region = "region"
    district = "district"
    community = "community"


class RoutingMode(enum.StrEnum):
    direct = "direct"
    pool = "pool"


class OrganisationKind(enum.StrEnum):
    womens_group = "womens_group"
    provider = "provider"


class ServiceType(enum.StrEnum):
    shelter = "shelter"
    health = "health"
    legal = "legal"
    psychosocial = "psychosocial"
    economic = "economic"
    child_protection = "child_protection"


def enum_column(enum_cls: type[enum.Enum], name: str) -> Enum:
    # Stored as checked strings (not native PG enums): new values need only a
    # migration of the check constraint, and SQLite enforces them too.
    return Enum(enum_cls, name=name, native_enum=False, create_constraint=True, length=32,
                values_callable=lambda e: [m.value for m in e])


unit_areas = Table(
    "unit_areas",
    Base.metadata,
    Column("unit_id", ForeignKey("units.id", ondelete="CASCADE"), primary_key=True),
    Column("area_id", ForeignKey("areas.id", ondelete="RESTRICT"), primary_key=True),
)

organisation_areas = Table(
    "organisation_areas",
    Base.metadata,
    Column("organisation_id", ForeignKey("organisations.id", ondelete="CASCADE"), primary_key=True),
    Column("area_id", ForeignKey("areas.id", ondelete="RESTRICT"), primary_key=True),
)


class Area(Base):
    __tablename__ = "areas"

    id: Mapped[intpk]
    code: Mapped[code]
    name: Mapped[name]
    kind: Mapped[AreaKind] = mapped_column(enum_column(AreaKind, "area_kind"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id", ondelete="RESTRICT"), index=True)

    parent: Mapped[Area | None] = relationship(remote_side="Area.id", back_populates="children")
    children: Mapped[list[Area]] = relationship(back_populates="parent")

    def lineage(self) -> list[Area]:
        """This area and its ancestors, nearest first (for routing and directories)."""
        chain: list[Area] = []
        node: Area | None = self
        while node is not None and node not in chain:
            chain.append(node)
            node = node.parent
        return chain

    @staticmethod
    def by_code(session: Session, area_code: str, *, with_ancestors: bool = False) -> Area | None:
        """The area with this code; ``with_ancestors``: its ancestors too, in the same query, so that
        ``lineage()`` then walks parents already in the session (a many-to-one by primary key is answered
        from the identity map) instead of loading them one at a time."""
        if not with_ancestors:
            return session.scalar(select(Area).where(Area.code == area_code))
        return Area.linked(session.scalars(_with_ancestors(), {"code": area_code}), area_code)

    @staticmethod
    def linked(areas: Any, area_code: str) -> Area | None:
        """The area ``area_code`` of ``areas`` (it and its ancestors, as ``ancestry()`` finds them), each tied
        to its parent as loaded (no change to flush): the chain keeps the ancestors alive in the session's
        weak identity map and lineage() reads them without a query."""
        found = {area.id: area for area in areas}
        for area in found.values():
            if area.parent_id in found:
                set_committed_value(area, "parent", found[area.parent_id])
        return next((area for area in found.values() if area.code == area_code), None)


@functools.cache
def ancestry() -> Any:
    """The ids of the area with the code ``:code`` and of its ancestors, a recursive CTE (built once: building
    it costs more than running it).

    UNION, not UNION ALL: a parent cycle (refused by the loader, but a database can be edited by hand) ends
    the recursion instead of running forever; lineage() stops at the repeat as before."""
    tree = select(Area.id, Area.parent_id).where(Area.code == bindparam("code")).cte("tree", recursive=True)
    return tree.union(select(Area.id, Area.parent_id).join(tree, Area.id == tree.c.parent_id))


@functools.cache
def _with_ancestors() -> Any:
    """The area with the code ``:code`` and its ancestors."""
    tree = ancestry()
    return select(Area).join(tree, Area.id == tree.c.id)


class Unit(Base):
    __tablename__ = "units"

    id: Mapped[intpk]
    code: Mapped[code]
    name: Mapped[name]
    routing_mode: Mapped[RoutingMode] = mapped_column(
        enum_column(RoutingMode, "routing_mode"), default=RoutingMode.direct
    )
    # Closures by officers wait for the unit supervisor's approval (SPEC §3.7).
    closure_approval: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    areas: Mapped[list[Area]] = relationship(secondary=unit_areas, order_by="Area.code")


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[intpk]
    code: Mapped[code]
    name: Mapped[name]
    kind: Mapped[OrganisationKind] = mapped_column(enum_column(OrganisationKind, "organisation_kind"))
    coordinator: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    areas: Mapped[list[Area]] = relationship(secondary=organisation_areas, order_by="Area.code")
    services: Mapped[list[OrganisationService]] = relationship(
        back_populates="organisation", cascade="all, delete-orphan", order_by="OrganisationService.service_type"
    )

    @property
    def service_types(self) -> list[ServiceType]:
        return [s.service_type for s in self.services]


class OrganisationService(Base):
    __tablename__ = "organisation_services"
    __table_args__ = (UniqueConstraint("organisation_id", "service_type", name="organisation_service"),)

    id: Mapped[intpk]
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    service_type: Mapped[ServiceType] = mapped_column(enum_column(ServiceType, "service_type"))

    organisation: Mapped[Organisation] = relationship(back_populates="services")


__all__ = ["Area", "AreaKind", "Unit", "RoutingMode", "Organisation", "OrganisationKind",
           "OrganisationService", "ServiceType", "unit_areas", "organisation_areas", "String", "enum_column"]
