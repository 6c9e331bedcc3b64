"""A best-interest override's reason is sealed to its own consent record: it opens there and nowhere else."""
import pytest
from sqlalchemy import select

from referral.extensions import db
from referral.referrals import crypto
from referral.referrals.models import Referral
from referral.security.sealed import SealIntegrityError, open_field
from referral.services_dir.models import Consent
from tests.referrals.helpers import minimal


def test_an_override_reason_opens_only_as_its_own_row(client, place, people, officers):
    body = minimal(place["district"].code)  # 15-17: a child
    body["consent"]["given_by"] = "caregiver"
    cid = client.post("/api/v1/referrals", json=body, headers=people["focal"][1]).get_json()["id"]
    reason = "CanaryReason the caregiver is the perpetrator"
    resp = client.post(f"/api/v1/referrals/{cid}/consents", headers=people["supervisor"][1],
                       json={"scope": "services:shelter", "granted": True, "given_by": "supervisor_override",
                             "reason": reason})
    assert resp.status_code == 201, resp.get_json()
    row = db.session.scalar(select(Consent).where(Consent.referral_id == cid, Consent.given_by == "supervisor_override"))
    key = crypto.case_key(db.session.get(Referral, cid))
    where = {"case_id": cid, "table": "consents", "column": "reason_sealed"}
    assert open_field(key, bytes(row.reason_sealed), row_id=str(row.id), **where) == reason
    others = [str(r.id) for r in db.session.scalars(select(Consent).where(Consent.referral_id == cid)) if r.id != row.id]
    for wrong in (others[0], cid):
        with pytest.raises(SealIntegrityError):
            open_field(key, bytes(row.reason_sealed), row_id=wrong, **where)
