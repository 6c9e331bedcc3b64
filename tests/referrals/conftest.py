import pytest

from referral.accounts.models import Role
from tests.factories import AreaFactory, OrganisationFactory, UnitFactory


@pytest.fixture()
def place(db_session):
    """A district covered by a unit, a village inside it, a women's group there."""
    district = AreaFactory()
    village = AreaFactory(parent=district, kind="community")
    unit = UnitFactory(areas=[district])
    group = OrganisationFactory(areas=[district])
    return {"district": district, "village": village, "unit": unit, "group": group}


@pytest.fixture()
def people(place, login_as):
    focal, focal_h = login_as(Role.focal_point, organisation=place["group"])
    supervisor, sup_h = login_as(Role.supervisor, unit=place["unit"])
    return {"focal": (focal, focal_h), "supervisor": (supervisor, sup_h)}
