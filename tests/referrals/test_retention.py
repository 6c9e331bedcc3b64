"""Retention and erasure (issue 11 item 5): crypto-erasure past retention and on the survivor's request,
month keys destroyed when their month is over, statistics kept, the audit chain intact."""
import datetime as dt
import json

import pytest
from sqlalchemy import func, select

from referral.audit.models import AuditEvent
from referral.audit.service import verify
from referral.extensions import db
from referral.oversight.statistics import deidentified
from referral.referrals import retention
from referral.referrals.models import SEALED_FIELDS, CaseNote, Referral, Status
from referral.security.keyring import KeyringError, keyring_for
from tests.referrals.helpers import canaries, submission

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)

# Retention adds month keys and rotation a new KEK to the keyring file: each test gets its own copy.
pytestmark = pytest.mark.usefixtures("isolated_keyring")


def submit(client, headers, place, values=None):
    resp = client.post("/api/v1/referrals", json=submission(place["district"].code, values), headers=headers)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["id"]


def end(case_id, when, status=Status.closed):
    row = db.session.get(Referral, case_id)
    row.status, row.closed_at = status, when
    db.session.commit()
    return row


def events(action, object_id=None):
    query = select(AuditEvent).where(AuditEvent.action == action)
    if object_id is not None:
        query = query.where(AuditEvent.object_id == str(object_id))
    return db.session.scalars(query).all()


def assert_erased(case_id):
    row = db.session.get(Referral, case_id)
    db.session.refresh(row)
    assert row.erased_at is not None and row.data_key_wrapped is None and row.kek_version is None
    assert all(getattr(row, column) is None for column in SEALED_FIELDS.values())
    assert row.survivor_phone_bidx is None and row.perpetrator_bidx is None
    assert all(n.body_sealed is None for n in db.session.scalars(select(CaseNote).where(CaseNote.referral_id == case_id)))
    return row


def test_apply_erases_past_retention_rewraps_ended_cases_and_leaves_open_ones(app, client, place, people):
    focal_h = people["focal"][1]
    days = app.config["RETENTION_DAYS"]
    old, recent, still_open = (submit(client, focal_h, place) for _ in range(3))
    end(old, NOW - dt.timedelta(days=days + 1))
    end(recent, NOW - dt.timedelta(days=3), Status.withdrawn)
    open_key = bytes(db.session.get(Referral, still_open).data_key_wrapped)

    result = retention.apply(db.session, now=NOW)

    assert result["erased_retention"] == 1 and result["rewrapped"] == 1 and result["keys_destroyed"] == []
    row = assert_erased(old)
    assert row.status is Status.closed and row.gbv_type == "physical_assault"  # de-identified fields stay
    assert events("referral.crypto_erase", old)[0].reason == f"retention of {days} days ended"
    keys = keyring_for(app)
    moved = db.session.get(Referral, recent)
    period = retention.period_of(moved.closed_at + dt.timedelta(days=days))
    assert keys.retention_versions[moved.kek_version] == period
    # still readable through the ordinary path, now under the month key
    body = client.get(f"/api/v1/referrals/{recent}", headers=people["focal"][1])
    assert body.status_code == 200
    assert bytes(db.session.get(Referral, still_open).data_key_wrapped) == open_key
    assert verify(db.session).ok
    # idempotent: a second run finds nothing to do
    again = retention.apply(db.session, now=NOW)
    assert (again["erased_retention"], again["rewrapped"], again["erased_requested"]) == (0, 0, 0)


def test_erased_cases_still_count_in_the_deidentified_statistics(app, client, place, people):
    focal_h = people["focal"][1]
    from tests.referrals.helpers import month_after

    cases = [submit(client, focal_h, place) for _ in range(6)]
    counted_at = month_after()  # their month has ended: they are counted
    before = deidentified(db.session, since=None, until=None, now=counted_at)
    assert before["cases"] == 6
    for case_id in cases:
        end(case_id, NOW - dt.timedelta(days=app.config["RETENTION_DAYS"] + 30))
    assert retention.apply(db.session, now=NOW)["erased_retention"] >= 6
    after = deidentified(db.session, since=None, until=None, now=counted_at)
    assert after["cases"] == before["cases"] and after["tables"]["gbv_type"] == before["tables"]["gbv_type"]


def test_a_month_key_is_destroyed_when_its_month_is_over_and_takes_every_copy_with_it(app, client, place, people):
    focal_h = people["focal"][1]
    days = app.config["RETENTION_DAYS"]
    case_id = submit(client, focal_h, place)
    end(case_id, NOW)
    retention.apply(db.session, now=NOW)
    row = db.session.get(Referral, case_id)
    copy, context, version = bytes(row.data_key_wrapped), row.crypto_context, row.kek_version  # "a backup"
    keys = keyring_for(app)
    assert keys.unwrap(copy, context)
    month_end = NOW + dt.timedelta(days=days)
    first_after = dt.datetime(month_end.year + (month_end.month == 12), month_end.month % 12 + 1, 1, tzinfo=dt.UTC)

    # the last day of the month: the case is past retention, but the month is not over yet
    late = retention.apply(db.session, now=first_after - dt.timedelta(seconds=1))
    assert late["erased_retention"] == 1 and late["keys_destroyed"] == []
    assert version in keys.retention_versions

    done = retention.apply(db.session, now=first_after)
    assert done["keys_destroyed"] == [retention.period_of(month_end)]
    assert version not in keys.retention_versions and keys.destroyed_versions[version] == retention.period_of(month_end)
    with pytest.raises(KeyringError, match=f"no key version {version}"):
        keys.unwrap(copy, context)
    assert events("retention.key_destroyed", version)
    assert verify(db.session).ok


