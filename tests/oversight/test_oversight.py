"""Oversight: audit search and export, disclosures, break-glass, anomalies, de-identified statistics."""
import csv
import datetime as dt
import io
import json
from collections import Counter
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from referral.audit.models import AuditEvent
from referral.extensions import db
from referral.oversight.statistics import report_bucket, suppress
from tests.referrals.helpers import canaries, minimal, month_after, submission

NON_OVERSIGHT = ("focal_point", "officer", "supervisor", "service_provider", "admin")


@pytest.fixture()
def auditor(login_as):
    return login_as("oversight")


@pytest.fixture()
def case(client, place, people, officers):
    values = canaries()
    body = client.post("/api/v1/referrals", json=submission(place["district"].code, values),
                       headers=people["focal"][1]).get_json()
    client.get(f"/api/v1/referrals/{body['id']}", headers=people["supervisor"][1])
    return body["id"], values


@pytest.mark.parametrize("path", ["/api/v1/audit", "/api/v1/audit/export.csv", "/api/v1/oversight/anomalies",
                                  "/api/v1/stats/deidentified", "/api/v1/break-glass"])
def test_oversight_apis_are_for_oversight_only(client, login_as, auditor, path):
    assert client.get(path, headers=auditor[1]).status_code == 200
    for role in NON_OVERSIGHT:
        _u, headers = login_as(role)
        assert client.get(path, headers=headers).status_code == 403
    assert client.get(path).status_code == 401


def test_audit_search_filters_and_is_itself_audited(client, case, people, auditor):
    case_id, values = case
    me, headers = auditor
    resp = client.get(f"/api/v1/audit?case_id={case_id}&action=referral.read", headers=headers).get_json()
    assert resp["total"] == 1 and resp["items"][0]["actor_id"] == people["supervisor"][0].id
    assert set(resp["items"][0]["fields"]) >= {"survivor.name", "incident.narrative"}
    assert not any(v in json.dumps(resp) for v in values.values())
    by_actor = client.get(f"/api/v1/audit?actor_id={people['focal'][0].id}", headers=headers).get_json()
    assert by_actor["total"] >= 1 and all(i["actor_id"] == people["focal"][0].id for i in by_actor["items"])
    assert client.get("/api/v1/audit?since=yesterday", headers=headers).status_code == 422
    assert client.get("/api/v1/audit?since=2026-01-01T00:00:00", headers=headers).status_code == 422  # naive
    assert client.get("/api/v1/audit?per_page=500", headers=headers).status_code == 422
    mine = db.session.scalars(select(AuditEvent).where(AuditEvent.actor_id == me.id,
                                                       AuditEvent.action == "audit.search")).all()
    assert len(mine) == 2


def test_csv_export_is_audited_and_flags_off_hours(client, case, auditor):
    me, headers = auditor
    night = dt.datetime.now(dt.UTC).replace(hour=2, minute=0)
    with time_machine.travel(night, tick=False):
        resp = client.get("/api/v1/audit/export.csv", headers=headers)
        assert resp.status_code == 200 and resp.mimetype == "text/csv"
        rows = list(csv.reader(io.StringIO(resp.get_data(as_text=True))))
        assert rows[0][:5] == ["seq", "ts", "actor_id", "actor_role", "action"] and len(rows) > 3
        anomalies = client.get("/api/v1/oversight/anomalies", headers=headers).get_json()["items"]
    assert any(a["kind"] == "export_outside_hours" and a["actor_id"] == me.id for a in anomalies)


def test_disclosures_say_who_saw_what_and_why(client, case, people, officers, auditor):
    case_id, _values = case
    items = client.get(f"/api/v1/referrals/{case_id}/disclosures", headers=auditor[1]).get_json()["items"]
    by_role = {(i["actor_role"], i["action"]): i for i in items}
    assert by_role[("supervisor", "referral.read")]["purpose"] == "assignment"
    assert by_role[("focal_point", "referral.create")]["purpose"] == "submission"
    assert client.get("/api/v1/referrals/not-a-case/disclosures", headers=auditor[1]).status_code == 404


