"""A throw-away Request Tracker 5 on 127.0.0.1 for tests, from Debian's packages.

It installs nothing (``scripts/install-rt.sh`` does): it gives each instance its own state
directory (site config, SQLite database, mail spool, log), seeds a queue, staff and a customer,
starts ``rt-server`` in its own process group on a free port, and removes everything on stop.
Initialising and seeding the database takes a few seconds, so the seeded database is cached per
machine and later starts only copy it.

The helpers play the people around a ticket the way they really reach RT: the customer over
REST2 as an unprivileged user or by e-mail through the mail gateway (what ``rt-mailgate`` posts),
staff over REST2.

CLI::

    python scripts/rt_server.py start [--port N] [--state-file F]   # prints URL, token, state
    python scripts/rt_server.py stop [--state-file F]
    python scripts/rt_server.py run [--port N]                     # until Ctrl-C
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

import requests

from connector.testing.processes import free_port, stop_group

PACKAGES = ("request-tracker5", "rt5-db-sqlite", "rt5-standalone")
INSTALL_HINT = "install Request Tracker with: bash scripts/install-rt.sh"
RT_SERVER = "/usr/share/request-tracker5/libexec/rt-server"
RT_SETUP_DATABASE = "/usr/sbin/rt-setup-database-5"
RT_LIB = "/usr/share/request-tracker5/lib"
DEFAULT_STATE_FILE = Path(tempfile.gettempdir()) / "uppzy-rt-server.json"
CACHE_DIR = Path(tempfile.gettempdir()) / "uppzy-rt-cache"

RTNAME = "rt.test"
QUEUE = "Support"
OTHER_QUEUE = "Sales"  # staff can work here too; lets tests check the adapter's queue filter
CORRESPOND_ADDRESS = "support@rt.test"
BCRYPT_COST = 4  # RT's default 12 costs ~0.25 s per Basic-auth request; stored in the DB's hashes


@dataclass(frozen=True)
class RTUser:
    name: str
    password: str
    email: str

    @property
    def auth(self) -> tuple[str, str]:
        return (self.name, self.password)


ROOT = RTUser("root", "rootpass-for-tests", "root@localhost")
AGENT = RTUser("agent", "agentpass", "agent@rt.test")
CUSTOMER = RTUser("customer", "customerpass", "customer@example.com")

# RT's "initialdata" format. REST2 in RT 5.0.3 cannot grant rights, so everything is seeded here.
_STAFF_RIGHTS = [
    "SeeQueue", "ShowTicket", "CreateTicket", "ReplyToTicket", "CommentOnTicket",
    "ShowTicketComments", "ModifyTicket", "OwnTicket", "TakeTicket", "StealTicket", "Watch",
    "WatchAsAdminCc", "ShowOutgoingEmail", "SeeCustomField", "ModifyCustomField",
]


def _perl_list(words: list[str]) -> str:
    return "[" + ", ".join(f"'{w}'" for w in words) + "]"


SEED = f"""
@Queues = (
    {{ Name => '{QUEUE}', Description => 'Customer support',
       CorrespondAddress => '{CORRESPOND_ADDRESS}', CommentAddress => 'support-comment@rt.test' }},
    {{ Name => '{OTHER_QUEUE}', Description => 'Sales enquiries',
       CorrespondAddress => 'sales@rt.test', CommentAddress => 'sales-comment@rt.test' }},
);
@Groups = ( {{ Name => 'Staff', Description => 'Helpdesk staff' }} );
@Users = (
    {{ Name => '{AGENT.name}', EmailAddress => '{AGENT.email}', RealName => 'Agent Smith',
       Password => '{AGENT.password}', Privileged => 1, MemberOf => 'Staff' }},
    {{ Name => '{CUSTOMER.name}', EmailAddress => '{CUSTOMER.email}',
       RealName => 'Carol Customer', Password => '{CUSTOMER.password}', Privileged => 0 }},
);
@ACL = (
    {{ GroupDomain => 'SystemInternal', GroupType => 'Everyone', Queue => '{QUEUE}',
       Right => ['CreateTicket', 'ReplyToTicket'] }},
    {{ GroupDomain => 'RT::Queue-Role', GroupType => 'Requestor', Queue => '{QUEUE}',
       Right => ['ShowTicket', 'ReplyToTicket'] }},
    {{ GroupDomain => 'RT::Queue-Role', GroupType => 'Requestor', Queue => '{OTHER_QUEUE}',
       Right => ['ShowTicket', 'ReplyToTicket'] }},
    {{ GroupDomain => 'UserDefined', GroupId => 'Staff', Queue => '{QUEUE}',
       Right => {_perl_list(_STAFF_RIGHTS)} }},
    {{ GroupDomain => 'UserDefined', GroupId => 'Staff', Queue => '{OTHER_QUEUE}',
       Right => {_perl_list(_STAFF_RIGHTS)} }},
    {{ GroupDomain => 'UserDefined', GroupId => 'Staff', Right => 'AdminUsers' }},
);
1;
"""

# Creates an auth token; RT 5.0.3 has no REST endpoint for it.
_TOKEN_PERL = r"""
use RT; RT::LoadConfig(); RT::Init();
my $user = RT::User->new(RT->SystemUser);
$user->Load($ARGV[0]); die "no such user: $ARGV[0]\n" unless $user->id;
my ($id, $msg, $token) = RT::AuthToken->new(RT->SystemUser)->Create(
    Owner => $user->id, Description => 'tests');
