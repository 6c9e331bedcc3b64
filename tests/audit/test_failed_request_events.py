"""A request that fails leaves no "allowed" event of what it did not do: the log must not say an action
happened that was rolled back (refusals stay)."""
from sqlalchemy import select

from referral.audit.models import AuditEvent
from referral.extensions import db


def test_a_refused_self_deactivation_leaves_no_allowed_event(client, login_as):
    admin, headers = login_as("admin")
    resp = client.post(f"/api/v1/admin/users/{admin.id}/deactivate", headers=headers)
    assert resp.status_code == 409, resp.get_json()
    db.session.expire_all()
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "user.deactivate")).all()
    assert [e.outcome for e in events if e.actor_id == admin.id] == []
    assert db.session.get(type(admin), admin.id).active
    other, _h = login_as("officer")
    assert client.post(f"/api/v1/admin/users/{other.id}/deactivate", headers=headers).status_code == 200
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "user.deactivate")).all()
    assert [(e.outcome, e.object_id) for e in events] == [("allowed", str(other.id))]  # the check can see events