def test_disclosures_come_a_page_at_a_time(client, case, people, auditor):
    """Every full read of a case is a disclosure, so a busy case has thousands: SPEC §9's page envelope."""
    case_id, _values = case
    for _ in range(4):
        assert client.get(f"/api/v1/referrals/{case_id}", headers=people["supervisor"][1]).status_code == 200
    url = f"/api/v1/referrals/{case_id}/disclosures"
    whole = client.get(url + "?per_page=100", headers=auditor[1]).get_json()
    total = whole["total"]
    assert total == len(whole["items"]) >= 5 and (whole["page"], whole["per_page"]) == (1, 100)
    seqs = [i["seq"] for i in whole["items"]]
    assert seqs == sorted(seqs)  # oldest first
    pages = [client.get(url + f"?page={n}&per_page=2", headers=auditor[1]).get_json() for n in (1, 2, 3, 4)]
    assert all(p["total"] == total and p["per_page"] == 2 for p in pages)
    assert [i["seq"] for p in pages for i in p["items"]] == seqs[:8]
    assert client.get(url + "?page=999", headers=auditor[1]).get_json()["items"] == []
    for bad in ("per_page=101", "per_page=0", "page=0", "page=x", "colour=red"):
        assert client.get(url + "?" + bad, headers=auditor[1]).status_code == 422, bad
    shown = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "referral.disclosures")
                               .order_by(AuditEvent.seq.desc())).first()
    assert shown.reason == f"0 of {total} shown" and shown.object_id == case_id


@pytest.mark.parametrize("path", ["/api/v1/break-glass", "/api/v1/oversight/anomalies"])
def test_oversight_lists_answer_in_the_page_envelope(client, auditor, path):
    body = client.get(path + "?page=1&per_page=5", headers=auditor[1]).get_json()
    assert set(body) == {"items", "page", "per_page", "total"} and (body["page"], body["per_page"]) == (1, 5)
    assert len(body["items"]) == min(5, body["total"])
    assert client.get(path + "?per_page=500", headers=auditor[1]).status_code == 422


def test_break_glass_gives_time_limited_access_and_stands_out(client, case, auditor, login_as):
    case_id, values = case
    me, headers = auditor
    assert client.get(f"/api/v1/referrals/{case_id}", headers=headers).status_code == 404  # not without it
    short = {"case_id": case_id, "justification": "too short"}
    assert client.post("/api/v1/break-glass", json=short, headers=headers).status_code == 422
    too_long = {"case_id": case_id, "justification": "Complaint 2026/114 about this unit's handling", "hours": 100}
    assert client.post("/api/v1/break-glass", json=too_long, headers=headers).status_code == 422
    start = dt.datetime.now(dt.UTC)
    with time_machine.travel(start, tick=False) as traveller:
        grant = client.post("/api/v1/break-glass", headers=headers,
                            json={"case_id": case_id, "justification": "Complaint 2026/114 about this unit's handling"})
        assert grant.status_code == 201
        assert dt.datetime.fromisoformat(grant.get_json()["expires_at"]) == start + dt.timedelta(hours=1)
        seen = client.get(f"/api/v1/referrals/{case_id}", headers=headers)
        assert seen.status_code == 200 and seen.get_json()["survivor"]["name"] == values["survivor.name"]
        traveller.shift(dt.timedelta(minutes=61))
        assert client.get(f"/api/v1/referrals/{case_id}", headers=headers).status_code == 404
    opened = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "break_glass.open"))
    assert "BREAK-GLASS" in opened.reason and "Complaint" not in (opened.reason or "")
    search = client.get("/api/v1/audit?action=break_glass.open", headers=headers).get_json()["items"]
    assert search[0]["break_glass"] is True
    # Another oversight user sees it in the review queue and reviews it; the opener cannot.
    other, other_h = login_as("oversight")
    queue = client.get("/api/v1/break-glass", headers=other_h).get_json()["items"]
    assert queue[0]["case_id"] == case_id and queue[0]["reviewed"] is False
    # The reviewer judges the reason given: it is opened for her, and that disclosure is audited.
    assert queue[0]["justification"] == "Complaint 2026/114 about this unit's handling"
    db.session.commit()
    shown = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "break_glass.justification")).all()
    assert [(e.actor_id, e.object_id, json.loads(e.fields)) for e in shown] == [
        (other.id, case_id, ["break_glass.justification"])]
    assert "Complaint" not in (shown[0].reason or "")
    gid = queue[0]["id"]
    assert client.post(f"/api/v1/break-glass/{gid}/review", json={"outcome": "justified"},
                       headers=headers).status_code == 422
    assert client.post(f"/api/v1/break-glass/{gid}/review", json={"outcome": "justified"},
                       headers=other_h).status_code == 200
    reviewed = client.get("/api/v1/break-glass", headers=other_h).get_json()["items"][0]
    assert reviewed["reviewed"] is True and reviewed["justification"] is None  # judged: not opened again
    assert client.post("/api/v1/break-glass/999999/review", json={"outcome": "justified"},
                       headers=other_h).status_code == 404
    missing = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "break_glass.review",
                                                          AuditEvent.outcome == "denied")).all()
    assert [(e.object_type, e.object_id, e.reason) for e in missing] == [("break_glass", "999999", "no such grant")]


