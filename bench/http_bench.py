"""``make bench``: Amanat against the bare stack, over HTTP, measured in the same run.

    .venv/bin/python bench/http_bench.py [--database-url URL] [--seconds 10] [--connections 8]

Starts gunicorn (2 sync workers) twice on fresh PostgreSQL databases: Amanat
(``wsgi:app``, rate limits off) and the bare app in ``bench/bare_app.py``; loads
each with wrk (Debian's ``wrk``) and prints throughput, p50 and p99, the machine's
CPU time per request (and the app's workers' and PostgreSQL's share of it), the
secure floors (bench/bare_app.py: in three statements and in one) for context, and
the ratios the performance goals are stated in (issue 10):

- full referral submission (classify, seal under a new case key, route, audit)
  vs a bare insert of the same JSON as a row: goal >= 0.6x;
- an audited, decrypting case read by the unit supervisor vs a bare row read,
  8 concurrent clients: goal >= 0.8x.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.trust_core import fresh_pg  # noqa: E402
from sqlalchemy import make_url  # noqa: E402

VENV_BIN = Path(sys.executable).parent
GOALS = {"submit": 0.6, "read": 0.8}
BARE_TOKEN = "bench-token"  # bench/bare_app.py's one token


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, timeout: float = 30, ok_statuses: tuple[int, ...] = ()) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError as exc:
            if exc.code in ok_statuses:
                return
            time.sleep(0.2)
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server at {url} did not start")


def gunicorn(app: str, env: dict[str, str], port: int, workers: int, log: Path | None = None) -> subprocess.Popen:
    """``log``: where the server's output goes (Amanat writes an access line for every request, as in
    production), so that it cannot break into the report's lines; by default, this process's own."""
    out = None if log is None else open(log, "ab")  # noqa: SIM115 - the child keeps it; closed with the process
    # No control socket: gunicorn's default path is one per user, and the two servers run at once.
    try:
        return subprocess.Popen([str(VENV_BIN / "gunicorn"), "-w", str(workers), "-b", f"127.0.0.1:{port}",
                                 "--log-level", "warning", "--no-control-socket", app], cwd=ROOT, env=env,
                                stdout=out, stderr=out)
    finally:
        if out is not None:
            out.close()  # the child has its own descriptor


def print_server_logs(logs: dict[str, Path]) -> None:
    """The last lines each server wrote (``gunicorn(..., log)``), to stderr."""
    for name, log in logs.items():
        print(f"--- {name} server's output (last lines):", *log.read_text(errors="replace").splitlines()[-20:],
              sep="\n", file=sys.stderr)


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


LUA = """
wrk.method = "{method}"
wrk.headers["Content-Type"] = "application/json"
{auth}
local template = {body}
local counter = 0
request = function()
  if template == nil then return wrk.format() end
  counter = counter + 1
  -- a different perpetrator per case, as in life: no case has thousands of "related" cases
  local body = template:gsub("TAGTAG", tostring(math.random(1, 1000000000)) .. "x" .. counter)
  return wrk.format(nil, nil, nil, body)
