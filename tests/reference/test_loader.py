"""`reference load`: the YAML format of SPEC §10, idempotent, updates by code."""
import json

import pytest
from sqlalchemy import func, select

from config.settings import PROJECT_ROOT
from referral.extensions import db
from referral.reference.models import Area, Organisation, RoutingMode, ServiceType, Unit
from referral.standards.models import Course, CourseRequirement

DEMO = PROJECT_ROOT / "config" / "reference" / "demo.yaml"


def counts():
    return tuple(db.session.scalar(select(func.count()).select_from(m)) for m in (Area, Unit, Organisation, Course))


def load(runner, path):
    return runner.invoke(args=["reference", "load", str(path)])


def test_demo_reference_loads_kyrgyz_and_tajik_places(runner):
    result = load(runner, DEMO)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["areas_created"] == 21
    village = Area.by_code(db.session, "KG-C-ALM-1")
    assert [a.code for a in village.lineage()] == ["KG-C-ALM-1", "KG-C-ALM", "KG-C", "KG"]
    jamoat = Area.by_code(db.session, "TJ-RRS-RUD-1")
    assert jamoat.lineage()[-1].code == "TJ"
    sokuluk = db.session.scalar(select(Unit).where(Unit.code == "U-SOK"))
    assert sokuluk.routing_mode is RoutingMode.pool and [a.code for a in sokuluk.areas] == ["KG-C-SOK"]
    shelter = db.session.scalar(select(Organisation).where(Organisation.code == "SH-1"))
    assert shelter.coordinator and shelter.service_types == [ServiceType.psychosocial, ServiceType.shelter]
    child = db.session.scalar(select(Course).where(Course.code == "GBV-CHILD"))
    assert child.required_for is CourseRequirement.child and child.validity_months == 24


def test_loading_twice_changes_nothing(runner):
    assert load(runner, DEMO).exit_code == 0
    before = counts()
    again = load(runner, DEMO)
    assert again.exit_code == 0
    assert json.loads(again.output) == {"loaded": str(DEMO), "changes": 0}
    assert counts() == before


def test_a_changed_name_and_setting_update_in_place(runner, tmp_path):
    assert load(runner, DEMO).exit_code == 0
    text = DEMO.read_text("utf-8")
    text = text.replace("name: Alamudun district police, areas: [KG-C-ALM], routing: direct",
                        "name: Alamudun district police department, areas: [KG-C-ALM], routing: pool")
    text = text.replace("name: Baitik ayil okmotu", "name: Baytik ayil okmotu")
    text = text.replace("services: [health], areas: [KG-C-ALM]}", "services: [health, psychosocial], areas: [KG-C-ALM]}")
    changed = tmp_path / "changed.yaml"
    changed.write_text(text, "utf-8")
    before = counts()
    result = load(runner, changed)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"loaded": str(changed), "areas_updated": 1, "units_updated": 1,
                                         "organisations_updated": 1}
    assert counts() == before
    unit = db.session.scalar(select(Unit).where(Unit.code == "U-ALM"))
    assert unit.name == "Alamudun district police department" and unit.routing_mode is RoutingMode.pool
    clinic = db.session.scalar(select(Organisation).where(Organisation.code == "HC-ALM"))
    assert clinic.service_types == [ServiceType.health, ServiceType.psychosocial]


def test_parents_may_come_after_children(runner, tmp_path):
    path = tmp_path / "order.yaml"
    path.write_text("areas:\n  - {code: ZZ-1, name: Village, kind: community, parent: ZZ}\n"
                    "  - {code: ZZ, name: Land, kind: country}\n", "utf-8")
    assert load(runner, path).exit_code == 0
    assert Area.by_code(db.session, "ZZ-1").parent.code == "ZZ"


@pytest.mark.parametrize("content, message", [
    ("areas: [{code: X1, name: A, kind: planet}]", "kind"),
    ("areas: [{code: X1, name: A, kind: country, parent: NOPE}]", "Unknown parent"),
    ("units: [{code: U-X, name: U, areas: [NOWHERE]}]", "unknown areas"),
    ("units: [{code: U-X, name: U, areas: [KG], routing: random}]", "routing"),
    ("organisations: [{code: O-X, name: O, kind: provider, areas: [KG], services: [spa]}]", "services"),
    ("colours: []", "colours"),
    ("areas: [{code: lower, name: A, kind: country}]", "code"),
    ("- just\n- a list", "mapping"),
    ("areas: [unclosed", "not valid YAML"),
])
def test_bad_files_are_refused_with_a_clear_message_and_change_nothing(runner, tmp_path, content, message):
    assert load(runner, DEMO).exit_code == 0
    before = counts()
    path = tmp_path / "bad.yaml"
    path.write_text(content, "utf-8")
    result = load(runner, path)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
    assert counts() == before


def test_missing_file_is_a_clear_error(runner, tmp_path):
    result = load(runner, tmp_path / "absent.yaml")
    assert result.exit_code != 0
    assert "Traceback" not in result.output


def test_a_reference_file_may_carry_handling_standards(runner, tmp_path):
    """SPEC §11: `reference load` loads standards too, each entry a whole standard document; a version, once
    loaded, never changes, and a broken entry is refused with its place and field, loading nothing."""
    import yaml

    from referral.standards.models import Standard

    standard = yaml.safe_load((PROJECT_ROOT / "config" / "standards" / "default-v2.yaml").read_text("utf-8"))
    standard.update(code="TEST", countries=["TJ"])
    path = tmp_path / "with-standard.yaml"
    path.write_text(yaml.safe_dump({"areas": [{"code": "TJ", "name": "Tajikistan", "kind": "country"}],
                                    "standards": [standard]}), "utf-8")
    first = load(runner, path)
    assert first.exit_code == 0, first.output
    assert json.loads(first.output) == {"loaded": str(path), "areas_created": 1, "standards_created": 1}
    stored = db.session.scalar(select(Standard).where(Standard.code == "TEST"))
    assert (stored.version, stored.countries) == (2, "TJ")
    assert json.loads(load(runner, path).output) == {"loaded": str(path), "changes": 0}
    standard["settings"]["accept_hours"] = 12  # the same version, other content
    path.write_text(yaml.safe_dump({"standards": [standard]}), "utf-8")
    changed = load(runner, path)
    assert changed.exit_code == 1 and "new version" in changed.output
    broken = dict(standard, version=3, steps=[{"code": "x", "name": "X", "event": "never", "deadline_hours": 1,
                                                 "satisfied_by": ["note"]}])
    path.write_text(yaml.safe_dump({"areas": [{"code": "UZ", "name": "Uzbekistan", "kind": "country"}],
                                    "standards": [standard, broken]}), "utf-8")
    refused = load(runner, path)
    assert refused.exit_code == 1 and "#2" in refused.output and "event" in refused.output
    assert Area.by_code(db.session, "UZ") is None
