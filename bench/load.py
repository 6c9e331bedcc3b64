"""Load: 10 k mixed concurrent requests across 4 gunicorn workers on PostgreSQL -> no error, chain valid.

    .venv/bin/python bench/load.py [--database-url URL] [--requests 10000] [--clients 16] [--workers 4]

A fresh database with the demo data; focal points submit, officers list their
queue, accept offers and record actions, the supervisor lists and reads cases,
oversight searches the audit log. Every answer must be the one expected (a lost
race for an offer is a 409, which is right); afterwards ``audit verify`` must pass
and the chain must hold at least one event per request that discloses or changes
anything. Exit 1 otherwise.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.http_bench import VENV_BIN, free_port, gunicorn, prepare_amanat, stop, submission_body, wait_up  # noqa: E402
from bench.trust_core import fresh_pg  # noqa: E402

USERS = {"focal": "focal.alamudun@demo.amanat.example", "supervisor": "supervisor.alamudun@demo.amanat.example",
         "aigul": "aigul.officer@demo.amanat.example", "bakyt": "bakyt.officer@demo.amanat.example",
         "oversight": "auditor@demo.amanat.example"}


class Client:
    def __init__(self, port: int, tokens: dict[str, str]) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.tokens = tokens

    def call(self, who: str, method: str, path: str, body: str | None = None) -> tuple[int, object]:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=body.encode() if body is not None else None, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
                return resp.status, (json.loads(data) if data else None)
            except (http.client.HTTPException, OSError):
                self.conn.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default=os.environ.get("PG_TEST_URL",
                                                                 "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="amanat-load-"))
    url, drop = fresh_pg(args.database_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFERRAL_")}
    env.update({"REFERRAL_ENV": "development", "REFERRAL_DATABASE_URL": url,
                "REFERRAL_KEYRING": str(tmp / "keyring.json"), "REFERRAL_AUDIT_SIGNING_KEY": str(tmp / "audit.pem"),
                "REFERRAL_RATELIMIT_ENABLED": "false"})
    server = None
    try:
        tokens = prepare_amanat(env, USERS)
        port = free_port()
        server = gunicorn("wsgi:app", env, port, args.workers)
        wait_up(f"http://127.0.0.1:{port}/healthz")
        template = submission_body()
        cases: list[str] = []
        lock = threading.Lock()
        outcomes: Counter[str] = Counter()
        errors: list[str] = []
        remaining = [args.requests]

        def take() -> bool:
            with lock:
                if remaining[0] <= 0:
                    return False
                remaining[0] -= 1
                return True

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            client = Client(port, tokens)
            while take():
                roll = rng.random()
                try:
                    if roll < 0.25 or not cases:
                        body = template.replace("TAGTAG", f"{seed}x{rng.randrange(10**9)}")
                        status, data = client.call("focal", "POST", "/api/v1/referrals", body)
                        kind, ok = "submit", status == 201
                        if ok:
                            with lock:
                                cases.append(data["id"])  # type: ignore[index]
                    elif roll < 0.50:
                        case_id = rng.choice(cases)
                        status, data = client.call("supervisor", "GET", f"/api/v1/referrals/{case_id}")
                        kind, ok = "read", status == 200
                    elif roll < 0.65:
                        who = rng.choice(["focal", "supervisor", "aigul", "bakyt"])
                        status, data = client.call(who, "GET", "/api/v1/referrals?per_page=20")
                        kind, ok = "list", status == 200
                    elif roll < 0.85:
                        officer = rng.choice(["aigul", "bakyt"])
                        status, data = client.call(officer, "GET", "/api/v1/referrals?per_page=5")
                        offered = [i["id"] for i in (data or {}).get("items", []) if i["status"] == "offered"]  # type: ignore[union-attr]
                        if not offered:
                            kind, ok = "queue", status == 200
                        else:
                            status, data = client.call(officer, "POST", f"/api/v1/referrals/{offered[0]}/accept")
                            # 409/404: another officer (or the same one, twice) won the race
                            kind, ok = "accept", status in (200, 404, 409)
                            if status == 200:
                                status, data = client.call(officer, "POST", f"/api/v1/referrals/{offered[0]}/actions",
                                                           json.dumps({"type": "contact_attempt",
                                                                       "note": "synthetic load note"}))
                                kind, ok = "action", status == 201
                    else:
                        case_id = rng.choice(cases)
                        status, data = client.call("oversight", "GET", f"/api/v1/audit?case_id={case_id}")
                        kind, ok = "audit", status == 200
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    kind, ok, status = "transport", False, 0
                    data = type(exc).__name__
                with lock:
                    outcomes[f"{kind} {status}"] += 1
                    if not ok and len(errors) < 20:
                        errors.append(f"{kind} {status} {json.dumps(data)[:200]}")

        started = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - started
    finally:
        if server is not None:
            stop(server)
    verify = subprocess.run([str(VENV_BIN / "flask"), "--app", "wsgi", "audit", "verify"], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    drop()
    total = sum(outcomes.values())
    print(f"{total} requests from {args.clients} clients on {args.workers} workers in {seconds:.1f} s "
          f"({total / seconds:.0f}/s)")
    for key, count in sorted(outcomes.items()):
        print(f"  {key:24} {count}")
    print(f"audit verify: exit {verify.returncode}: {(verify.stdout or verify.stderr).strip()[:200]}")
    if errors:
        print("unexpected answers:\n  " + "\n  ".join(errors))
    sys.exit(0 if not errors and verify.returncode == 0 else 1)


if __name__ == "__main__":
    main()