def test_many_cases_read_and_repeated_denials_are_flagged(client, app, place, people, auditor, monkeypatch,
                                                          login_as):
    monkeypatch.setitem(app.config, "ANOMALY_CASES_PER_HOUR", 3)
    monkeypatch.setitem(app.config, "ANOMALY_DENIALS_PER_HOUR", 3)
    sup, sup_h = people["supervisor"]
    for _ in range(3):
        cid = client.post("/api/v1/referrals", json=minimal(place["district"].code),
                          headers=people["focal"][1]).get_json()["id"]
        client.get(f"/api/v1/referrals/{cid}", headers=sup_h)
    prowler, prowler_h = login_as("officer")
    for _ in range(3):
        client.get(f"/api/v1/referrals/{cid}", headers=prowler_h)
    items = client.get("/api/v1/oversight/anomalies", headers=auditor[1]).get_json()["items"]
    kinds = {(a["kind"], a["actor_id"]) for a in items}
    assert ("many_cases_read", sup.id) in kinds and ("repeated_denials", prowler.id) in kinds


# -- statistics -------------------------------------------------------------------------

S, L = "suppressed", "<5"


def stats_later(client, api_as, auditor, query="", now=None):
    """The statistics asked once the month of ``now`` has ended (a new token: the fixture's has expired)."""
    with time_machine.travel(month_after(now), tick=False):
        resp = client.get(f"/api/v1/stats/deidentified?{query}", headers=api_as(auditor[0]))
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def _solutions(counts, cells):
    """Every assignment of the hidden cells the published table allows (a <5 is 1..4, a suppressed >= 5)."""
    import itertools

    hidden = [k for k, v in cells.items() if v in (S, L)]
    total = sum(counts.values())
    known = sum(v for v in cells.values() if isinstance(v, int))
    ranges = [range(1, 5) if cells[k] == L else range(5, total + 1) for k in hidden]
    return [dict(zip(hidden, combo)) for combo in itertools.product(*ranges) if sum(combo) == total - known]


