"""The operator commands around the daemon: adapters, plugins, sandbox, check, status, db."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import yaml
from support import API_KEY

from adapters.zendesk.simulator import ZendeskSimulator
from connector.store.probe import head_revision
from connector.testing.uppzy_sim import UppzySimulator

TINY_ADAPTER = '''
"""A third-party adapter, packaged on its own."""
from adapters.base import Adapter, AdapterSettings, Capabilities, ChangePage, Posted, Ticket
from typing import Literal


class TinySettings(AdapterSettings):
    type: Literal["tinydesk"]
    greeting: str


class TinyAdapter(Adapter):
    type_name = "tinydesk"
    capabilities = Capabilities(drafts=True, webhook="tiny-hmac")
    settings_model = TinySettings

    def check(self):
        return f"tiny says {self.settings.greeting}"

    def poll_changes(self, cursor, start_from):
        return ChangePage([], cursor or "0", False)

    def get_ticket(self, ticket_id):
        return Ticket(ticket_id, "open", False)

    def list_messages(self, ticket):
        return []

    def post_draft(self, ticket_id, text):
        return Posted("1", "draft")
'''


def connector(*args: str, env: dict[str, str] | None = None, timeout: float = 60
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "connector", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_a_third_party_adapter_package_is_picked_up(tmp_path: Path, uppzy: UppzySimulator):
    package = tmp_path / "src"
    (package / "tinydesk_connector").mkdir(parents=True)
    (package / "tinydesk_connector" / "__init__.py").write_text(TINY_ADAPTER)
    (package / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "tinydesk-connector"
        version = "1.2.3"
        [project.entry-points."connector.adapters"]
        tinydesk = "tinydesk_connector:TinyAdapter"
    """))
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(package)], check=True, timeout=120,
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    listing = connector("adapters", env=env)
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if "tinydesk" in line)
    assert "1.2.3" in row and "drafts" in row and "tiny-hmac" in row
    assert "zendesk" in listing.stdout and "internal notes" in listing.stdout

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "uppzy": {"base_url": uppzy.base_url, "api_key": API_KEY, "site_id": "site-1"},
        "adapters": [{"name": "tiny", "type": "tinydesk", "url": "http://127.0.0.1:9",
                      "greeting": "hello"}],
    }))
    check = connector("check", "--config", str(config), env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "tiny says hello" in check.stdout
    config.write_text(config.read_text().replace("greeting: hello", "greting: hello"))
    bad = connector("check", "--config", str(config), env=env)
    assert bad.returncode == 2 and "adapters[0].greting: unknown key" in bad.stderr


def test_sandbox_serves_simulators_and_a_config_that_passes_check(tmp_path: Path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector", "sandbox", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line or line.startswith("Faults:"):
                break
            lines.append(line)
        text = "".join(lines)
        assert re.search(r"uppzy simulator: +http://127\.0\.0\.1:\d+/api/v1", text)
        assert re.search(r"zendesk simulator: +http://127\.0\.0\.1:\d+", text)
        config_text = text.split("(save as sandbox.yaml):\n", 1)[1]
        data = yaml.safe_load(config_text)
        data["database"]["url"] = f"sqlite:///{tmp_path / 'sandbox.db'}"
        path = tmp_path / "sandbox.yaml"
        path.write_text(yaml.safe_dump(data))
        check = connector("check", "--config", str(path))
        assert check.returncode == 0, check.stdout + check.stderr
        assert check.stdout.count("ok") >= 3
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_check_reports_each_failure_with_a_safe_reason(
    config_file, zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    path = config_file(uppzy={"api_key": "wrong-key-999", "tenant_id": "tenant-1"},
                       adapter={"auth": {"email": "bot@example.com", "api_token": "nope-1234"}})
    result = connector("check", "--config", str(path))
    assert result.returncode == 3
    assert re.search(r"failed uppzy tenant limits .*HTTP 401: invalid_api_key", result.stdout)
    assert re.search(r"failed adapter zd .*HTTP 401", result.stdout)
    assert "wrong-key-999" not in result.stdout and "nope-1234" not in result.stdout


def test_status_and_db_upgrade_on_a_fresh_database(config_file):
    path = config_file()
    upgrade = connector("db", "upgrade", "--config", str(path))
    assert upgrade.returncode == 0 and f"revision {head_revision()}" in upgrade.stdout
    status = connector("status", "--config", str(path), "--json")
    assert status.returncode == 0
    report = json.loads(status.stdout)
    assert report["adapters"][0]["name"] == "zd"
    assert report["adapters"][0]["cursor_age_seconds"] is None
    table = connector("status", "--config", str(path))
    assert "zd" in table.stdout and "never" in table.stdout


def test_demo_shows_the_daemon_at_work():
    result = connector("demo", "--seconds", "22", "--log-level", "warning", timeout=120)
    assert result.returncode == 0, result.stderr
    rows = {int(m.group(1)): m.group(0)
            for m in re.finditer(r"^│ (\d+) +│.*", result.stdout, re.M)}
    assert set(rows) == set(range(1, 9))

    def drafts(ticket: int) -> int:
        return int(rows[ticket].split("│")[3])

    assert drafts(1) == 2  # the follow-up got its own draft
    assert drafts(2) == 0  # an agent had already replied
    assert drafts(3) == 1  # an internal note does not answer the customer
    assert "demo-zendesk-4" in rows[4].split("│")[5]  # resolved: session closed
    assert "demo-zendesk-5-2" in rows[5]  # reopened: the next session
    assert re.search(r"^│ req_\w+ +│ good +│", result.stdout, re.M)  # feedback from ai_good


def test_cli_polish_version_json_and_flags_without_a_value_placeholder():
    assert connector("--version").stdout.strip() == connector("version").stdout.strip()
    listing = connector("adapters", "--json", "--log-level", "debug")
    assert listing.returncode == 0
    assert {a["type"] for a in json.loads(listing.stdout)} >= {"zendesk", "freshdesk", "rt"}
    assert connector("version", "--log-level", "debug").returncode == 0
    helped = connector("backfill", "--help").stdout
    assert "--dry-run " in helped and "<bool>" not in helped
    assert "$CONNECTOR_CONFIG" in helped and "7d" in helped
