"""The whole pipeline, measured: the real daemon over real HTTP against the simulators.

For each size it starts the Zendesk and Uppzy simulators in processes of their own
(``bench/sims.py``), starts ``python -m connector run`` on a fresh SQLite file, waits until the
daemon has polled once, creates one ticket with one customer question per requested message, and
waits until every ticket carries the daemon's note and the daemon has gone quiet. It then prints
one table: throughput, the daemon's CPU and peak memory, HTTP calls per message by endpoint,
status polls per request and latencies. ``--baseline`` runs ``bench/baseline.py`` (a plain
sequential loop) on the same workload and adds its column and the ratios.

    python bench/run.py --sizes 1000,10000 --answer-time 0 --baseline
    python bench/run.py --tickets 1000 --answer-time 5-30

Everything listens on 127.0.0.1; every process started here is stopped on the way out.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

HERE = Path(__file__).resolve().parent
API_KEY = "bench-key"
ZD_TOKEN = "bench-zd-token"
BOT_EMAIL = "bot@example.com"
ADAPTER = "bench"
HELPDESK_READS = ("incremental_tickets", "ticket_comments", "ticket_show", "custom_statuses",
                  "users_me")
START_TIMEOUT = 60.0


# ----- processes ------------------------------------------------------------------------------
class SimProcess:
    """A simulator process and its stdin/stdout JSON-line control channel."""

    def __init__(self, kind: str, answer_time: str, log: Path, *extra: str) -> None:
        self.kind = kind
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "sims.py"), kind, "--answer-time", answer_time, *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open("ab"), text=True,
        )
        first = self._read(START_TIMEOUT)
        self.url: str = first["url"]
        self.base_url: str = first["base_url"]

    def call(self, cmd: str, timeout: float = 120.0, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self.proc.stdin.flush()
        return self._read(timeout)

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError(f"{self.kind} simulator did not answer (exit {self.proc.poll()})")
        return json.loads(line)

    def stop(self) -> None:
        with suppress(Exception):
            self.call("stop", timeout=5)
        _end(self.proc)


def _end(proc: subprocess.Popen[Any], grace: float = 10.0) -> int | None:
    """SIGTERM, then SIGKILL after ``grace`` seconds: nothing started here outlives the run."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return proc.returncode


class Meter:
    """CPU seconds and memory of one process, sampled in the background for the peak."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak_rss = 0
        self._cpu = 0.0
        self.system = 0.0  # the system part of the last ``cpu`` reading
        self.switches = 0  # the threads' context switches at the last ``cpu`` reading
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="meter", daemon=True)
        self._thread.start()

    def cpu(self) -> float:
        """User + system seconds; the last reading once the process is gone."""
        with suppress(psutil.Error):
            times = self.process.cpu_times()
            self._cpu, self.system = times.user + times.system, times.system
            self.switches = self._switches()
        return self._cpu

    def _switches(self) -> int:
        """Context switches of all the process's threads, voluntary or not: each is a thread
        that blocked (on a socket, a lock, the GIL) or was preempted."""
        total = 0
        with suppress(OSError):
            for task in Path(f"/proc/{self.process.pid}/task").iterdir():
                with suppress(OSError):
                    for line in (task / "status").read_text().splitlines():
                        if "ctxt_switches:" in line:
                            total += int(line.split()[1])
        return max(total, self.switches)

    def rss(self) -> int:
        return self.process.memory_info().rss

    def high_water(self) -> int:
        """The kernel's own peak (VmHWM): catches spikes between two samples."""
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return max(self.peak_rss, int(line.split()[1]) * 1024)
        except OSError:
            pass
        return self.peak_rss

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            with suppress(psutil.Error):
                self.peak_rss = max(self.peak_rss, self.rss())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


@contextmanager
def simulators(answer_time: str, workdir: Path,
               helpdesks: int = 1) -> Iterator[tuple[list[SimProcess], SimProcess]]:
    """``helpdesks`` Zendesk simulators (one per adapter) and one Uppzy simulator."""
    zendesks: list[SimProcess] = []
    uppzy = None
    try:
        for n in range(helpdesks):
            suffix = f"-{n + 1}" if n else ""
            zendesks.append(SimProcess("zendesk", answer_time, workdir / f"zendesk{suffix}.log"))
        uppzy = SimProcess("uppzy", answer_time, workdir / "uppzy.log")
        yield zendesks, uppzy
    finally:
        for sim in (uppzy, *zendesks):
            if sim is not None:
                sim.stop()