@pytest.mark.parametrize("counts, cells", [
    ({"a": 10, "b": 7, "c": 2}, {"a": 10, "b": S, "c": L}),
    ({"a": 10, "b": 3, "c": 1}, {"a": 10, "b": L, "c": L}),   # b + c = 4: (1,3), (2,2) or (3,1)
    ({"a": 10, "b": 1, "c": 1}, {"a": S, "b": L, "c": L}),    # b + c = 2 would mean 1 and 1
    ({"a": 20, "b": 5, "c": 1}, {"a": S, "b": S, "c": L}),    # c + b = 6 with b >= 5 would mean c = 1
    ({"a": 20, "b": 4, "c": 1, "d": 9}, {"a": 20, "b": L, "c": L, "d": 9}),
    ({"a": 6, "b": 9}, {"a": 6, "b": 9}),
    ({"a": 2, "b": 2}, {}),   # four cases in all: no cells
])
def test_suppression_hides_small_cells_so_no_sum_or_difference_gives_them_back(counts, cells):
    """SPEC §8: counts under 5 read <5. Complementary cells are hidden until, knowing that a <5 is 1-4 and a
    suppressed cell at least 5, the total and the visible cells leave every small cell more than one value."""
    out = suppress(Counter(counts))
    assert out["cells"] == cells
    if cells:
        solutions = _solutions(counts, cells)
        assert {k: counts[k] for k in solutions[0]} in solutions  # the truth is among them
        for key in (k for k, v in cells.items() if v == L):
            assert len({s[key] for s in solutions}) >= 2, key
    assert out["total"] == (sum(counts.values()) if sum(counts.values()) >= 5 else "<5")
    assert suppress(Counter({"a": 3})) == {"cells": {}, "total": "<5"}


@pytest.mark.parametrize("since, until, ok", [
    ("2026-03-01", "2026-03-31", True), ("2026-03-01", None, True), (None, "2026-02-28", True),
    ("2026-03-11", "2026-03-11", False), ("2026-03-02", None, False), (None, "2026-03-30", False),
    ("2026-04-01", "2026-03-31", False),
])
def test_statistics_cover_whole_months_only(client, runner, auditor, tmp_path, since, until, ok):
    """A single day could hold a single case, and her cells across the tables would be her profile."""
    query = "&".join(f"{k}={v}" for k, v in (("since", since), ("until", until)) if v)
    resp = client.get(f"/api/v1/stats/deidentified?{query}", headers=auditor[1])
    assert resp.status_code == (200 if ok else 422), resp.get_json()
    args = [f"--{k}={v}" for k, v in (("since", since), ("until", until)) if v]
    result = runner.invoke(args=["stats", "export", "--out", str(tmp_path / "s.csv"), *args])
    assert result.exit_code == (0 if ok else 1), result.output


@pytest.mark.parametrize("days, bucket", [(0, "0-3"), (3, "0-3"), (4, "4-5"), (5, "4-5"), (6, "6-14"),
                                          (14, "6-14"), (15, "15-30"), (30, "15-30"), (31, "over_30")])
def test_time_to_report_buckets(days, bucket):
    reported = dt.datetime(2026, 11, 25, 12, tzinfo=dt.UTC)
    assert report_bucket(reported.date() - dt.timedelta(days=days), reported) == bucket


def test_time_to_report_counts_the_report_on_the_service_calendar():
    """02:00 in Bishkek on 1 November is still 31 October in UTC: from an incident on 28 October that is
    four days where the focal point stood, not three."""
    import zoneinfo

    reported = dt.datetime(2026, 10, 31, 20, tzinfo=dt.UTC)
    assert report_bucket(dt.date(2026, 10, 28), reported, zoneinfo.ZoneInfo("Asia/Bishkek")) == "4-5"
    assert report_bucket(dt.date(2026, 10, 28), reported) == "0-3"