die "$msg\n" unless $id;
print $token;
"""


class RTError(RuntimeError):
    """RT could not be started, or a helper call was refused."""


def installed_version() -> str | None:
    """The installed RT version, or None when any of the packages is missing."""
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}|${Version}\\n", *PACKAGES],
            capture_output=True, text=True, check=False,
        )
    except FileNotFoundError:
        return None
    rows = [line.split("|", 1) for line in out.stdout.splitlines() if "|" in line]
    if out.returncode != 0 or len(rows) != len(PACKAGES):
        return None
    if any(status != "install ok installed" for status, _ in rows):
        return None
    return rows[0][1]



class RTServer:
    """One RT instance; ``start()``/``stop()`` or use it as a context manager."""

    def __init__(self, port: int | None = None, *, workers: int = 2) -> None:
        self.port = port or free_port()
        self.workers = workers
        self.state_dir: Path | None = None
        self.pid: int | None = None
        self.agent_token = ""
        self._proc: subprocess.Popen[bytes] | None = None

    # -- addresses -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """RT's base address, as an operator would put it in the connector's YAML."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return f"{self.url}/REST/2.0"

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> RTServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 120.0) -> RTServer:
        version = installed_version()
        if version is None:
            raise RTError(f"Request Tracker is not installed; {INSTALL_HINT}")
        self.state_dir = Path(tempfile.mkdtemp(prefix="uppzy-rt-"))
        try:
            self._write_config()
            self._prepare_database(version)
            self._launch()
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the whole process group (master and workers), SIGKILL if it lingers.

        Never SIGINT: rt-server's own SIGINT handler chowns /var/lib/request-tracker5.
        """
        if self.pid is not None:
            stop_group(self.pid, self._proc, timeout)
            self.pid = None
            self._proc = None
        if self.state_dir is not None:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self.state_dir = None

    def to_state(self) -> dict[str, Any]:
        """What the CLI writes so that ``stop`` can find the instance from another process."""
        return {
            "url": self.url, "port": self.port, "pid": self.pid,
            "state_dir": str(self.state_dir), "agent_token": self.agent_token,
            "agent": AGENT.auth, "customer": CUSTOMER.auth, "root": ROOT.auth,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RTServer:
        server = cls(port=int(state["port"]))
        server.pid = state["pid"]
        server.state_dir = Path(state["state_dir"])
        server.agent_token = state["agent_token"]
        return server

    def _env(self) -> dict[str, str]:
        # Without these RT loads /etc/request-tracker5/RT_SiteConfig.d (debconf's WebPath /rt,
        # a system database, syslog).
        assert self.state_dir is not None
        return {
            **os.environ,
            "RT_SITE_CONFIG": str(self.state_dir / "RT_SiteConfig.pm"),
            "RT_SITE_CONFIG_DIR": str(self.state_dir / "RT_SiteConfig.d"),
        }

    def _write_config(self) -> None:
        state = self.state_dir
        assert state is not None
        for sub in ("RT_SiteConfig.d", "var", "mason_data", "session_data"):
            (state / sub).mkdir()
        (state / "RT_SiteConfig.pm").write_text(f"""