def adapter_name(n: int) -> str:
    """The n-th helpdesk's adapter name; its session ids are ``<name>-<ticket>``."""
    return ADAPTER if n == 0 else f"{ADAPTER}-{n + 1}"


def shares(size: int, helpdesks: int) -> list[int]:
    """``size`` tickets spread over the helpdesks as evenly as they divide."""
    return [size // helpdesks + (1 if n < size % helpdesks else 0) for n in range(helpdesks)]


# ----- one run --------------------------------------------------------------------------------
@dataclass
class Result:
    label: str
    tickets: int
    answer_time: str
    posted: int = 0
    seconds: float = 0.0  # first message visible -> last note posted
    cpu: float = 0.0  # seconds of CPU of the measured process over the run
    system_cpu: float = 0.0  # the part of ``cpu`` spent in the kernel (I/O, thread switches)
    switches: int = 0  # context switches of the measured process's threads over the run
    idle_cpu: float | None = None  # share of one core used while idle before the run
    sims_cpu: float | None = None  # CPU seconds of both simulators over the run
    peak_rss: int = 0
    startup_rss: int = 0
    helpdesk_calls: dict[str, int] = field(default_factory=dict)
    uppzy_calls: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    overhead: list[float] = field(default_factory=list)  # posted - visible - answer time
    lateness: list[float] = field(default_factory=list)  # posted - answer ready
    duplicates: int = 0
    exit_code: int | None = None
    load: float = 0.0  # the machine's 1-minute load average at the end (noise indicator)

    @property
    def rate(self) -> float:
        return self.posted / self.seconds if self.seconds > 0 else 0.0


def daemon_config(args: argparse.Namespace, zendesks: list[SimProcess], uppzy: SimProcess,
                  db: Path) -> dict[str, Any]:
    return {
        "uppzy": {"base_url": uppzy.base_url, "api_key": API_KEY, "site_id": "site-1",
                  "poll_interval": args.uppzy_poll, "answer_timeout": args.answer_timeout,
                  "mode": args.uppzy_mode, "sync_concurrency": args.sync_concurrency},
        "database": {"url": f"sqlite:///{db}"},
        "engine": {"workers": args.workers, "tick": args.tick, "batch_size": args.batch_size},
        "ops": {"listen": "127.0.0.1:0"},  # never collide with a daemon already on 9464
        "adapters": [{
            "name": adapter_name(n), "type": "zendesk", "url": zendesk.url,
            "auth": {"email": BOT_EMAIL, "api_token": ZD_TOKEN},
            "poll_interval": args.adapter_poll, "start_from": "10m",
        } for n, zendesk in enumerate(zendesks)],
    }


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def run_daemon(args: argparse.Namespace, size: int, workdir: Path) -> Result:
    label = "connector" if args.helpdesks == 1 else f"connector, {args.helpdesks} helpdesks"
    result = Result(label, size, args.answer_time)
    with simulators(args.answer_time, workdir, args.helpdesks) as (zendesks, uppzy):
        for zendesk, share in zip(zendesks, shares(size, len(zendesks)), strict=True):
            zendesk.call("users", n=share)
        config = workdir / "config.yaml"
        config.write_text(yaml.safe_dump(daemon_config(args, zendesks, uppzy,
                                                       workdir / "connector.db")))
        log = workdir / "daemon.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "connector", "run", "--config", str(config),
             "--log-level", args.log_level],
            stdout=subprocess.DEVNULL, stderr=log.open("ab"), stdin=subprocess.DEVNULL,
            cwd=workdir,
        )
        meter = Meter(proc.pid)
        try:
            wait_until(lambda: all(_polled(z, proc) for z in zendesks), START_TIMEOUT,
                       "the daemon's first poll")
            result.startup_rss = meter.rss()
            cpu_before_idle = meter.cpu()
            time.sleep(args.idle)
            result.idle_cpu = (meter.cpu() - cpu_before_idle) / args.idle
            sims = [Meter(sim.proc.pid) for sim in (*zendesks, uppzy)]
            try:
                sims_before = sum(m.cpu() for m in sims)
                with profiler(args.profile, proc.pid, size, wall=args.profile_wall):
                    result.cpu, result.system_cpu, result.switches = _drive(
                        args, size, zendesks, proc, meter, args.timeout)
                result.sims_cpu = sum(m.cpu() for m in sims) - sims_before
            finally:
                for m in sims:
                    m.close()
            result.peak_rss = meter.high_water()
        finally:
            meter.close()
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            result.exit_code = _end(proc, grace=20)
        _collect(result, zendesks, uppzy)
    return result


