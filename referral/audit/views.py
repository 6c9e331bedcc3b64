"""API: chain verification for oversight (SPEC §12)."""
from __future__ import annotations

from flask import current_app, jsonify

from referral.api import acting_user, api
from referral.audit import service
from referral.audit.checkpoints import load_signing_key
from referral.extensions import db
from referral.security.keyring import KeyringError
from referral.security.permissions import Permission, requires


def public_key():  # type: ignore[no-untyped-def]
    try:
        return load_signing_key(current_app.config["AUDIT_SIGNING_KEY_PATH"], create=False).public_key()
    except KeyringError:
        return None


@api.get("/audit/verify")
@requires(Permission.AUDIT_VERIFY)
def verify_chain():  # type: ignore[no-untyped-def]
    from flask import current_app

    from referral.audit.checkpoints import CheckpointLogError, checkpoint_log_path, read_log

    try:
        logged = read_log(checkpoint_log_path(current_app.config))
    except CheckpointLogError:
        # Not the error's text: it names a path on the server. `flask audit verify` there says which line.
        result = service.VerifyResult(False, 0, None, "the checkpoint log outside the database cannot be read")
    else:
        result = service.verify(db.session, public_key=public_key(), logged=logged)
    service.record(db.session, acting_user(), "audit.verify", object_type="audit",
                   reason="chain holds" if result.ok else f"first bad sequence {result.first_bad_seq}")
    db.session.commit()
    return jsonify(ok=result.ok, count=result.count, first_bad_seq=result.first_bad_seq, problem=result.problem,
                   checkpoints=result.checkpoints)