end
"""


def lua_string(text: str) -> str:
    """A Lua string literal of ``text``'s UTF-8 bytes (LuaJIT knows no \\u escapes)."""
    out = []
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        out.append(ch if 32 <= byte < 127 and ch not in '"\\' else f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def cpu_ticks() -> tuple[int, int] | None:
    """(all, idle) clock ticks of the whole machine so far (Linux's /proc/stat); None elsewhere."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(values), values[3] + values[4]  # idle and iowait


def process_ticks(pids: list[int]) -> int:
    """User and system clock ticks these processes have used so far (Linux's /proc; 0 for one gone)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks


def backend_pids(database: str) -> list[int]:
    """PostgreSQL's backends serving ``database`` on this host, found by their process titles."""
    pids = []
    try:
        entries = list(Path("/proc").iterdir())
    except OSError:
        return []  # no /proc: not Linux
    for entry in entries:
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            # A client's backend ("… user database 127.0.0.1(port) …" or "[local]"), not autovacuum's.
            if title.startswith("postgres: ") and f" {database} " in title and ("(" in title or "[local]" in title):
                pids.append(int(entry.name))
    return pids


def wrk(url: str, *, seconds: int, connections: int, method: str = "GET", body: str | None = None,
        token: str | None = None, tmp: Path, server: tuple[subprocess.Popen, str] | None = None) -> dict[str, float]:
    """wrk's throughput, p50, p99 and non-2xx count, and ``cpu_ms``: the machine's CPU time per request
    over the run (every process: server, PostgreSQL, wrk; None where /proc/stat is not there). Busy CPU,
    not throughput, is what a request's own work costs: a run that leaves cores idle (commits waiting on
    the disk, a lock) shows it as the gap between the two ratios. With ``server`` (the gunicorn master, its
    database's name), also ``app_ms`` and ``pg_ms``: the CPU its workers and its PostgreSQL backends used,
    per request (the workers there when the run starts, and the backends there when it starts or ends: one
    opened during the run counts whole; ``pg_ms`` None where none is found on this host)."""
    script = tmp / f"wrk-{time.time_ns()}.lua"
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"' if token else ""
    script.write_text(LUA.format(method=method, body=lua_string(body) if body else "nil", auth=auth))
    workers = worker_pids(server[0]) if server else []
    backends = backend_pids(server[1]) if server else []
    before, app_before, pg_before = cpu_ticks(), process_ticks(workers), process_ticks(backends)
    out = subprocess.run(["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "--latency",
                          "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    after, app_after, pg_after = cpu_ticks(), process_ticks(workers), process_ticks(backends)
    if server:  # a backend a pool opened during the run (a first request's connection): all of its CPU is the run's
        opened = [pid for pid in backend_pids(server[1]) if pid not in backends]
        pg_after += process_ticks(opened)
        backends += opened
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    cpu_ms = app_ms = pg_ms = None
    if before and after and after[0] > before[0] and rps > 0:
        busy = 1 - (after[1] - before[1]) / (after[0] - before[0])
        cpu_ms = busy * (os.cpu_count() or 1) * 1000 / rps
        if server and requests:
            per_tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
            app_ms = (app_after - app_before) * per_tick_ms / requests
            # None where no backend was found here (PostgreSQL on another host or in a container).
            pg_ms = (pg_after - pg_before) * per_tick_ms / requests if backends else None

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": pct("50"), "p99": pct("99"), "errors": int(errors.group(1)) if errors else 0,
            "cpu_ms": cpu_ms, "app_ms": app_ms, "pg_ms": pg_ms}


def worker_pids(master: subprocess.Popen) -> list[int]:
    """The gunicorn master's workers (its children)."""
    return [int(pid) for pid in subprocess.run(["pgrep", "-P", str(master.pid)], capture_output=True,
                                               text=True).stdout.split()]


def workers_rss_mb(master: subprocess.Popen) -> list[float]:
    """Resident memory of each gunicorn worker, in MB."""
    sizes = []
    for pid in worker_pids(master):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes.append(int(line.split()[1]) / 1024)
        except OSError:
            pass
    return sizes


BENCH_USERS = {"focal": "focal.alamudun@demo.amanat.example", "supervisor": "supervisor.alamudun@demo.amanat.example"}


def prepare_amanat(env: dict[str, str], users: dict[str, str] = BENCH_USERS) -> dict[str, str]:
    """Migrate, seed the demo, and mint a bearer token for each of ``users`` (key -> demo e-mail)."""
    flask = [str(VENV_BIN / "flask"), "--app", "wsgi"]
    subprocess.run(flask + ["db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True)
    subprocess.run(flask + ["demo", "seed"], cwd=ROOT, env=env, check=True, capture_output=True)
    code = (
        "import json\n"
        "from referral import create_app\n"
        "from referral.extensions import db\n"
        "from referral.accounts.models import User\n"
        "from referral.accounts.auth import issue_token\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        f"    wanted = {users!r}\n"
        "    out = {}\n"
        "    for key, email in wanted.items():\n"
        "        user = db.session.scalar(db.select(User).where(User.email == email))\n"
        "        out[key] = issue_token(user)[0]\n"
        "    db.session.commit()\n"
        "    print(json.dumps(out))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def submission_body() -> str:
    from tests.referrals.helpers import submission

    body = submission("KG-C-ALM")
    body["perpetrator"]["name"] = "Perpetrator TAGTAG"
    body["perpetrator"]["details"] = "Details TAGTAG"
    body["survivor"].pop("phone")  # no duplicate search across thousands of identical phones
    body["survivor"]["safe_contact"]["method"] = "via_focal_point"
    return json.dumps(body, ensure_ascii=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default=os.environ.get("PG_TEST_URL",
                                                                 "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    parser.add_argument("--memory-requests", type=int, default=10_000,
                        help="requests served before worker memory is read again")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    tmp = Path(tempfile.mkdtemp(prefix="amanat-http-bench-"))
    amanat_url, drop_amanat = fresh_pg(args.database_url)
    bare_url, drop_bare = fresh_pg(args.database_url)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("REFERRAL_")}
    amanat_env = {**base_env, "REFERRAL_ENV": "development", "REFERRAL_DATABASE_URL": amanat_url,
                  "REFERRAL_KEYRING": str(tmp / "keyring.json"),
                  "REFERRAL_AUDIT_SIGNING_KEY": str(tmp / "audit.pem"), "REFERRAL_RATELIMIT_ENABLED": "false"}
    bare_env = {**base_env, "BENCH_DATABASE_URL": bare_url.replace("postgresql://", "postgresql+psycopg://", 1)}
    servers: list[subprocess.Popen] = []
    try:
        # The auditor has no unit or organisation: GET /api/v1/me is then the token, the user and nothing more.
        tokens = prepare_amanat(amanat_env, {**BENCH_USERS, "auditor": "auditor@demo.amanat.example"})
        a_port, b_port = free_port(), free_port()
        logs = {"amanat": tmp / "amanat-server.log", "bare": tmp / "bare-server.log"}
        servers.append(gunicorn("wsgi:app", amanat_env, a_port, args.workers, logs["amanat"]))
        servers.append(gunicorn("bench.bare_app:app", bare_env, b_port, args.workers, logs["bare"]))
        try:
            wait_up(f"http://127.0.0.1:{a_port}/healthz")
            wait_up(f"http://127.0.0.1:{b_port}/rows/0", ok_statuses=(404,))
        except SystemExit:
            print_server_logs(logs)  # why a server did not start: its last words
            raise
        body = submission_body()
        common = {"seconds": args.seconds, "connections": args.connections, "tmp": tmp}
        a_common = {**common, "server": (servers[0], make_url(amanat_url).database)}
        b_common = {**common, "server": (servers[1], make_url(bare_url).database)}
        print(f"gunicorn {args.workers} sync workers each, wrk {args.connections} connections, {args.seconds} s a run")
        # Warm both up, then measure.
        wrk(f"http://127.0.0.1:{b_port}/insert", method="POST", body=body, **{**common, "seconds": 2})
        wrk(f"http://127.0.0.1:{a_port}/api/v1/referrals", method="POST", body=body, token=tokens["focal"],
            **{**common, "seconds": 2})
        rss_before = workers_rss_mb(servers[0])
        bare_insert = wrk(f"http://127.0.0.1:{b_port}/insert", method="POST", body=body, **b_common)
        floor_insert = wrk(f"http://127.0.0.1:{b_port}/secure/insert", method="POST", body=body, token=BARE_TOKEN,
                           **b_common)
        floor_insert_one = wrk(f"http://127.0.0.1:{b_port}/secure/one/insert", method="POST", body=body,
                               token=BARE_TOKEN, **b_common)
        submit = wrk(f"http://127.0.0.1:{a_port}/api/v1/referrals", method="POST", body=body, token=tokens["focal"],
                     **a_common)
        case = json.loads(urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{a_port}/api/v1/referrals", data=body.encode(), method="POST",
            headers={"Authorization": f"Bearer {tokens['focal']}", "Content-Type": "application/json"})).read())
        bare_read = wrk(f"http://127.0.0.1:{b_port}/rows/1", **b_common)
        floor_read = wrk(f"http://127.0.0.1:{b_port}/secure/rows/1", token=BARE_TOKEN, **b_common)
        floor_read_one = wrk(f"http://127.0.0.1:{b_port}/secure/one/rows/1", token=BARE_TOKEN, **b_common)
        # Its own engine (autocommit): opened by a warm-up, like the other endpoints' by the earlier runs.
        wrk(f"http://127.0.0.1:{b_port}/secure/full/cases/1", token=BARE_TOKEN, **{**common, "seconds": 2})
        floor_read_full = wrk(f"http://127.0.0.1:{b_port}/secure/full/cases/1", token=BARE_TOKEN, **b_common)
        read = wrk(f"http://127.0.0.1:{a_port}/api/v1/referrals/{case['id']}", token=tokens["supervisor"], **a_common)
        # What a request costs before its own work (session 16): no case, no audit event, nothing written.
        bare_noop = wrk(f"http://127.0.0.1:{b_port}/healthz", **b_common)
        noop = wrk(f"http://127.0.0.1:{a_port}/healthz", **a_common)
        me = wrk(f"http://127.0.0.1:{a_port}/api/v1/me", token=tokens["auditor"], **a_common)
        # Memory: keep reading until about --memory-requests more have been served, then look again.
        soak = max(5, int(args.memory_requests / max(read["rps"], 1)) + 1)
        more = wrk(f"http://127.0.0.1:{a_port}/api/v1/referrals/{case['id']}", token=tokens["supervisor"],
                   **{**common, "seconds": soak})
        served = (submit["rps"] + read["rps"] + noop["rps"] + me["rps"]) * args.seconds + more["rps"] * soak
        rss_after = workers_rss_mb(servers[0])
        rows = [("submit (POST /api/v1/referrals)", submit, bare_insert, "submit"),
                ("audited read (GET /api/v1/referrals/{id})", read, bare_read, "read")]
        print(f"{'measure':44} {'amanat/s':>9} {'bare/s':>9} {'ratio':>6} {'goal':>5}  p50/p99 amanat  p50/p99 bare")
        failed = False
        for label, mine, bare, goal in rows:
            ratio = mine["rps"] / bare["rps"]
            ok = ratio >= GOALS[goal] and mine["errors"] == 0
            failed |= not ok
            print(f"{label:44} {mine['rps']:9.0f} {bare['rps']:9.0f} {ratio:5.2f}x {GOALS[goal]:4.1f}x"
                  f"  {mine['p50']:6.1f}/{mine['p99']:6.1f} ms  {bare['p50']:5.1f}/{bare['p99']:6.1f} ms"
                  f"  {'ok' if ok else 'BELOW GOAL'}{'' if not mine['errors'] else ' ERRORS ' + str(mine['errors'])}")
        # (Amanat's measure, Amanat, bare, [(the secure floor's name, its measure)]) for the context blocks below.
        kinds = (("submit", submit, bare_insert, [("secure insert floor, 3 statements", floor_insert),
                                                  ("secure insert floor, 1 statement", floor_insert_one)]),
                 ("audited read", read, bare_read, [("secure read floor, 3 statements", floor_read),
                                                    ("secure read floor, 1 statement", floor_read_one),
                                                    ("full case read floor, 1 statement", floor_read_full)]))
        print("context, not goals: the floor of any secure version (token hash lookup, AES-GCM envelope, one chained")
        print("audit row, commit; no validation, routing, permissions or timeline) on the bare stack, as a plain ORM")
        print("version writes it (token, row and audit append as 3 statements) and as 1 statement (BEGIN, the")
        print("statement, COMMIT: as many round trips as the bare call's own); and Amanat's full case read")
        print("rewritten outside the stack's rules: its answer (its content rule, consents, timeline, matches, seven")
        print("sealed fields, its audit event) from one statement in autocommit, plain dicts, no ORM, schemas or hooks:")
        for _label, mine, bare, floors in kinds:
            for label, floor in floors:
                print(f"  {label:42} {floor['rps']:9.0f}/s = {floor['rps'] / bare['rps']:4.2f}x bare;"
                      f" Amanat = {mine['rps'] / floor['rps']:4.2f}x this floor"
                      f"{'' if not floor['errors'] else ' ERRORS ' + str(floor['errors'])}")
        print("context, not goals: what a request costs before its own work, against the bare read (no case,")
        print("no audit event, nothing written):")
        for label, measured in (("bare GET /healthz (Flask alone)", bare_noop),
                                ("Amanat GET /healthz (its hooks, no database)", noop),
                                ("Amanat GET /api/v1/me (the token and its user)", me)):
            print(f"  {label:46} {measured['rps']:7.0f}/s = {measured['rps'] / bare_read['rps']:4.2f}x the bare read"
                  + (f"; CPU {measured['cpu_ms']:.2f} ms a request" if measured["cpu_ms"] else "")
                  + ("" if not measured["errors"] else " ERRORS " + str(measured["errors"])))
        if all(m["cpu_ms"] for _label, mine, bare, floors in kinds for m in (mine, bare, *(f for _, f in floors))):
            print("CPU per request (the whole machine over each run: server, PostgreSQL and wrk), and the bare")
            print("and floors' share of it:")
            for label, mine, bare, floors in kinds:
                print(f"  {label:42} {mine['cpu_ms']:6.2f} ms; bare {bare['cpu_ms']:5.2f} ms"
                      f" ({bare['cpu_ms'] / mine['cpu_ms']:4.2f}x), floors "
                      + ", ".join(f"{floor['cpu_ms']:5.2f} ms ({floor['cpu_ms'] / mine['cpu_ms']:4.2f}x)"
                                  for _name, floor in floors))
            print("of which the app's workers and its PostgreSQL backends (the rest: wrk, the kernel, other work):")
            for label, mine, bare, floors in kinds:
                measures = (("Amanat", mine), ("bare", bare),
                            *((("full read " if name.startswith("full") else "") + name.split(", ")[1], f)
                              for name, f in floors))
                print(f"  {label:14}" + "; ".join(
                    f"{who} {m['app_ms']:.2f} + " + ("?" if m["pg_ms"] is None else f"{m['pg_ms']:.2f}") + " ms"
                    for who, m in measures if m["app_ms"] is not None))
        print(f"worker memory (RSS, MB) after warm-up {', '.join(f'{m:.0f}' for m in rss_before)}; "
              f"after about {served:,.0f} more requests {', '.join(f'{m:.0f}' for m in rss_after)}")
        measured = (submit, read, more, bare_insert, bare_read, bare_noop, noop, me, floor_insert, floor_insert_one,
                    floor_read, floor_read_one, floor_read_full)
        if any(m["errors"] for m in measured):  # the servers' own words on what went wrong, before tmp goes
            print_server_logs(logs)
        sys.exit(1 if failed and args.strict else 0)
    finally:
        for proc in servers:
            stop(proc)
        drop_amanat()
        drop_bare()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