@contextmanager
def profiler(target: Path | None, pid: int, size: int, *, wall: bool = False) -> Iterator[None]:
    """py-spy on the daemon for the measured part of the run (``--profile``).

    Only the thread holding the GIL is sampled (``--gil``): that is where the daemon's Python
    CPU goes, without the threads that merely wait on a socket or on SQLite's lock. ``wall``
    (``--profile-wall``) samples every thread, idle or not, each under its own name: where the
    time of a message goes when the daemon is not using its CPU (waiting on the writer, on
    HTTP, on the next tick).

    ``.svg`` gives a flame graph, ``.json`` speedscope, anything else py-spy's raw collapsed
    stacks (one line per stack with its sample count: easy to grep and sum).
    """
    if target is None:
        yield
        return
    path = target.with_name(f"{target.stem}-{size}{target.suffix}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".svg": "flamegraph", ".json": "speedscope"}.get(path.suffix, "raw")
    spy = subprocess.Popen(
        [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid),
         "--rate", "200", *(["--idle", "--threads"] if wall else ["--gil"]),
         "--format", fmt, "--output", str(path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _end(spy)
        print(f"  profile: {path}", file=sys.stderr)


def _polled(zendesk: SimProcess, proc: subprocess.Popen[Any]) -> bool:
    if proc.poll() is not None:
        raise RuntimeError(f"the daemon exited with {proc.returncode} before polling")
    return zendesk.call("progress")["calls"].get("incremental_tickets", 0) > 0


def _drive(args: argparse.Namespace, size: int, zendesks: list[SimProcess],
           proc: subprocess.Popen[Any] | None, meter: Meter,
           timeout: float) -> tuple[float, float, int]:
    """Seed, wait for every note, then for the helpdesk calls to stop; CPU used until then,
    its system part and the context switches."""
    start_cpu, start_system, start_switches = meter.cpu(), meter.system, meter.switches
    helpdesks = len(zendesks)
    for zendesk, share in zip(zendesks, shares(size, helpdesks), strict=True):
        zendesk.call("seed", n=share, rate=args.rate / helpdesks)
    deadline = time.monotonic() + timeout
    last_activity, last_cpu, last_calls = time.monotonic(), meter.cpu(), -1
    last_system, last_switches = meter.system, meter.switches
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the process exited with {proc.returncode} during the run")
        progress = [zendesk.call("progress") for zendesk in zendesks]
        # The change feed is polled on a timer; any other helpdesk call is work for a message.
        calls = sum(n for p in progress for e, n in p["calls"].items()
                    if e != "incremental_tickets")
        now = time.monotonic()
        if calls != last_calls:
            last_activity, last_cpu, last_calls = now, meter.cpu(), calls
            last_system, last_switches = meter.system, meter.switches
        if all(p["seeded"] for p in progress) and sum(p["posted"] for p in progress) >= size \
                and now - last_activity >= args.settle:
            break
        time.sleep(0.2)
    else:
        print(f"  ! stopped waiting after {timeout:.0f}s", file=sys.stderr)
        last_cpu, last_system, last_switches = meter.cpu(), meter.system, meter.switches
    return last_cpu - start_cpu, last_system - start_system, last_switches - start_switches


def _collect(result: Result, zendesks: list[SimProcess], uppzy: SimProcess) -> None:
    """Latencies and call counts from the simulators' own records; a ticket is known by its
    adapter and its id, since every helpdesk numbers its tickets from 1."""
    result.load = os.getloadavg()[0]
    up = uppzy.call("report")
    result.uppzy_calls = up["calls"]
    visible: dict[tuple[str, int], float] = {}
    notes: dict[tuple[str, int], list[float]] = {}
    for n, zendesk in enumerate(zendesks):
        zd = zendesk.call("report")
        for endpoint, count in zd["calls"].items():
            result.helpdesk_calls[endpoint] = result.helpdesk_calls.get(endpoint, 0) + count
        visible.update({(adapter_name(n), int(k)): v for k, v in zd["visible_at"].items()})
        notes.update({(adapter_name(n), int(k)): v for k, v in zd["notes_at"].items()})
    result.posted = len(notes)
    result.duplicates = sum(len(v) - 1 for v in notes.values())
    if notes:
        result.seconds = max(v[0] for v in notes.values()) - min(visible.values())
    requests: dict[tuple[str, int], dict[str, Any]] = {}
    for req in up["requests"]:
        adapter, ticket = req["session_id"].rsplit("-", 1)
        requests.setdefault((adapter, int(ticket)), req)
    result.requests = len(up["requests"])
    for ticket, times in notes.items():
        req = requests.get(ticket)
        if req is None or req["completed_at"] is None:
            continue
        answer_time = req["completed_at"] - req["created_at"]
        result.overhead.append(times[0] - visible[ticket] - answer_time)
        result.lateness.append(times[0] - req["completed_at"])


def run_baseline(args: argparse.Namespace, size: int, workdir: Path) -> Result:
    result = Result("baseline", size, args.answer_time)
    with simulators(args.answer_time, workdir) as ([zendesk], uppzy):
        zendesk.call("users", n=size)
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "baseline.py"), "--zendesk", zendesk.url,
             "--uppzy", uppzy.base_url, "--tickets", str(size),
             "--timeout", str(args.baseline_timeout)],
            stdout=subprocess.DEVNULL, stderr=(workdir / "baseline.log").open("ab"),
            stdin=subprocess.DEVNULL,
        )
        meter = Meter(proc.pid)
        try:
            time.sleep(1.0)  # its imports; it polls an empty feed until the tickets appear
            result.startup_rss = meter.rss()
            result.cpu, result.system_cpu, result.switches = _drive(
                args, size, [zendesk], None, meter, args.baseline_timeout + 10)
            result.peak_rss = meter.high_water()
        finally:
            meter.close()
            result.exit_code = _end(proc)
        _collect(result, [zendesk], uppzy)
    return result


