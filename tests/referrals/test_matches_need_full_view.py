"""Blind-index matches name only cases the reader may open in full (SPEC §7): an officer merely offered a
case, or whose offer went to a colleague, is not told that it shares a perpetrator with hers."""
from referral.reference.models import RoutingMode
from tests.referrals.helpers import canaries, submission


def test_a_case_seen_only_as_an_offer_is_not_named(client, place, people, officers):
    place["unit"].routing_mode = RoutingMode.pool  # every eligible officer is offered every case
    (_first, first_h), (_second, second_h) = officers
    focal_h = people["focal"][1]
    shared = canaries()
    a = client.post("/api/v1/referrals", json=submission(place["district"].code, shared), headers=focal_h).get_json()
    assert client.post(f"/api/v1/referrals/{a['id']}/accept", headers=first_h).status_code == 200
    other = canaries()
    other["perpetrator.name"] = shared["perpetrator.name"]
    b = client.post("/api/v1/referrals", json=submission(place["district"].code, other), headers=focal_h).get_json()
    # B is on offer to both officers; the first sees it only as an offer.
    assert client.get(f"/api/v1/referrals/{b['id']}", headers=first_h).get_json().get("survivor") is None
    mine = client.get(f"/api/v1/referrals/{a['id']}", headers=first_h).get_json()["matches"]
    assert mine == {"same_phone": [], "same_perpetrator": []}
    supervisor = client.get(f"/api/v1/referrals/{a['id']}", headers=people["supervisor"][1]).get_json()["matches"]
    assert supervisor == {"same_phone": [], "same_perpetrator": [b["reference"]]}
    # Once the colleague takes B, the first officer still may not open it: still not named to her.
    assert client.post(f"/api/v1/referrals/{b['id']}/accept", headers=second_h).status_code == 200
    assert client.get(f"/api/v1/referrals/{a['id']}", headers=first_h).get_json()["matches"] == mine


def test_a_read_names_the_fifty_most_recent_matches_and_oversight_counts_them_all(client, place, people, login_as):
    """A prolific perpetrator must not make every read of each of their cases slower: the read names the
    RELATED_LIMIT most recent matches, newest first; oversight's count has no limit."""
    from referral.referrals.services import RELATED_LIMIT

    focal_h, sup_h = people["focal"][1], people["supervisor"][1]
    first = canaries()
    a = client.post("/api/v1/referrals", json=submission(place["district"].code, first), headers=focal_h).get_json()
    others = []
    for _ in range(RELATED_LIMIT + 2):
        values = canaries()
        values["perpetrator.name"] = first["perpetrator.name"]
        others.append(client.post("/api/v1/referrals", json=submission(place["district"].code, values),
                                  headers=focal_h).get_json()["reference"])
    named = client.get(f"/api/v1/referrals/{a['id']}", headers=sup_h).get_json()["matches"]["same_perpetrator"]
    assert named == list(reversed(others))[:RELATED_LIMIT]
    counts = client.get(f"/api/v1/referrals/{a['id']}/matches", headers=login_as("oversight")[1]).get_json()
    assert counts["same_perpetrator"] == RELATED_LIMIT + 2