def test_a_month_key_still_needed_by_a_live_case_is_kept_and_flagged(app, client, place, people):
    focal_h = people["focal"][1]
    case_id = submit(client, focal_h, place)
    end(case_id, NOW)
    retention.apply(db.session, now=NOW)
    row = db.session.get(Referral, case_id)
    version = row.kek_version
    row.status, row.closed_at = Status.in_progress, None  # reopened by hand: the clock no longer applies
    db.session.commit()
    far = NOW + dt.timedelta(days=app.config["RETENTION_DAYS"] + 62)
    result = retention.apply(db.session, now=far)
    assert result["keys_destroyed"] == [] and version in keyring_for(app).retention_versions
    assert events("retention.key_kept", version)[0].outcome == "error"
    assert db.session.get(Referral, case_id).erased_at is None


def test_the_survivor_erasure_request_withdraws_and_erases_at_once(client, place, people, login_as):
    from referral.accounts.models import Role

    focal, focal_h = people["focal"]
    values = canaries()
    case_id = submit(client, focal_h, place, values)
    # another focal point of the same group cannot; a supervisor has no such permission
    _other, other_h = login_as(Role.focal_point, organisation=place["group"])
    assert client.post(f"/api/v1/referrals/{case_id}/erasure", headers=other_h).status_code == 404
    assert [e.outcome for e in events("referral.erasure_request", case_id)] == ["denied"]
    assert client.post(f"/api/v1/referrals/{case_id}/erasure", headers=people["supervisor"][1]).status_code == 403
    assert client.post(f"/api/v1/referrals/{case_id}/erasure", json={"x": 1}, headers=focal_h).status_code in (400, 422)
    assert db.session.get(Referral, case_id).erased_at is None

    resp = client.post(f"/api/v1/referrals/{case_id}/erasure", headers=focal_h)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["status"] == "withdrawn" and resp.get_json()["erased"] is True
    assert not any(v in resp.get_data(as_text=True) for v in values.values())
    row = assert_erased(case_id)
    assert row.status is Status.withdrawn and row.erasure_requested_at is not None
    assert events("referral.withdraw", case_id) and events("referral.crypto_erase", case_id)[0].reason == \
        "survivor asked for erasure"
    again = client.post(f"/api/v1/referrals/{case_id}/erasure", headers=focal_h)
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "already_erased"
    body = client.get(f"/api/v1/referrals/{case_id}", headers=focal_h).get_json()
    assert body["status"] == "withdrawn"
    audit = json.dumps([e.reason for e in db.session.scalars(select(AuditEvent))])
    assert not any(v in audit for v in values.values())


def test_a_pending_request_is_carried_out_by_apply(client, place, people):
    case_id = submit(client, people["focal"][1], place)
    row = db.session.get(Referral, case_id)
    row.erasure_requested_at = NOW  # recorded, but its erasure did not happen (e.g. a crash)
    db.session.commit()
    assert retention.apply(db.session, now=NOW)["erased_requested"] == 1
    assert_erased(case_id)


def test_key_rotation_leaves_month_keys_alone(app, client, place, people):
    from referral.referrals.crypto import rotate

    ended, live = submit(client, people["focal"][1], place), submit(client, people["focal"][1], place)
    end(ended, NOW)
    retention.apply(db.session, now=NOW)
    month_version = db.session.get(Referral, ended).kek_version
    result = rotate(db.session, keyring_for(app))
    assert db.session.get(Referral, ended).kek_version == month_version
    assert db.session.get(Referral, live).kek_version == result["kek_version"]
    assert keyring_for(app).kek(month_version).state == "retention"


def test_retention_cli(runner, app, client, place, people):
    case_id = submit(client, people["focal"][1], place)
    end(case_id, NOW - dt.timedelta(days=app.config["RETENTION_DAYS"] + 1))
    bad = runner.invoke(args=["retention", "apply", "--now", "yesterday"])
    assert bad.exit_code == 2 and "ISO" in bad.output
    result = runner.invoke(args=["retention", "apply", "--now", NOW.isoformat()])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["erased_retention"] >= 1 and out["retention_days"] == app.config["RETENTION_DAYS"]
    assert db.session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "retention.apply"))


def test_period_arithmetic():
    assert retention.period_of(dt.datetime(2031, 12, 31, 23, 59, tzinfo=dt.UTC)) == "2031-12"
    assert not retention.period_over("2031-12", dt.datetime(2031, 12, 31, 23, 59, tzinfo=dt.UTC))
    assert retention.period_over("2031-12", dt.datetime(2032, 1, 1, tzinfo=dt.UTC))
    assert retention.period_over("2031-05", dt.datetime(2031, 6, 1, tzinfo=dt.UTC))