# ----- the table ------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def rows(r: Result, endpoints: list[str]) -> dict[str, str]:
    n = max(1, r.posted)
    reads = sum(r.helpdesk_calls.get(e, 0) for e in HELPDESK_READS)
    status_polls = r.uppzy_calls.get("chat_status", 0)
    table = {
        "messages (tickets)": f"{r.tickets:,}",
        "answer time (s)": r.answer_time,
        "drafts posted (duplicates)": f"{r.posted:,} ({r.duplicates})",
        "messages/s end to end": _fmt(r.rate, 1 if r.rate >= 10 else 2),
        "CPU ms per message": _fmt(1000 * r.cpu / n),
        "&nbsp;&nbsp;of which system (kernel)": _fmt(1000 * r.system_cpu / n),
        "context switches per message": _fmt(r.switches / n, 0),
        "simulators' CPU ms per message": _fmt(None if r.sims_cpu is None else
                                               1000 * r.sims_cpu / n),
        "CPU per message / simulators'": _fmt(r.cpu / r.sims_cpu if r.sims_cpu else None),
        "idle CPU (% of a core)": _fmt(None if r.idle_cpu is None else 100 * r.idle_cpu, 1),
        "peak RSS (MB)": _fmt(r.peak_rss / 2**20, 0),
        "RSS after start (MB)": _fmt(r.startup_rss / 2**20, 0),
        "helpdesk reads per message": _fmt(reads / n),
    }
    for endpoint in endpoints:
        calls = r.helpdesk_calls.get(endpoint, 0) + r.uppzy_calls.get(endpoint, 0)
        table[f"  {endpoint} calls/message"] = _fmt(calls / n)
    table["status polls per request"] = _fmt(status_polls / r.requests if r.requests else None)
    table["latency - answer time p50 / p95 (s)"] = (
        f"{_fmt(percentile(r.overhead, 50))} / {_fmt(percentile(r.overhead, 95))}")
    table["posted - answer ready p50 / p95 (s)"] = (
        f"{_fmt(percentile(r.lateness, 50))} / {_fmt(percentile(r.lateness, 95))}")
    table["run time (s)"] = _fmt(r.seconds, 1)
    table["machine load average at the end"] = _fmt(r.load)
    return table


