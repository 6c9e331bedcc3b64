"""A case withdrawn at her request stops a message to her still in the queue (her SMS consent may stand)."""
from referral.extensions import db
from referral.notify.models import MessageStatus
from referral.notify.outbox import deliver
from tests.notify.test_outbox import Recorder, messages
from tests.referrals.helpers import submission


def test_a_withdrawn_case_stops_a_queued_message_to_her(client, place, people, officers):
    case = client.post("/api/v1/referrals", json=submission(place["district"].code),  # SMS consent, SMS contact
                       headers=people["focal"][1]).get_json()
    assert client.post(f"/api/v1/referrals/{case['id']}/accept", headers=officers[0][1]).status_code == 200
    [message] = messages("survivor_contact")
    assert message.status is MessageStatus.pending
    resp = client.post(f"/api/v1/referrals/{case['id']}/withdraw", headers=people["focal"][1])
    assert resp.status_code == 200, resp.get_json()
    sms = Recorder()
    deliver(db.session, {"sms": sms, "email": Recorder()})
    assert [s for s in sms.sent if s[0] == message.key] == []
    [message] = messages("survivor_contact")
    assert message.status is MessageStatus.dead and message.last_error == "no longer allowed to contact her"
