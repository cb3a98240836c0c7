"""Throughput with 1, 2 and 3 daemon instances on PostgreSQL, and 1 on SQLite.

Same simulators and workload as ``bench/run.py`` (each simulator in its own process, one customer
question per ticket, all seeded at once); only the store and the number of daemons change. Each
PostgreSQL run gets a fresh schema of the database in ``--pg`` (default: the local ``test``
database), dropped afterwards. Prints messages/s end to end and duplicates per setup.

    python bench/instances.py --tickets 1000 [--answer-time 0] [--setups sqlite:1,pg:1,pg:2,pg:3]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml
from run import _end, daemon_config, machine, simulators, wait_until
from sqlalchemy import create_engine, text

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def run_setup(args: argparse.Namespace, store: str, instances: int, workdir: Path) -> dict:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(args.pg) if store == "pg" else None
    if admin is not None:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with simulators(args.answer_time, workdir) as ([zendesk], uppzy):
            zendesk.call("users", n=args.tickets)
            config = daemon_config(args, [zendesk], uppzy, workdir / "connector.db")
            if admin is not None:
                sep = "&" if "?" in args.pg else "?"
                config["database"]["url"] = f"{args.pg}{sep}options=-csearch_path%3D{schema}"
            config["engine"]["instance_id"] = "${BENCH_INSTANCE}"
            config["ops"] = {"enabled": False}
            path = workdir / "config.yaml"
            path.write_text(yaml.safe_dump(config))
            for n in range(instances):
                env = {**os.environ, "BENCH_INSTANCE": f"bench-{n}"}
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "connector", "run", "--config", str(path),
                     "--log-level", "warning"],
                    stdout=subprocess.DEVNULL, stderr=(workdir / f"daemon-{n}.log").open("ab"),
                    stdin=subprocess.DEVNULL, cwd=workdir, env=env,
                ))
            wait_until(lambda: zendesk.call("progress")["calls"].get("incremental_tickets", 0)
                       > 0, 60, "the first poll")
            time.sleep(1.0)
            zendesk.call("seed", n=args.tickets, rate=0)
            wait_until(lambda: zendesk.call("progress")["posted"] >= args.tickets, args.timeout,
                       f"{args.tickets} notes", every=0.5)
            report = zendesk.call("report")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            _end(proc, grace=20)
        if admin is not None:
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()
    visible = [t for t in report["visible_at"].values()]
    posted = [t for times in report["notes_at"].values() for t in times]
    notes_per_ticket = [len(times) for times in report["notes_at"].values()]
    seconds = max(posted) - min(visible)
    return {"setup": f"{'PostgreSQL' if store == 'pg' else 'SQLite'}, {instances} instance(s)",
            "posted": len(posted), "duplicates": sum(n - 1 for n in notes_per_ticket if n > 1),
            "rate": len(posted) / seconds if seconds > 0 else 0.0, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=1000)
    parser.add_argument("--answer-time", default="0")
    parser.add_argument("--setups", default="sqlite:1,pg:1,pg:2,pg:3")
    parser.add_argument("--pg", default=os.environ.get("CONNECTOR_TEST_DATABASE_URL", PG_DEFAULT))
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--tick", default="0.5s")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--adapter-poll", default="1s")
    parser.add_argument("--uppzy-poll", default="2.5s")
    parser.add_argument("--answer-timeout", default="2m")
    parser.add_argument("--uppzy-mode", default="async", choices=("async", "sync"))
    parser.add_argument("--sync-concurrency", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    rows = []
    for spec in args.setups.split(","):
        store, _, count = spec.partition(":")
        with tempfile.TemporaryDirectory(prefix="bench-instances-") as tmp:
            row = run_setup(args, store, int(count or 1), Path(tmp))
        rows.append(row)
        print(f"{row['setup']}: {row['rate']:.1f} messages/s, {row['posted']} notes, "
              f"{row['duplicates']} duplicates", flush=True)
    print(f"\n{args.tickets} tickets, answer time {args.answer_time}, tick {args.tick}, "
          f"{args.workers} workers per instance; {machine()}")
    print("| setup | messages/s end to end | notes | duplicates |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['setup']} | {row['rate']:.1f} | {row['posted']} | {row['duplicates']} |")


if __name__ == "__main__":
    main()
