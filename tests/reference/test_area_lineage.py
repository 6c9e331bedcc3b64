"""An area and its ancestors in one query (issue 10: the submission walks the lineage for routing and the
standard, and used to load each parent with a query of its own)."""
import datetime as dt

from sqlalchemy import event, update

from referral.extensions import db
from referral.reference.models import Area, AreaKind
from tests.factories import AreaFactory

TODAY = dt.date(2026, 11, 29)


class Statements:
    def __init__(self, engine):  # type: ignore[no-untyped-def]
        self.engine, self.seen = engine, []

    def __enter__(self):  # type: ignore[no-untyped-def]
        event.listen(self.engine, "before_cursor_execute", self._note)
        return self

    def __exit__(self, *exc):  # type: ignore[no-untyped-def]
        event.remove(self.engine, "before_cursor_execute", self._note)

    def _note(self, conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        self.seen.append(statement)


def _chain(depth: int) -> list[Area]:
    areas = [AreaFactory(kind=AreaKind.country)]
    for _ in range(depth - 1):
        areas.append(AreaFactory(parent=areas[-1]))
    db.session.flush()
    return areas


def test_lineage_comes_with_the_area_in_one_query(db_session):
    areas = _chain(4)
    AreaFactory(parent=areas[1])  # a sibling branch: not an ancestor
    db.session.flush()
    db.session.expunge_all()  # nothing left in the identity map to answer from
    with Statements(db.session.get_bind()) as sql:
        found = Area.by_code(db.session, areas[-1].code, with_ancestors=True)
        lineage = [a.code for a in found.lineage()]
    assert lineage == [a.code for a in reversed(areas)]
    assert len(sql.seen) == 1, sql.seen
    assert not db.session.dirty  # the parents are tied as loaded, not as a change to flush


def test_without_ancestors_and_unknown_codes(db_session):
    areas = _chain(2)
    db.session.expunge_all()
    assert Area.by_code(db.session, "NO-SUCH-AREA", with_ancestors=True) is None
    top = Area.by_code(db.session, areas[0].code, with_ancestors=True)
    assert top.lineage() == [top]
    assert Area.by_code(db.session, areas[1].code).code == areas[1].code


def test_a_parent_cycle_ends_the_walk(db_session):
    a, b = _chain(2)
    # The loader refuses cycles; a hand-edited database might still hold one.
    db.session.execute(update(Area).where(Area.id == a.id).values(parent_id=b.id))
    db.session.expunge_all()
    found = Area.by_code(db.session, b.code, with_ancestors=True)
    assert [x.code for x in found.lineage()] == [b.code, a.code]


def test_a_place_comes_with_its_lineage_and_covering_units_in_one_query(db_session):
    from referral.referrals.routing import covering_unit, place
    from tests.factories import UnitFactory

    country, region, district, village = _chain(4)
    regional = UnitFactory(areas=[region])
    second, first = UnitFactory(areas=[district]), UnitFactory(areas=[district])  # first: created last
    UnitFactory(areas=[village], active=False)  # an inactive unit covers nothing
    UnitFactory(areas=[AreaFactory(parent=region)])  # a sibling district's unit: not this place's
    db.session.flush()
    ids = {"regional": regional.id, "low": min(second.id, first.id), "high": max(second.id, first.id)}
    db.session.expunge_all()
    with Statements(db.session.get_bind()) as sql:
        where = place(db.session, village.code, on=TODAY)
        lineage = [a.code for a in where.area.lineage()]
        local = covering_unit(where)
        other = covering_unit(where, exclude=local.id)
        beyond = covering_unit(where, exclude=ids["high"])
    assert len(sql.seen) == 1, sql.seen
    assert lineage == [village.code, district.code, region.code, country.code]
    # The nearest area with an active unit, the lowest id first; excluding one leaves the next, at the same
    # place or further up.
    assert (local.id, other.id, beyond.id) == (ids["low"], ids["high"], ids["low"])
    assert where.cover[village.id] == [] and [u.id for u in where.cover[region.id]] == [ids["regional"]]
    assert not db.session.dirty
    where = place(db.session, region.code, on=TODAY)
    assert covering_unit(where).id == ids["regional"] and covering_unit(where, exclude=ids["regional"]) is None
    assert place(db.session, "NO-SUCH-AREA", on=TODAY) is None