def render(results: list[Result]) -> str:
    endpoints = sorted({e for r in results for e in (*r.helpdesk_calls, *r.uppzy_calls)})
    columns = [rows(r, endpoints) for r in results]
    names = list(dict.fromkeys(name for column in columns for name in column))
    header = ["", *(f"{r.label} {r.tickets:,}" for r in results)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in names:
        lines.append("| " + " | ".join([name.strip() if not name.startswith("  ") else
                                        "&nbsp;&nbsp;" + name.strip(),
                                        *(c.get(name, "-") for c in columns)]) + " |")
    for base in (r for r in results if r.label == "baseline"):
        for own in (r for r in results if r.label == "connector" and r.tickets == base.tickets):
            ratio = own.rate / base.rate if base.rate else float("inf")
            cpu_own, cpu_base = own.cpu / max(1, own.posted), base.cpu / max(1, base.posted)
            lines.append(f"\nconnector vs baseline at {own.tickets:,} tickets: {ratio:.2f}x the "
                         f"messages/s, {cpu_own / cpu_base:.2f}x the CPU per message")
    return "\n".join(lines)


def machine() -> str:
    cpu = "unknown CPU"
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = psutil.virtual_memory().total / 2**30
    return (f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, Python "
            f"{sys.version.split()[0]}, {sys.platform}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, help="one size (overrides --sizes)")
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated ticket counts")
    parser.add_argument("--answer-time", default="0", help="Uppzy answer time: 0, 2.5 or 5-30")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="new messages per second (0: all at once)")
    parser.add_argument("--baseline", action="store_true",
                        help="also run bench/baseline.py on the same workload")
    parser.add_argument("--baseline-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--baseline-timeout", type=float, default=120.0,
                        help="the baseline stops after this many seconds (it is sequential)")
    parser.add_argument("--helpdesks", type=int, default=1,
                        help="adapters (each its own Zendesk simulator) served by the one "
                             "daemon; the tickets are spread over them")
    parser.add_argument("--workers", type=int, default=8, help="engine.workers")
    parser.add_argument("--tick", default="0.5s", help="engine.tick")
    parser.add_argument("--batch-size", type=int, default=64, help="engine.batch_size")
    parser.add_argument("--adapter-poll", default="1s", help="the adapter's poll_interval")
    parser.add_argument("--uppzy-poll", default="2.5s", help="uppzy.poll_interval")
    parser.add_argument("--answer-timeout", default="2m", help="uppzy.answer_timeout")
    parser.add_argument("--uppzy-mode", default="async", choices=("async", "sync"),
                        help="uppzy.mode")
    parser.add_argument("--sync-concurrency", type=int, default=32,
                        help="uppzy.sync_concurrency (sync mode)")
    parser.add_argument("--log-level", default="info", help="the daemon's --log-level")
    parser.add_argument("--idle", type=float, default=2.0,
                        help="seconds of idle CPU measured before seeding")
    parser.add_argument("--settle", type=float, default=3.0,
                        help="quiet seconds (no helpdesk call but the feed) that end a run")
    parser.add_argument("--timeout", type=float, default=600.0, help="longest run, seconds")
    parser.add_argument("--profile", type=Path,
                        help="py-spy the daemon into this file (.svg, .json or raw text)")
    parser.add_argument("--profile-wall", action="store_true",
                        help="profile every thread, waiting ones too (wall clock, per thread)")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--keep", action="store_true", help="keep the work dirs (logs, db)")
    args = parser.parse_args()
    sizes = [args.tickets] if args.tickets else [int(s) for s in args.sizes.split(",") if s]

    print(f"machine: {machine()}", file=sys.stderr)
    results: list[Result] = []
    for size in sizes:
        kinds = [] if args.baseline_only else [run_daemon]
        if args.baseline or args.baseline_only:
            kinds.append(run_baseline)
        for kind in kinds:
            workdir = Path(tempfile.mkdtemp(prefix=f"bench-{size}-"))
            print(f"{kind.__name__} with {size:,} tickets, answer time {args.answer_time}s "
                  f"(logs in {workdir})", file=sys.stderr)
            results.append(kind(args, size, workdir))
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nmachine: {machine()}")
    print("command: python bench/run.py " + " ".join(sys.argv[1:]) + "\n")
    print(render(results))
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ | {"rate": r.rate} for r in results],
                                        indent=1))


if __name__ == "__main__":
    main()
