"""A throw-away django-helpdesk on 127.0.0.1 for tests, in a virtualenv of its own.

``install`` builds that virtualenv (``~/.cache/connector-djhd/venv``, or ``$DJHD_VENV``) with the
pinned django-helpdesk and the Django and Django REST framework it was tested with; importing
this module installs nothing. ``start`` writes a Django project into a fresh state directory
(settings with SQLite, django-helpdesk's REST API, per-queue staff permissions), copies in a
seeded database (migrated once, then cached per machine), and runs Django's server on a free
port in its own process group; ``stop`` ends that group and removes the directory.

The people around a ticket reach it the way they really do:

- customers open tickets through the public web form (``/tickets/submit/``, anonymously, with
  their e-mail address) or by e-mail, and write again by e-mail: a customer has no web form to
  add a follow-up. E-mail goes through django-helpdesk's own ingestion function,
  ``helpdesk.email.extract_email_metadata`` (what ``manage.py get_email`` calls for every
  message it fetches), from a test-only view of the throw-away project, so one mail costs one
  HTTP call instead of a Django start-up;
- staff reply, add private notes and change the status with follow-ups over the REST API,
  which runs the same ``update_ticket`` as the staff web form; what only the web interface does
  (hold, merge, delete) is done through it, logged in with a session and CSRF token like a
  browser; the kanban board's bare status change (no follow-up) is the API's ticket ``PATCH``.

CLI::

    python scripts/djhd_server.py install                            # builds the virtualenv
    python scripts/djhd_server.py start [--port N] [--state-file F]  # prints URL, users, state
    python scripts/djhd_server.py stop [--state-file F]
    python scripts/djhd_server.py run [--port N]                     # until Ctrl-C
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

import requests

from connector.testing.processes import free_port, stop_group

PIN = "django-helpdesk==2.6.1"
# What 2.6.1 was tested with; pinned too so that a new Django or DRF cannot change the server
# under the tests without a change here.
REQUIREMENTS = (PIN, "Django==5.2.19", "djangorestframework==3.18.3")
VERSION = PIN.split("==")[1]
VENV = Path(os.environ.get("DJHD_VENV") or Path.home() / ".cache" / "connector-djhd" / "venv")
INSTALL_HINT = "install django-helpdesk with: python scripts/djhd_server.py install"
DEFAULT_STATE_FILE = Path(tempfile.gettempdir()) / "uppzy-djhd-server.json"
CACHE_DIR = Path(tempfile.gettempdir()) / "uppzy-djhd-cache"

QUEUE = "support"  # slugs; the titles are "Support" and "Sales"
OTHER_QUEUE = "sales"  # staff can work here too; lets tests check the adapter's queue filter
PHONE_STATUS = 6  # the test site's custom resolved status ("Answered by phone")
HIDDEN_QUEUE = "vault"  # no user but the superuser may see it (per-queue permissions)
QUEUE_ADDRESS = "support@djhd.test"


@dataclass(frozen=True)
class User:
    name: str
    password: str
    email: str
    staff: bool = False

    @property
    def auth(self) -> tuple[str, str]:
        return (self.name, self.password)


ADMIN = User("admin", "adminpass-for-tests", "admin@djhd.test", staff=True)  # superuser
AGENT = User("agent", "agentpass", "agent@djhd.test", staff=True)  # the connector's user
STAFFER = User("staffer", "stafferpass", "staffer@djhd.test", staff=True)  # the human agent
CUSTOMER = User("customer", "customerpass", "customer@example.com")  # a non-staff account

SETTINGS = """
from pathlib import Path

