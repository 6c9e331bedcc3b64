"""De-identified statistics count a case only while her statistics consent stands: not once it expired."""
import datetime as dt

from tests.oversight.test_oversight import stats_later
from tests.referrals.helpers import minimal


def test_a_case_whose_statistics_consent_expired_is_not_counted(client, place, people, login_as, api_as):
    auditor = login_as("oversight")
    focal_h = people["focal"][1]
    ids = []
    for _ in range(7):
        body = minimal(place["district"].code)
        body["consent"] = {**body["consent"], "statistics": True}
        ids.append(client.post("/api/v1/referrals", json=body, headers=focal_h).get_json()["id"])
    # She consented again on one case, for a while only: by the time the month is counted it has expired.
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    resp = client.post(f"/api/v1/referrals/{ids[0]}/consents", headers=focal_h,
                       json={"scope": "statistics", "granted": True, "expires_at": soon})
    assert resp.status_code in (200, 201), resp.get_json()
    assert stats_later(client, api_as, auditor)["cases"] == 6