Set($rtname, '{RTNAME}');
Set($Organization, '{RTNAME}');
Set($CorrespondAddress, '{CORRESPOND_ADDRESS}');
Set($CommentAddress, 'support-comment@rt.test');
Set($DatabaseType, 'SQLite');
Set($DatabaseName, '{state / "rt.db"}');
Set($WebDomain, '127.0.0.1');
Set($WebPort, {self.port});
Set($WebPath, '');
Set($WebBaseURL, '{self.url}');
Set($Timezone, 'UTC');
Set($LogToSTDERR, 'warning');
Set($LogToSyslog, undef);
Set($LogToFile, undef);
Set($MailCommand, 'mbox');
Set($BcryptCost, {BCRYPT_COST});
Set(%GnuPG, Enable => 0);
Set(%SMIME, Enable => 0);
$RT::VarPath = '{state / "var"}';
$RT::MasonDataDir = '{state / "mason_data"}';
$RT::MasonSessionDir = '{state / "session_data"}';
1;
""")

    def _prepare_database(self, version: str) -> None:
        """Copy the cached seeded database, or build it (and the agent's token) and cache it.

        The cache key covers everything that shapes the database, so a changed seed or an RT
        upgrade builds a new one. Site-config values that differ per instance (port, paths) are
        not stored in the database.
        """
        assert self.state_dir is not None
        shape = f"{version}\n{BCRYPT_COST}\n{ROOT.password}\n{SEED}\n{_TOKEN_PERL}"
        key = hashlib.sha256(shape.encode()).hexdigest()[:16]
        cached = CACHE_DIR / key
        db = self.state_dir / "rt.db"
        if (cached / "rt.db").is_file() and (cached / "agent.token").is_file():
            shutil.copyfile(cached / "rt.db", db)
            self.agent_token = (cached / "agent.token").read_text()
            return
        password = self.state_dir / "root-password"
        password.write_text(ROOT.password)
        seed = self.state_dir / "seed.pl"
        seed.write_text(SEED)
        self._run_rt([RT_SETUP_DATABASE, "--action", "init", "--skip-create",
                      "--root-password-file", str(password)], "init")
        out = self._run_rt([RT_SETUP_DATABASE, "--action", "insert", "--datafile", str(seed)],
                           "seed")
        if "[error]" in out:  # initialdata errors are only logged; a half seed must not pass
            raise RTError(f"seeding RT failed:\n{out}")
        self.agent_token = self.create_token(AGENT.name)
        # Publish atomically: another session may be reading or building the same key.
        staging = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=_ensure(CACHE_DIR)))
        shutil.copyfile(db, staging / "rt.db")
        (staging / "agent.token").write_text(self.agent_token)
        try:
            staging.rename(cached)
        except OSError:  # someone else published first; theirs is as good
            shutil.rmtree(staging, ignore_errors=True)

    def _run_rt(self, argv: list[str], what: str) -> str:
        proc = subprocess.run(argv, env=self._env(), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, check=False)
        out = proc.stdout + proc.stderr
        if proc.returncode != 0:
            raise RTError(f"RT {what} failed (exit {proc.returncode}):\n{out}")
        return out

    def create_token(self, user: str) -> str:
        """A new auth token for ``user`` (``Authorization: token …``); takes about a second."""
        return self._run_rt(["perl", f"-I{RT_LIB}", "-e", _TOKEN_PERL, user], "token").strip()

    def _launch(self) -> None:
        assert self.state_dir is not None
        log = (self.state_dir / "server.log").open("ab")
        # Own session = own process group, so one signal reaches the master and its workers.
        # No --max-keepalive-reqs: keep-alive pins a worker per client connection.
        self._proc = subprocess.Popen(
            [RT_SERVER, "--server", "Starlet", "--host", "127.0.0.1", "--port", str(self.port),
             "--max-workers", str(self.workers)],
            env=self._env(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.pid = self._proc.pid

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RTError(f"rt-server exited with {self._proc.returncode}:\n{self.log()}")
            try:
                resp = requests.get(f"{self.api}/rt", auth=ROOT.auth, timeout=5)
                if resp.status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RTError(f"RT not ready after {timeout:.0f}s:\n{self.log()}")
            time.sleep(0.2)

    def log(self) -> str:
        """The server's stdout/stderr so far (shown when it fails)."""
        if self.state_dir is None:
            return ""
        path = self.state_dir / "server.log"
        return path.read_text(errors="replace")[-20000:] if path.exists() else ""

    # -- playing customer and staff ------------------------------------------------------------

    def rest(self, method: str, path: str, *, user: RTUser = AGENT, body: Any = None,
             params: dict[str, Any] | None = None) -> Any:
        """One REST2 call as ``user``; raises RTError on a non-2xx answer."""
        resp = requests.request(method, f"{self.api}/{path.lstrip('/')}", auth=user.auth,
                                json=body, params=params, timeout=30)
        if resp.status_code >= 300:
            raise RTError(f"{method} {path} as {user.name}: HTTP {resp.status_code} {resp.text}")
        return resp.json() if resp.text.strip() else None

    def create_ticket(self, subject: str, content: str, *, user: RTUser = CUSTOMER,
                      queue: str = QUEUE, content_type: str = "text/plain",
                      requestor: str = CUSTOMER.email) -> str:
        """A new ticket (runs the autoreply scrip); by default the customer opens it."""
        created = self.rest("POST", "ticket", user=user, body={
            "Queue": queue, "Subject": subject, "Requestor": requestor,
            "Content": content, "ContentType": content_type,
        })
        return str(created["id"])

    def create_user(self, name: str, email: str, *, password: str = "user-pass-1234",
                    privileged: bool = False, real_name: str = "") -> RTUser:
        """Another customer (or, privileged, another staff account without rights) over REST2."""
        self.rest("POST", "user", user=ROOT, body={
            "Name": name, "EmailAddress": email, "RealName": real_name or name,
            "Password": password, "Privileged": int(privileged),
        })
        return RTUser(name, password, email)

    def customer_reply(self, ticket_id: str, content: str, *, user: RTUser = CUSTOMER,
                       content_type: str = "text/plain") -> list[str]:
        """A public reply by a requestor over REST2, as RT's self-service would send it."""
        return self.rest("POST", f"ticket/{ticket_id}/correspond", user=user,
                         body={"Content": content, "ContentType": content_type})

    def staff_reply(self, ticket_id: str, content: str, *, status: str | None = None) -> list[str]:
        """A public reply by the agent (RT mails it to the requestor and opens a new ticket)."""
        body: dict[str, Any] = {"Content": content, "ContentType": "text/plain"}
        if status:
            body["Status"] = status
        return self.rest("POST", f"ticket/{ticket_id}/correspond", body=body)

    def staff_comment(self, ticket_id: str, content: str) -> list[str]:
        """An internal note by the agent; requestors never see it."""
        return self.rest("POST", f"ticket/{ticket_id}/comment",
                         body={"Content": content, "ContentType": "text/plain"})

    def set_status(self, ticket_id: str, status: str) -> list[str]:
        """RT's messages; note that an invalid status is refused with HTTP 200, not an error."""
        return self.rest("PUT", f"ticket/{ticket_id}", body={"Status": status})

    def ticket(self, ticket_id: str, *, user: RTUser = AGENT) -> dict[str, Any]:
        return self.rest("GET", f"ticket/{ticket_id}", user=user)

    def history(self, ticket_id: str, *, user: RTUser = CUSTOMER) -> list[dict[str, Any]]:
        """The ticket's first 100 transactions as ``user`` sees them (default: the customer),
        oldest first, each with ``id``, ``Type``, ``Creator`` (a user name), ``Created`` and
        ``Content`` (its text parts joined)."""
        params = {"per_page": 100, "fields": "Type,Creator,Created"}
        txns = self.rest("GET", f"ticket/{ticket_id}/history", user=user, params=params)
        parts = self.rest("GET", f"ticket/{ticket_id}/attachments", user=user, params={
            "per_page": 100, "fields": "TransactionId,ContentType,Content"})
        content: dict[str, list[str]] = {}
        for part in parts["items"]:
            if str(part.get("ContentType", "")).startswith("text/"):
                content.setdefault(str(part["TransactionId"]), []).append(part["Content"] or "")
        return [
            {"id": str(t["id"]), "Type": t["Type"], "Creator": t["Creator"]["id"],
             "Created": t["Created"], "Content": "\n".join(content.get(str(t["id"]), []))}
            for t in txns["items"]
        ]

    def mail_in(self, body: str, *, sender: str = CUSTOMER.email, subject: str = "",
                ticket_id: str | None = None, html: bool = False, queue: str = QUEUE) -> str:
        """Deliver an e-mail as rt-mailgate does; returns the ticket id RT filed it under.

        With ``ticket_id`` the subject carries RT's tag, so the mail becomes a Correspond on that
        ticket by the user matching ``sender``; without it, an unknown sender opens a new ticket.
        """
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = CORRESPOND_ADDRESS
        tag = f"[{RTNAME} #{ticket_id}] " if ticket_id else ""
        msg["Subject"] = f"Re: {tag}{subject}" if ticket_id else subject
        msg["Message-ID"] = make_msgid(domain="example.com")
        msg["Date"] = formatdate(localtime=False)
        msg.set_content(body, subtype="html" if html else "plain")
        resp = requests.post(f"{self.url}/REST/1.0/NoAuth/mail-gateway", data={
            "queue": queue, "action": "correspond", "message": msg.as_string(),
        }, timeout=30)
        if resp.status_code != 200 or resp.text.strip() != "ok":
            raise RTError(f"mail gateway refused the message: {resp.status_code} {resp.text}")
        if ticket_id:
            return ticket_id
        # The gateway answers only "ok"; the newest ticket with this subject is the one it made.
        found = self.rest("GET", "tickets", user=ROOT, params={
            "query": f"Subject = '{_sql_escape(subject)}'", "orderby": "id", "order": "DESC",
            "per_page": 1})
        if not found["items"]:
            raise RTError(f"mail gateway filed no ticket with subject {subject!r}")
        return str(found["items"][0]["id"])

    def mail_reply(self, ticket_id: str, body: str, *, sender: str = CUSTOMER.email,
                   html: bool = False) -> None:
        """The customer answering a notification by e-mail."""
        self.mail_in(body, sender=sender, subject="your request", ticket_id=ticket_id,
                     html=html)


def _sql_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("start", "stop", "run"))
    parser.add_argument("--port", type=int)
    parser.add_argument("--state-file", type=Path, default=DEFAULT_STATE_FILE)
    args = parser.parse_args(argv)

    if args.command == "stop":
        if not args.state_file.exists():
            print(f"no RT instance recorded in {args.state_file}", file=sys.stderr)
            return 1
        RTServer.from_state(json.loads(args.state_file.read_text())).stop()
        args.state_file.unlink()
        return 0

    server = RTServer(port=args.port)
    started = time.monotonic()
    try:
        server.start()
    except RTError as exc:
        print(exc, file=sys.stderr)
        return 1
    state = server.to_state()
    print(json.dumps({**state, "seconds": round(time.monotonic() - started, 2)}, indent=2))
    if args.command == "start":
        args.state_file.write_text(json.dumps(state))
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