STATE = Path(__file__).resolve().parent.parent
SECRET_KEY = "throw-away-test-server-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
    "django.contrib.sessions", "django.contrib.messages", "django.contrib.staticfiles",
    "django.contrib.sites", "django.contrib.humanize",
    "rest_framework", "rest_framework.authtoken", "helpdesk",
]
SITE_ID = 1
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "djhd_site.urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
DATABASES = {"default": {
    "ENGINE": "django.db.backends.sqlite3", "NAME": STATE / "db.sqlite3",
    "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE"},
}}
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
STATIC_URL = "/static/"
LOGIN_URL = "/login/"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
# Tests only: the default PBKDF2 costs every Basic-auth request a few hundred milliseconds.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
EMAIL_FILE_PATH = STATE / "outbox"
DEFAULT_FROM_EMAIL = "{queue_address}"
# DRF's own default order (session, then Basic) plus tokens; with the session first, DRF
# answers refused credentials with 403, as a default installation does.
REST_FRAMEWORK = {"DEFAULT_AUTHENTICATION_CLASSES": [
    "rest_framework.authentication.SessionAuthentication",
    "rest_framework.authentication.BasicAuthentication",
    "rest_framework.authentication.TokenAuthentication",
]}
HELPDESK_API_ENABLED = True  # the default in 2.6.1; said here because the tests need it
HELPDESK_TEAMS_MODE_ENABLED = False  # else pinax-teams is required
HELPDESK_ENABLE_PER_QUEUE_STAFF_PERMISSION = True  # the "vault" queue is out of sight
HELPDESK_REDIRECT_TO_LOGIN_BY_DEFAULT = False  # the public form is open to anonymous users
HELPDESK_ANON_ACCESS_RAISES_404 = False
# The five defaults plus a custom resolved status, as sites add their own (helpdesk/settings.py).
HELPDESK_TICKET_STATUS_CHOICES = (
    (1, "Open"), (2, "Reopened"), (3, "Resolved"), (4, "Closed"), (5, "Duplicate"),
    (6, "Answered by phone"),
)
HELPDESK_TICKET_STATUS_CHOICES_FLOW = {
    1: (1, 3, 4, 5, 6), 2: (2, 3, 4, 5, 6), 3: (2, 3, 4), 4: (2, 4), 5: (2, 5), 6: (2, 4, 6),
}
LOGGING = {"version": 1, "disable_existing_loggers": False,
           "handlers": {"console": {"class": "logging.StreamHandler"}},
           "root": {"handlers": ["console"], "level": "WARNING"}}
""".replace("{queue_address}", QUEUE_ADDRESS)

URLS = """
from django.contrib import admin
from django.urls import include, path

from djhd_site import gateway

urlpatterns = [
    path("admin/", admin.site.urls),
    path("test-gateway/mail/", gateway.mail),
    path("", include("helpdesk.urls", namespace="helpdesk")),
]
"""

GATEWAY = '''
"""Test-only: hands one raw e-mail to django-helpdesk's ingestion, as get_email does."""
import logging

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from helpdesk.email import extract_email_metadata
from helpdesk.models import Queue


@csrf_exempt
def mail(request):
    queue = Queue.objects.get(slug=request.GET["queue"])
    ticket = extract_email_metadata(request.body.decode(), queue, logging.getLogger("gateway"))
    return JsonResponse({"id": ticket.id if ticket is not None else None})