def test_statistics_months_and_periods_follow_the_service_calendar(client, app, place, people, auditor,
                                                                   monkeypatch, api_as):
    """Cases reported between 02:00 and 02:04 on 1 November in Bishkek (20:00 UTC on 31 October) count
    in November, in a period that starts on 1 November, and four days after an incident on 28 October;
    with LOCAL_TIMEZONE=UTC the same cases count in October."""
    first = dt.datetime(2026, 10, 31, 20, tzinfo=dt.UTC)
    for n in range(5):
        body = minimal(place["district"].code)
        body["consent"]["statistics"] = True
        body["incident"]["date"] = "2026-10-28"
        with time_machine.travel(first + dt.timedelta(minutes=n), tick=False):
            assert client.post("/api/v1/referrals", json=body, headers=people["focal"][1]).status_code == 201

    def report(**period):
        return stats_later(client, api_as, auditor, "&".join(f"{k}={v}" for k, v in period.items()),
                           now=dt.datetime(2026, 11, 15, tzinfo=dt.UTC))

    november = report(since="2026-11-01", until="2026-11-30")
    assert november["cases"] == 5
    assert november["tables"]["month"]["cells"] == {"2026-11": 5}
    assert november["tables"]["time_to_report"]["cells"] == {"4-5": 5}
    assert report(since="2026-10-01", until="2026-10-31")["cases"] == 0
    monkeypatch.setitem(app.config, "LOCAL_TIMEZONE", "UTC")
    october = report(since="2026-10-01", until="2026-10-31")
    assert october["cases"] == 5
    assert october["tables"]["month"]["cells"] == {"2026-10": 5}
    assert october["tables"]["time_to_report"]["cells"] == {"0-3": 5}
    assert report(since="2026-11-01", until="2026-11-30")["cases"] == 0


def test_dashboard_breach_months_follow_the_service_calendar(client, place, people, auditor):
    """A step that fell due at 02:00 on 1 November in Bishkek is a November breach on the dashboard."""
    from referral.oversight.services import dashboard
    from referral.standards.models import StepBreach

    case_id = client.post("/api/v1/referrals", json=minimal(place["district"].code),
                          headers=people["focal"][1]).get_json()["id"]
    due = dt.datetime(2026, 10, 31, 20, tzinfo=dt.UTC)
    db.session.add(StepBreach(referral_id=case_id, step_code="accept", due_at=due, recorded_at=due))
    db.session.flush()
    figures = dashboard(db.session, auditor[0])
    assert figures["breaches_by_unit_month"] == [(f"{place['unit'].code} 2026-11", 1)]


