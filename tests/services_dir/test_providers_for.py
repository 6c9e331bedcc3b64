"""providers_for: the providers covering an area or an ancestor, nearest first and by code within an area,
each once (where it is nearest), in one query for the whole lineage."""
from __future__ import annotations

from sqlalchemy import event

from referral.extensions import db
from referral.reference.models import OrganisationKind
from referral.services_dir.services import providers_for
from tests.factories import OrganisationFactory


def test_nearest_first_then_by_code_each_once_in_one_query(place):
    district, village = place["district"], place["village"]

    def provider(code, areas, services=("health",), **kw):  # type: ignore[no-untyped-def]
        return OrganisationFactory(code=code, kind=OrganisationKind.provider, areas=areas,
                                   service_types=list(services), **kw)

    far = provider("T-0-FAR", [district])  # first by code, last by nearness
    both = provider("T-Z-BOTH", [district, village])  # nearest in the village, though last by code there
    near = provider("T-A-NEAR", [village], services=("shelter",))
    provider("T-B-SHUT", [village], active=False)
    OrganisationFactory(code="T-A-GROUP", areas=[village])  # a women's group, not a provider
    db.session.flush()
    db.session.expire_all()
    seen: list[str] = []
    note = lambda *a: seen.append(a[2])  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", note)
    try:
        everyone = providers_for(db.session, village, None)
    finally:
        event.remove(db.engine, "before_cursor_execute", note)
    assert [o.code for o in everyone] == [near.code, both.code, far.code]
    assert len([s for s in seen if "organisations" in s]) == 1, seen
    assert [o.code for o in providers_for(db.session, village, "health")] == [both.code, far.code]
    assert [o.code for o in providers_for(db.session, district, None)] == [far.code, both.code]  # one area: by code
