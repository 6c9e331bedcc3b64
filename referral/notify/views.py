"""API: the SMS gateway webhook (SPEC §9)."""
from __future__ import annotations

from flask import jsonify, request

from referral.api import api
from referral.db import utcnow
from referral.errors import Forbidden, ValidationFailed
from referral.extensions import db
from referral.notify import sms
from referral.security.permissions import public


@api.post("/sms/inbound")
@public
def sms_inbound():  # type: ignore[no-untyped-def]
    """Signed by the gateway: 401 if not, 409 for a replay, 403 for an unregistered phone."""
    now = utcnow()
    raw = request.get_data(cache=True)
    timestamp = request.headers.get("X-Amanat-Timestamp", "")
    mac = sms.verify_signature(raw, timestamp, request.headers.get("X-Amanat-Signature", ""), now=now)
    sender, text = request.form.get("from", ""), request.form.get("text", "")
    message_id = request.form.get("message_id") or None
    if not sender or len(sender) > 32:
        raise ValidationFailed(fields={"from": ["Give the sender's number."]})
    if len(text) > 1600:
        raise ValidationFailed(fields={"text": ["At most 1,600 characters."]})
    if message_id is not None and (len(message_id) > 128 or not message_id.isprintable()):
        raise ValidationFailed(fields={"message_id": ["At most 128 printable characters."]})
    sms.refuse_replay(db.session, timestamp, mac)
    try:
        result = sms.handle_inbound(db.session, sender, text, now=now, message_id=message_id)
    except Forbidden:
        # An unregistered phone: nothing was done but the receipt and the denied event, and both stay, so
        # the same signed message again is a replay (409), not another refusal in the log. (Other failures
        # roll the receipt back: the gateway may retry a message that failed on our side.)
        db.session.commit()
        raise
    db.session.commit()
    return jsonify(result)