def test_statistics_count_only_consented_cases_and_suppress(client, runner, place, people, auditor, tmp_path,
                                                            api_as):
    focal_h = people["focal"][1]
    def send(n, **changes):
        for _ in range(n):
            body = minimal(place["district"].code)
            body["consent"]["statistics"] = changes.get("statistics", True)
            body["incident"]["answers"][changes.get("answer", "physical_assault")] = True
            assert client.post("/api/v1/referrals", json=body, headers=focal_h).status_code == 201
    send(7)                                   # physical assault
    send(2, answer="psychological_abuse")     # a small cell
    send(6, answer="forced_marriage")         # its complement
    send(4, answer="penetration", statistics=False)  # never counted
    # This month is not counted while it runs: asked before and after one more case, its figures would
    # differ by exactly her cells.
    this_month = (month_after().date().replace(day=1) - dt.timedelta(days=1)).replace(day=1)
    running = client.get("/api/v1/stats/deidentified", headers=auditor[1]).get_json()
    # The month before counts an hour after it ends: in that hour the answer stops a month earlier.
    last_month_end = this_month - dt.timedelta(days=1)
    local = dt.datetime.now(ZoneInfo("Asia/Bishkek"))
    settling = local.day == 1 and local.hour == 0
    expected = last_month_end.replace(day=1) - dt.timedelta(days=1) if settling else last_month_end
    assert running["cases"] == 0 and running["until"] == expected.isoformat()
    refused = client.get(f"/api/v1/stats/deidentified?since={this_month}", headers=auditor[1])
    assert refused.status_code == 422 and list(refused.get_json()["error"]["fields"]) == ["since"]
    report = stats_later(client, api_as, auditor)
    assert report["cases"] == 15
    assert report["tables"]["gbv_type"]["cells"] == {"forced_marriage": "suppressed", "physical_assault": 7,
                                                     "psychological_abuse": "<5"}
    assert report["tables"]["gbv_type"]["total"] == 15
    assert "rape" not in json.dumps(report)
    out = tmp_path / "stats.csv"
    with time_machine.travel(month_after(), tick=False):
        result = runner.invoke(args=["stats", "export", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with out.open() as fh:
        rows = list(csv.reader(fh))
    assert ["gbv_type", "psychological_abuse", "<5"] in rows
    assert ["gbv_type", "forced_marriage", "suppressed"] in rows


def test_a_month_counts_only_an_hour_after_it_ends(client, place, people, auditor, api_as):
    """Cases stamped in a month's last second may commit after midnight: asked at 00:30 and again at
    00:31, the month would differ by exactly their cells. It counts from 01:00 (service zone)."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo("Asia/Bishkek")
    with time_machine.travel(dt.datetime(2026, 10, 31, 23, 59, 59, 900000, tzinfo=zone), tick=False):
        focal_h = api_as(people["focal"][0])
        for _ in range(5):
            body = minimal(place["district"].code)
            body["consent"]["statistics"] = True
            body["incident"]["answers"]["physical_assault"] = True
            assert client.post("/api/v1/referrals", json=body, headers=focal_h).status_code == 201

    def ask(at, query=""):  # type: ignore[no-untyped-def]
        with time_machine.travel(at, tick=False):
            return client.get(f"/api/v1/stats/deidentified?{query}", headers=api_as(auditor[0]))

    settling = dt.datetime(2026, 11, 1, 0, 59, 59, tzinfo=zone)
    refused = ask(settling, "since=2026-10-01")
    assert refused.status_code == 422 and list(refused.get_json()["error"]["fields"]) == ["since"]
    cut = ask(settling, "until=2026-10-31").get_json()
    assert (cut["until"], cut["cases"]) == ("2026-09-30", 0)
    settled = ask(dt.datetime(2026, 11, 1, 1, 0, 1, tzinfo=zone), "since=2026-10-01").get_json()
    assert (settled["until"], settled["cases"]) == ("2026-10-31", 5)
    assert settled["tables"]["gbv_type"]["cells"] == {"physical_assault": 5}


def test_statistics_follow_the_latest_consent_record_and_count_districts_and_outcomes(
        client, place, people, auditor, officers, login_as, api_as):
    from tests.factories import OrganisationFactory

    focal_h = people["focal"][1]
    ids = []
    for _ in range(7):
        body = minimal(place["village"].code)
        body["consent"] = {**body["consent"], "statistics": True, "services": True}
        ids.append(client.post("/api/v1/referrals", json=body, headers=focal_h).get_json()["id"])
    # The survivor withdraws her statistics consent on one case: the latest record wins.
    resp = client.post(f"/api/v1/referrals/{ids[0]}/consents", headers=focal_h,
                       json={"scope": "statistics", "granted": False})
    assert resp.status_code in (200, 201), resp.get_json()
    # A service outcome on another.
    officer_h = officers[0][1]
    offered = [i for i in ids[1:] if client.post(f"/api/v1/referrals/{i}/accept", headers=officer_h).status_code == 200]
    clinic = OrganisationFactory(kind="provider", areas=[place["district"]], service_types=["health"])
    _staff, staff_h = login_as("service_provider", organisation=clinic)
    sr = client.post(f"/api/v1/referrals/{offered[0]}/service-referrals", headers=officer_h,
                     json={"provider_id": clinic.id, "service_type": "health", "share": []}).get_json()
    assert client.post(f"/api/v1/service-referrals/{sr['id']}/complete", headers=staff_h,
                       json={"outcome": "provided"}).status_code == 200
    report = stats_later(client, api_as, auditor)
    assert report["cases"] == 6
    assert report["tables"]["district"]["cells"] == {place["district"].code: 6}  # the village's district
    assert report["tables"]["service_outcome"] == {"cells": {}, "total": "<5"}  # one outcome: nothing shown


def test_fewer_than_five_cases_show_no_cells_at_all(client, place, people, auditor, api_as):
    """One case in the period: each table's only cell would be hers (age, type, relationship, district)."""
    body = minimal(place["district"].code)
    body["consent"]["statistics"] = True
    body["incident"]["answers"]["penetration"] = True
    assert client.post("/api/v1/referrals", json=body, headers=people["focal"][1]).status_code == 201
    report = stats_later(client, api_as, auditor)
    assert report["cases"] == "<5"
    assert all(table == {"cells": {}, "total": "<5"} for table in report["tables"].values())
    assert "rape" not in json.dumps(report) and place["district"].code not in json.dumps(report)


def test_an_hour_of_many_reads_is_still_flagged_the_next_morning_and_provider_reads_count(
        client, app, make_user, auditor, monkeypatch):
    """SPEC §8 anomaly alerts: a burst of reads at 02:00 is there when oversight looks at 09:00 (the last
    7 days are searched hour by hour), and a provider opening many service referrals counts as reading."""
    from referral.audit.service import record

    monkeypatch.setitem(app.config, "ANOMALY_CASES_PER_HOUR", 3)
    supervisor, provider = make_user("supervisor"), make_user("service_provider")
    night = dt.datetime(2026, 11, 20, 2, 10, tzinfo=dt.UTC)
    for n in range(4):
        record(db.session, supervisor, "referral.read", object_type="referral", object_id=f"case-{n}",
               now=night + dt.timedelta(minutes=n))
        record(db.session, provider, "service_referral.read", object_type="referral", object_id=f"case-{n}",
               now=night + dt.timedelta(minutes=n))
    # Reads spread over hours are no burst.
    for n in range(4):
        record(db.session, supervisor, "referral.read", object_type="referral", object_id=f"other-{n}",
               now=night + dt.timedelta(hours=2 + n))
    db.session.commit()
    with time_machine.travel(dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC), tick=False):
        items = client.get("/api/v1/oversight/anomalies", headers=auditor[1]).get_json()["items"]
    flagged = sorted((i["actor_id"], i["count"], i["ts"]) for i in items if i["kind"] == "many_cases_read")
    assert flagged == sorted([(supervisor.id, 4, "2026-11-20T02:00:00+00:00"),
                              (provider.id, 4, "2026-11-20T02:00:00+00:00")])
    with time_machine.travel(dt.datetime(2026, 11, 28, 9, tzinfo=dt.UTC), tick=False):
        later = client.get("/api/v1/oversight/anomalies", headers=auditor[1]).get_json()["items"]
    assert not [i for i in later if i["kind"] == "many_cases_read"]  # older than the 7 days looked at


def test_a_burst_across_the_end_of_a_clock_hour_is_one_signal(client, app, make_user, auditor, monkeypatch):
    """Four reads from 02:50 to 03:05 with a threshold of 4: no clock hour holds them all, the half-past
    window does; the two windows that see part of it do not make it three signals."""
    from referral.audit.service import record

    monkeypatch.setitem(app.config, "ANOMALY_CASES_PER_HOUR", 4)
    reader = make_user("supervisor")
    start = dt.datetime(2026, 11, 20, 2, 50, tzinfo=dt.UTC)
    for n in range(4):
        record(db.session, reader, "referral.read", object_type="referral", object_id=f"case-{n}",
               now=start + dt.timedelta(minutes=5 * n))
    db.session.commit()
    with time_machine.travel(dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC), tick=False):
        items = client.get("/api/v1/oversight/anomalies", headers=auditor[1]).get_json()["items"]
    assert [(i["actor_id"], i["count"], i["ts"]) for i in items if i["kind"] == "many_cases_read"] == [
        (reader.id, 4, "2026-11-20T02:30:00+00:00")]
