"""Where a request's time goes: statements, SQL time and Python time per request, and a pyinstrument profile.

    .venv/bin/python bench/profile_requests.py [--database-url URL] [--requests 300] [--profile read|submit]
    .venv/bin/python bench/profile_requests.py --instructions submit|read [--requests 400]
    .venv/bin/python bench/profile_requests.py --stack bare|secure|secure-one|secure-full [--instructions submit|read]
    .venv/bin/python bench/profile_requests.py --instructions health|me|validate   # or --profile ...

In process (Flask's test client, no HTTP server) on a fresh PostgreSQL database
beside URL's, dropped afterwards: migrates, seeds the demo, then submits and
reads cases as ``make bench`` does, counting statements and their time.

``--instructions`` runs the same under valgrind's callgrind, counting only while the chosen requests
run, and prints the app's instructions per request: the same count run after run whatever else the
host is doing (seconds drift by a third on this shared machine), so two versions of the code can be
compared in one or two runs. PostgreSQL's work is not in it. Slow: about a minute to set up and 0.3 s
a request.

``--stack bare`` (or ``secure``, ``secure-one``) measures the same way the bare-stack app ``make bench``
compares Amanat with (bench/bare_app.py: its plain insert and read, or its secure floor in three
statements or in one), so the app's share of a ratio
can be told apart from PostgreSQL's and the HTTP server's.

``--stack secure-full`` reads through the full case read's floor (session 16; its submit is
``secure-one``'s). ``health``, ``me`` and ``validate`` measure parts of a request alone (session 16): ``GET /healthz`` (what
any request costs: Flask and Amanat's hooks; with ``--stack bare``, Flask alone), ``GET /api/v1/me`` as the
auditor (a bearer token and its user in one statement; nothing written), and the submission's schema
loading the bench's body (no request).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flask_migrate import upgrade  # noqa: E402
from sqlalchemy import event  # noqa: E402

from bench.trust_core import fresh_pg  # noqa: E402
from referral import create_app  # noqa: E402
from referral.extensions import db  # noqa: E402


class SqlMeter:
    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self.statements: list[str] = []
        self._started = 0.0

    def before(self, conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        self._started = time.perf_counter()

    def after(self, conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        self.seconds += time.perf_counter() - self._started
        self.count += 1
        self.statements.append(statement)  # shortened only when shown: the meter's own work is measured too


def backends_cpu(url: str) -> float:
    """CPU seconds the server's backends for this database have used (they run on this host: /proc)."""
    import os

    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)  # not the app's: its statements are not counted
    with engine.connect() as conn:
        pids = conn.exec_driver_sql("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                    "AND pid <> pg_backend_pid()").scalars().all()
    engine.dispose()
    from bench.http_bench import process_ticks

    return process_ticks(pids) / os.sysconf("SC_CLK_TCK")  # a backend not on this host counts nothing


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--profile", choices=["read", "submit", "health", "me", "validate"], default=None)
    parser.add_argument("--show-sql", action="store_true")
    parser.add_argument("--cprofile", action="store_true", help="cProfile on CPU time instead of pyinstrument")
    parser.add_argument("--sort", default="tottime", help="with --cprofile: pstats sort key (tottime, cumulative)")
    parser.add_argument("--callees", default="", help="with --cprofile: also list what functions matching this "
                                                      "regular expression call, and their cost (e.g. '_flush')")
    parser.add_argument("--callers", default="", help="with --cprofile: also list who calls functions matching this "
                                                      "regular expression, and how often (e.g. 'hostname')")
    parser.add_argument("--instructions", choices=["read", "submit", "health", "me", "validate"], default=None,
                        help="count the app's instructions per request of this kind under callgrind (health: "
                             "GET /healthz, what any request costs; me: GET /api/v1/me, any request with a "
                             "token; validate: the submission's schema alone, no request)")
    parser.add_argument("--stack", choices=["amanat", "bare", "secure", "secure-one", "secure-full"], default="amanat",
                        help="the app measured: Amanat, or bench/bare_app.py's plain or secure endpoints "
                             "(secure-full: the full case read's floor; its submit is secure-one's)")
    args = parser.parse_args()
    if args.instructions and args.profile and args.instructions != args.profile:
        parser.error("--profile and --instructions name one kind of request at a time")
    if args.stack != "amanat" and {args.instructions, args.profile} & {"me", "validate"}:
        parser.error("me and validate are Amanat's; the bare app has submit, read and health")
    if args.instructions and not os.environ.get(UNDER_CALLGRIND):
        sys.exit(count_instructions(args))
    counting = args.instructions if os.environ.get(UNDER_CALLGRIND) else None
    if args.stack != "amanat":
        return measure_bare(args, counting)
    tmp = Path(tempfile.mkdtemp(prefix="amanat-profile-"))
    url, drop = fresh_pg(args.database_url)
    app = create_app({"ENV_NAME": "development", "SQLALCHEMY_DATABASE_URI": url,
                      "KEYRING_PATH": str(tmp / "keyring.json"), "AUDIT_SIGNING_KEY_PATH": str(tmp / "audit.pem"),
                      "RATELIMIT_ENABLED": False,
                      # Under callgrind, a cheap hash for the demo's passwords (sign-ins are not measured).
                      **({"ARGON2_PROFILE": "fast-tests"} if counting else {})})
    try:
        with app.app_context():
            upgrade()
            done = app.test_cli_runner().invoke(args=["demo", "seed"])
            assert done.exit_code == 0, done.output
            from referral.accounts.auth import issue_token
            from referral.accounts.models import User

            tokens = {}
            for key, email in (("focal", "focal.alamudun@demo.amanat.example"),
                               ("supervisor", "supervisor.alamudun@demo.amanat.example"),
                               ("auditor", "auditor@demo.amanat.example")):  # no unit, no organisation
                user = db.session.scalar(db.select(User).where(User.email == email))
                tokens[key] = issue_token(user)[0]
            db.session.commit()
            meter = SqlMeter()
            event.listen(db.engine, "before_cursor_execute", meter.before)
            event.listen(db.engine, "after_cursor_execute", meter.after)
        from bench.http_bench import submission_body

        template = submission_body()
        client = app.test_client()

        def submit(i: int):  # type: ignore[no-untyped-def]
            return client.post("/api/v1/referrals", data=template.replace("TAGTAG", f"p{i}"),
                               headers={"Authorization": f"Bearer {tokens['focal']}",
                                        "Content-Type": "application/json"})

        case_id = submit(0).get_json()["id"]

        def read(i: int):  # type: ignore[no-untyped-def]
            return client.get(f"/api/v1/referrals/{case_id}", headers={"Authorization": f"Bearer {tokens['supervisor']}"})

        calls: list[tuple[str, Any, int]] = [("submit", submit, 201), ("read", read, 200)]
        chosen = args.instructions or args.profile
        if chosen in ("health", "me", "validate"):  # a part of a request, measured alone
            from referral.api import _schema
            from referral.referrals.schemas import Submission

            body = template.replace("TAGTAG", "p0")

            class Loaded:  # what measure() asks of a response
                status_code = 200

            def validate(i: int):  # type: ignore[no-untyped-def]
                _schema(Submission).load(json.loads(body))
                return Loaded

            auditor = {"Authorization": f"Bearer {tokens['auditor']}"}  # no unit, no organisation: one statement
            part = {"health": lambda i: client.get("/healthz"),
                    "me": lambda i: client.get("/api/v1/me", headers=auditor), "validate": validate}[chosen]
            calls = [(chosen, part, 200)]
        if chosen == "validate":  # the schema alone, in the contexts a request would give it
            with app.app_context(), app.test_request_context():
                measure(args, counting, meter, url, tuple(calls))
        else:
            measure(args, counting, meter, url, tuple(calls))
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        drop()


def measure(args: argparse.Namespace, counting: str | None, meter: SqlMeter, url: str,
            calls: tuple[tuple[str, Any, int], ...]) -> None:
    """Warm each kind of request up, then time (or count) ``args.requests`` of it and print the figures."""
    for name, call, status in calls:
        for i in range(20):  # warm up
            call(i + 1000)
        meter.count, meter.seconds, meter.statements = 0, 0.0, []
        server_started = backends_cpu(url)
        started, cpu_started = time.perf_counter(), time.process_time()
        profiler = None
        if args.profile == name and args.cprofile:
            import cProfile

            profiler = cProfile.Profile(time.process_time)  # CPU time: a busy machine does not skew it
            profiler.enable()
        elif args.profile == name:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0002)
            profiler.start()
        if counting == name:
            callgrind("on")
        for i in range(args.requests):
            response = call(i + 2000)
            assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:300])
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        if counting == name:
            callgrind("off")
        server = backends_cpu(url) - server_started
        if profiler is not None:
            profiler.disable() if args.cprofile else profiler.stop()
        n = args.requests
        print(f"{name:7} {wall / n * 1000:6.2f} ms/request, {meter.count / n:5.1f} statements, "
              f"SQL {meter.seconds / n * 1000:5.2f} ms, Python {(wall - meter.seconds) / n * 1000:5.2f} ms, "
              f"this process's CPU {cpu / n * 1000:5.2f} ms (steadier than wall time on a busy host), "
              f"PostgreSQL's {server / n * 1000:5.2f} ms")
        if args.show_sql:
            print("\n".join(f"    {' '.join(s.split())[:140]}" for s in meter.statements[: meter.count // n]))
        if profiler is not None and args.cprofile:
            import pstats

            stats = pstats.Stats(profiler)
            stats.sort_stats(args.sort).print_stats(60)
            if args.callees:
                stats.sort_stats("cumulative").print_callees(args.callees)
            if args.callers:
                stats.sort_stats("cumulative").print_callers(args.callers)
            print(by_package(stats))
        elif profiler is not None:
            print(profiler.output_text(unicode=False, color=False, show_all=False))


def measure_bare(args: argparse.Namespace, counting: str | None) -> None:
    """The same measures of bench/bare_app.py's endpoints (``--stack bare``: plain; ``secure``: the floor)."""
    url, drop = fresh_pg(args.database_url)
    os.environ["BENCH_DATABASE_URL"] = url.replace("postgresql://", "postgresql+psycopg://", 1)
    from bench import bare_app
    from bench.http_bench import BARE_TOKEN, submission_body

    app = bare_app.create_app()
    try:
        client = app.test_client()
        body = submission_body().encode()
        headers = {"Authorization": f"Bearer {BARE_TOKEN}"} if args.stack != "bare" else {}
        # secure-full: the full case read's floor; it has no insert of its own, so its "submit" is secure-one's.
        prefix = {"bare": "", "secure": "/secure", "secure-one": "/secure/one", "secure-full": "/secure/one"}[args.stack]
        row = client.post(f"{prefix}/insert", data=body, headers=headers).get_json()["id"]
        read_path = "/secure/full/cases/1" if args.stack == "secure-full" else f"{prefix}/rows/{row}"

        def submit(i: int):  # type: ignore[no-untyped-def]
            return client.post(f"{prefix}/insert", data=body, headers=headers)

        def read(i: int):  # type: ignore[no-untyped-def]
            return client.get(read_path, headers=headers)

        meter = SqlMeter()
        with app.app_context():
            engine = bare_app.db.engine
        for counted in (engine, app.extensions["full_read_engine"]):  # the full read has its own, in autocommit
            event.listen(counted, "before_cursor_execute", meter.before)
            event.listen(counted, "after_cursor_execute", meter.after)
        calls: list[tuple[str, Any, int]] = [("submit", submit, 201), ("read", read, 200)]
        if "health" in (args.instructions, args.profile):  # what any request costs the bare app
            calls.append(("health", lambda i: client.get("/healthz"), 200))
        measure(args, counting, meter, url, tuple(calls))
    finally:
        with app.app_context():
            bare_app.db.session.remove()
            bare_app.db.engine.dispose()
        app.extensions["full_read_engine"].dispose()
        drop()


UNDER_CALLGRIND = "AMANAT_UNDER_CALLGRIND"


def callgrind(state: str) -> None:
    """Start or stop counting in this process, which runs under callgrind."""
    # callgrind_control exits 0 even when it finds no such process: its answer says.
    done = subprocess.run(["callgrind_control", f"--instr={state}", str(os.getpid())], capture_output=True, text=True)
    if "OK" not in done.stdout:
        raise RuntimeError(f"callgrind_control could not switch counting {state}: {done.stdout}{done.stderr}")


def count_instructions(args: argparse.Namespace) -> int:
    """Run this script again under callgrind, counting only while ``args.instructions`` requests run."""
    import shutil

    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("--instructions needs valgrind: apt-get install valgrind", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="amanat-callgrind-"))
    out = work / "callgrind.out"
    command = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
               sys.executable, __file__, "--database-url", args.database_url, "--requests", str(args.requests),
               "--instructions", args.instructions, "--stack", args.stack]
    # A fixed hash seed: dictionaries and sets lay out the same way in every run.
    done = subprocess.run(command, env={**os.environ, UNDER_CALLGRIND: "1", "PYTHONHASHSEED": "0"},
                          capture_output=True, text=True)
    try:
        if done.returncode != 0 or not out.exists():
            print(done.stdout, "\n".join(done.stderr.splitlines()[-30:]), sep="\n", file=sys.stderr)
            return done.returncode or 1
        # "totals:" sums what was counted ("summary:" stays 0 when counting starts switched off).
        instructions = next(int(line.split()[1]) for line in out.read_text().splitlines()
                            if line.startswith("totals:"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    label = args.instructions if args.stack == "amanat" else f"{args.stack} {args.instructions}"
    print(f"{label:7} {instructions / args.requests / 1e6:8.2f} M instructions a request in the app "
          f"({args.requests} requests; PostgreSQL's not counted)")
    return 0


def by_package(stats) -> str:  # type: ignore[no-untyped-def]
    """Own CPU time summed by where the code lives (a library, the standard library, ours)."""
    totals: dict[str, float] = {}
    for (filename, _line, _name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():
        if "site-packages/" in filename:
            key = filename.split("site-packages/")[1].split("/")[0].split(".")[0]
        elif f"{ROOT}/" in filename:
            parts = filename.split(f"{ROOT}/")[1].split("/")
            key = "/".join(parts[:2])
        elif filename.startswith("~") or filename.startswith("<"):
            key = "builtins"
        else:
            key = "stdlib"
        totals[key] = totals.get(key, 0.0) + tottime
    whole = sum(totals.values()) or 1.0
    return "\n".join(f"  {key:32} {seconds:7.3f} s {seconds / whole:6.1%}"
                     for key, seconds in sorted(totals.items(), key=lambda kv: -kv[1])[:25])


if __name__ == "__main__":
    main()