'''

MANAGE = """
import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djhd_site.settings")
from django.core.management import execute_from_command_line
execute_from_command_line(sys.argv)
"""


def _user_code(user: User, superuser: bool = False) -> str:
    return (f"u = User.objects.create_user({user.name!r}, {user.email!r}, {user.password!r}, "
            f"is_staff={user.staff}, is_superuser={superuser})")


# Run once per cache key, in the venv: migrate, then the people and queues the tests use.
SEED = f"""
import json, os, sys
sys.path.insert(0, os.getcwd())
os.environ["DJANGO_SETTINGS_MODULE"] = "djhd_site.settings"
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0, interactive=False)
from django.contrib.auth.models import Permission, User
from django.db import connection
from rest_framework.authtoken.models import Token
from helpdesk.models import Queue
queues = {{
    slug: Queue.objects.create(title=title, slug=slug, email_address=address,
                               allow_public_submission=public, allow_email_submission=True)
    for slug, title, address, public in [
        ({QUEUE!r}, "Support", {QUEUE_ADDRESS!r}, True),
        ({OTHER_QUEUE!r}, "Sales", "sales@djhd.test", True),
        ({HIDDEN_QUEUE!r}, "Vault", "vault@djhd.test", False),
    ]
}}
{_user_code(ADMIN, superuser=True)}
{_user_code(AGENT)}
agent = u
{_user_code(STAFFER)}
staffer = u
{_user_code(CUSTOMER)}
for slug in ({QUEUE!r}, {OTHER_QUEUE!r}):
    perm = Permission.objects.get(codename="queue_access_" + slug)
    agent.user_permissions.add(perm)
    staffer.user_permissions.add(perm)
token = Token.objects.create(user=agent).key
with connection.cursor() as cursor:
    cursor.execute("PRAGMA journal_mode=WAL")
print(json.dumps({{"agent_token": token, "agent_id": agent.id, "staffer_id": staffer.id}}))
"""


class DjhdError(RuntimeError):
    """django-helpdesk could not be installed or started, or a helper call was refused."""


def venv_python() -> Path:
    return VENV / "bin" / "python"


def installed_version() -> str | None:
    """The django-helpdesk version in the test virtualenv, or None when it is not there."""
    if not venv_python().exists():
        return None
    proc = subprocess.run(
        [str(venv_python()), "-c",
         "import importlib.metadata as m; print(m.version('django-helpdesk'))"],
        capture_output=True, text=True, check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def install() -> str:
    """Build the virtualenv with the pinned packages (PyPI); idempotent. Returns the version."""
    if installed_version() == VERSION:
        return VERSION
    if not venv_python().exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    proc = subprocess.run(
        [str(venv_python()), "-m", "pip", "install", "-q", *REQUIREMENTS],
        capture_output=True, text=True, check=False,
    )
    version = installed_version()
    if proc.returncode != 0 or version != VERSION:
        raise DjhdError(f"installing {PIN} failed (exit {proc.returncode}):\n"
                        f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return version



class DjhdServer:
    """One django-helpdesk instance; ``start()``/``stop()`` or use it as a context manager."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.state_dir: Path | None = None
        self.pid: int | None = None
        self.agent_token = ""
        self.agent_id = 0
        self.staffer_id = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._browsers: dict[str, requests.Session] = {}

    @property
    def url(self) -> str:
        """django-helpdesk's base address, as an operator puts it in the connector's YAML."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return f"{self.url}/api"

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> DjhdServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> DjhdServer:
        version = installed_version()
        if version is None:
            raise DjhdError(f"django-helpdesk is not installed; {INSTALL_HINT}")
        self.state_dir = Path(tempfile.mkdtemp(prefix="uppzy-djhd-"))
        try:
            self._write_project()
            self._prepare_database(version)
            self._launch()
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the whole process group, SIGKILL if it lingers; then the files go."""
        for browser in self._browsers.values():
            browser.close()
        self._browsers.clear()
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
            "url": self.url, "port": self.port, "pid": self.pid, "version": VERSION,
            "state_dir": str(self.state_dir), "agent_token": self.agent_token,
            "agent": AGENT.auth, "staffer": STAFFER.auth, "customer": CUSTOMER.auth,
            "admin": ADMIN.auth,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> DjhdServer:
        server = cls(port=int(state["port"]))
        server.pid = state["pid"]
        server.state_dir = Path(state["state_dir"])
        server.agent_token = state["agent_token"]
        return server

    def _write_project(self) -> None:
        state = self.state_dir
        assert state is not None
        site = state / "djhd_site"
        site.mkdir()
        (state / "outbox").mkdir()
        (site / "__init__.py").write_text("")
        (site / "settings.py").write_text(SETTINGS)
        (site / "urls.py").write_text(URLS)
        (site / "gateway.py").write_text(GATEWAY)
        (state / "manage.py").write_text(MANAGE)

    def _prepare_database(self, version: str) -> None:
        """Copy the cached seeded database, or migrate and seed one and cache it.

        The key covers everything that shapes the database (version, settings, seed), so a
        changed seed or another django-helpdesk builds a new one.
        """
        assert self.state_dir is not None
        key = hashlib.sha256(f"{version}\n{SETTINGS}\n{SEED}".encode()).hexdigest()[:16]
        cached = CACHE_DIR / key
        db = self.state_dir / "db.sqlite3"
        if (cached / "db.sqlite3").is_file() and (cached / "seed.json").is_file():
            shutil.copyfile(cached / "db.sqlite3", db)
            self._seeded(json.loads((cached / "seed.json").read_text()))
            return
        proc = subprocess.run([str(venv_python()), "-c", SEED], cwd=self.state_dir,
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise DjhdError(f"seeding django-helpdesk failed:\n{proc.stdout}{proc.stderr}")
        seed = json.loads(proc.stdout.strip().splitlines()[-1])
        self._seeded(seed)
        # Publish atomically: another session may be reading or building the same key.
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=CACHE_DIR))
        shutil.copyfile(db, staging / "db.sqlite3")
        (staging / "seed.json").write_text(json.dumps(seed))
        try:
            staging.rename(cached)
        except OSError:  # someone else published first; theirs is as good
            shutil.rmtree(staging, ignore_errors=True)

    def _seeded(self, seed: dict[str, Any]) -> None:
        self.agent_token = seed["agent_token"]
        self.agent_id = int(seed["agent_id"])
        self.staffer_id = int(seed["staffer_id"])

    def _launch(self) -> None:
        assert self.state_dir is not None
        log = (self.state_dir / "server.log").open("ab")
        # Own session = own process group; --noreload keeps it to one process.
        self._proc = subprocess.Popen(
            [str(venv_python()), "manage.py", "runserver", "--noreload",
             f"127.0.0.1:{self.port}"],
            cwd=self.state_dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        self.pid = self._proc.pid

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise DjhdError(f"the server exited with {self._proc.returncode}:\n{self.log()}")
            try:
                resp = requests.get(f"{self.api}/", auth=AGENT.auth, timeout=5)
                if resp.status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise DjhdError(f"django-helpdesk not ready after {timeout:.0f}s:\n{self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        """The server's output so far (shown when it fails)."""
        if self.state_dir is None:
            return ""
        path = self.state_dir / "server.log"
        return path.read_text(errors="replace")[-20000:] if path.exists() else ""

    # -- the REST API --------------------------------------------------------------------------

    def rest(self, method: str, path: str, *, user: User = STAFFER, body: Any = None,
             params: dict[str, Any] | None = None) -> Any:
        """One API call as ``user`` (Basic auth); raises DjhdError on a non-2xx answer."""
        resp = requests.request(method, f"{self.api}/{path.lstrip('/')}", auth=user.auth,
                                json=body, params=params, timeout=30)
        if resp.status_code >= 300:
            raise DjhdError(f"{method} {path} as {user.name}: HTTP {resp.status_code} "
                            f"{resp.text[:500]}")
        return resp.json() if resp.text.strip() else None

    def ticket(self, ticket_id: str, *, user: User = ADMIN) -> dict[str, Any]:
        """The ticket as the API shows it, follow-ups included (``followup_set``)."""
        return self.rest("GET", f"tickets/{ticket_id}/", user=user)

    def followups(self, ticket_id: str) -> list[dict[str, Any]]:
        """Every follow-up of the ticket as the superuser sees it, oldest first."""
        return sorted(self.ticket(ticket_id)["followup_set"], key=lambda f: (f["date"], f["id"]))

    def queue_id(self, slug: str) -> int:
        """A queue's id, read from a ticket filed there (the API has no queue endpoint)."""
        return int(self._queue_ids()[slug])

    def _queue_ids(self) -> dict[str, int]:
        if not hasattr(self, "_queues"):
            out = self.django(
                "import json; from helpdesk.models import Queue; "
                "print(json.dumps({q.slug: q.id for q in Queue.objects.all()}))")
            self._queues: dict[str, int] = json.loads(out.strip().splitlines()[-1])
        return self._queues

    def django(self, code: str) -> str:
        """Python run in the project with Django set up (the management shell); slow (~1 s)."""
        assert self.state_dir is not None
        proc = subprocess.run([str(venv_python()), "manage.py", "shell", "-c", code],
                              cwd=self.state_dir, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise DjhdError(f"manage.py shell failed:\n{proc.stdout}{proc.stderr}")
        return proc.stdout

    # -- the customer --------------------------------------------------------------------------

    def submit_ticket(self, subject: str, body: str, *, email: str = CUSTOMER.email,
                      queue: str = QUEUE) -> str:
        """The public web form, filled in anonymously; returns the new ticket's id."""
        with requests.Session() as browser:
            form = browser.get(f"{self.url}/tickets/submit/", timeout=30)
            if form.status_code != 200:
                raise DjhdError(f"public form: HTTP {form.status_code}")
            resp = browser.post(f"{self.url}/tickets/submit/", data={
                "csrfmiddlewaretoken": browser.cookies.get("csrftoken", ""),
                "queue": str(self.queue_id(queue)), "title": subject, "body": body,
                "submitter_email": email, "priority": "3",
            }, headers={"Referer": f"{self.url}/tickets/submit/"}, allow_redirects=False,
                timeout=30)
        match = re.search(r"[?&]ticket=[a-z0-9-]*?-(\d+)&", resp.headers.get("Location", ""))
        if resp.status_code != 302 or match is None:
            raise DjhdError(f"public form refused the ticket: HTTP {resp.status_code} "
                            f"{_form_errors(resp.text)}")
        return match.group(1)

    def mail_in(self, body: str, *, sender: str = CUSTOMER.email, subject: str = "",
                ticket_id: str | None = None, html: bool = False, plain: str | None = None,
                queue: str = QUEUE) -> str:
        """A customer's e-mail, through django-helpdesk's ingestion; returns the ticket id.

        With ``ticket_id`` the subject carries the queue's tracking tag (``[support-12]``), as a
        reply to django-helpdesk's notification does, so the mail becomes a follow-up there.
        ``html`` with ``plain`` is what mail clients send: HTML with a plain-text alternative,
        of which django-helpdesk keeps the text (an HTML-only mail it flattens to its text).
        """
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = QUEUE_ADDRESS
        msg["Subject"] = f"Re: [{queue}-{ticket_id}] {subject}" if ticket_id else subject
        msg["Message-ID"] = make_msgid(domain="example.com")
        msg["Date"] = formatdate(localtime=False)
        if html and plain is not None:
            msg.set_content(plain)
            msg.add_alternative(body, subtype="html")
        else:
            msg.set_content(body, subtype="html" if html else "plain")
        resp = requests.post(f"{self.url}/test-gateway/mail/", params={"queue": queue},
                             data=msg.as_bytes(), timeout=30)
        if resp.status_code != 200 or resp.json().get("id") is None:
            raise DjhdError(f"mail ingestion refused the message: {resp.status_code} "
                            f"{resp.text[:300]}")
        return str(resp.json()["id"])

    def customer_reply(self, ticket_id: str, body: str, *, sender: str = CUSTOMER.email,
                       html: bool = False, plain: str | None = None) -> None:
        """The customer answering a notification by e-mail (their only way to write again)."""
        self.mail_in(body, sender=sender, subject="your request", ticket_id=ticket_id,
                     html=html, plain=plain)

    def customer_view(self, ticket_id: str, *, user: User = CUSTOMER) -> str:
        """The public ticket page as its submitter sees it (every public follow-up), as text.

        Logged in, a customer whose address is the submitter's needs no secret key.
        """
        resp = self.browser(user).get(f"{self.url}/view/", params={
            "ticket": f"t-{int(ticket_id)}", "email": user.email}, timeout=30)
        if resp.status_code != 200 or "Invalid ticket ID" in resp.text:
            raise DjhdError(f"public view of {ticket_id} as {user.name}: HTTP {resp.status_code}")
        return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", resp.text))

    def create_customer(self, name: str, email: str, *,
                        password: str = "customer-pass-1234") -> User:
        """Another customer account (non-staff), over the API's user endpoint as the admin."""
        self.rest("POST", "users/", user=ADMIN, body={
            "username": name, "email": email, "password": password,
            "first_name": name, "last_name": "Customer"})
        return User(name, password, email)

    # -- staff ---------------------------------------------------------------------------------

    def followup(self, ticket_id: str, comment: str, *, public: bool,
                 new_status: int | None = None, user: User = STAFFER) -> dict[str, Any]:
        """A follow-up over the API: django-helpdesk's ``update_ticket``, as the staff form.

        ``user: null`` makes the API record the caller as the author (its serializer reads the
        key without a default).
        """
        body: dict[str, Any] = {"ticket": int(ticket_id), "comment": comment, "public": public,
                                "user": None}
        if new_status is not None:
            body["new_status"] = new_status
        return self.rest("POST", "followups/", user=user, body=body)

    def staff_reply(self, ticket_id: str, text: str, *, status: int | None = None) -> None:
        self.followup(ticket_id, text, public=True, new_status=status)

    def staff_note(self, ticket_id: str, text: str) -> None:
        self.followup(ticket_id, text, public=False)

    def set_status(self, ticket_id: str, status: int, comment: str = "") -> None:
        """A status change with its follow-up, as the staff form makes it."""
        self.followup(ticket_id, comment, public=True, new_status=status)

    def patch_status(self, ticket_id: str, status: int) -> None:
        """A status change without any follow-up, as the kanban board and API ``PATCH`` make."""
        self.rest("PATCH", f"tickets/{ticket_id}/", body={"status": status})

    def browser(self, user: User = STAFFER) -> requests.Session:
        """A logged-in web session of ``user`` (CSRF cookie included)."""
        session = self._browsers.get(user.name)
        if session is not None:
            return session
        session = requests.Session()
        session.get(f"{self.url}/login/", timeout=30)
        resp = session.post(f"{self.url}/login/", data={
            "username": user.name, "password": user.password,
            "csrfmiddlewaretoken": session.cookies.get("csrftoken", ""),
        }, headers={"Referer": f"{self.url}/login/"}, allow_redirects=False, timeout=30)
        if resp.status_code != 302:
            raise DjhdError(f"login as {user.name} failed: HTTP {resp.status_code}")
        self._browsers[user.name] = session
        return session

    def web_post(self, path: str, data: dict[str, Any], *, user: User = STAFFER) -> None:
        """A form post in the staff web interface, as the browser sends it."""
        session = self.browser(user)
        resp = session.post(f"{self.url}{path}", data={
            **data, "csrfmiddlewaretoken": session.cookies.get("csrftoken", "")},
            headers={"Referer": f"{self.url}{path}"}, allow_redirects=False, timeout=30)
        if resp.status_code not in (200, 302):
            raise DjhdError(f"POST {path} as {user.name}: HTTP {resp.status_code}")

    def hold(self, ticket_id: str) -> None:
        """Put the ticket on hold: a public follow-up with a title and no text."""
        self.web_post(f"/tickets/{ticket_id}/hold/", {})

    def delete(self, ticket_id: str) -> None:
        """The staff delete button: the ticket and its follow-ups are gone for good."""
        self.web_post(f"/tickets/{ticket_id}/delete/", {}, user=ADMIN)

    def merge(self, ticket_id: str, into: str) -> None:
        """The staff merge page: ``ticket_id`` becomes Duplicate, its follow-ups move."""
        self.web_post(f"/tickets/merge?tickets={ticket_id}&tickets={into}",
                      {"chosen_ticket": into})

    def late_followup(self, ticket_id: str, text: str, *, dated: datetime) -> int:
        """A staff note dated ``dated`` (in the past) but committed now: what ``update_ticket``
        leaves when sending its mail takes a while (it dates the follow-up first, saves it
        after)."""
        out = self.django(
            "from datetime import datetime; from django.contrib.auth.models import User; "
            "from helpdesk.models import FollowUp, Ticket; "
            f"f = FollowUp.objects.create(ticket=Ticket.objects.get(id={int(ticket_id)}), "
            f"comment={text!r}, public=False, user=User.objects.get(username={STAFFER.name!r}), "
            f"date=datetime.fromisoformat({dated.isoformat()!r})); print(f.id)")
        return int(out.strip().splitlines()[-1])

    def move(self, ticket_id: str, queue: str) -> None:
        """Move the ticket to another queue (the staff edit form's queue field, over the API)."""
        self.rest("PATCH", f"tickets/{ticket_id}/", user=ADMIN,
                  body={"queue": self.queue_id(queue)})


def _form_errors(html: str) -> str:
    found = re.findall(r'class="[^"]*(?:errorlist|invalid-feedback)[^"]*"[^>]*>(.*?)</',
                       html, re.S)
    return "; ".join(" ".join(f.split()) for f in found)[:500]



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("install", "start", "stop", "run"))
    parser.add_argument("--port", type=int)
    parser.add_argument("--state-file", type=Path, default=DEFAULT_STATE_FILE)
    args = parser.parse_args(argv)

    if args.command == "install":
        try:
            print(f"django-helpdesk {install()} in {VENV}")
        except (DjhdError, OSError, subprocess.CalledProcessError) as exc:
            print(exc, file=sys.stderr)
            return 1
        return 0
    if args.command == "stop":
        if not args.state_file.exists():
            print(f"no django-helpdesk instance recorded in {args.state_file}", file=sys.stderr)
            return 1
        DjhdServer.from_state(json.loads(args.state_file.read_text())).stop()
        args.state_file.unlink()
        return 0

    server = DjhdServer(port=args.port)
    started = time.monotonic()
    try:
        server.start()
    except DjhdError as exc:
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
