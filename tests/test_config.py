"""Config loading: env expansion, durations, and a clear exit 2 naming the key for bad input."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connector.cli import app
from connector.config import expand_env, load_config, parse_config
from connector.core.errors import ConfigError

VALID = """
uppzy:
  base_url: https://api.uppzy.com/api/v1
  api_key: ${UPPZY_API_KEY}
  site_id: ${UPPZY_SITE_ID}
  tenant_id: ${UPPZY_TENANT_ID:-}
  mode: async
  poll_interval: 2.5s
  answer_timeout: 2m
database:
  url: sqlite:///connector.db
adapters:
  - name: acme-zendesk
    type: zendesk
    url: https://acme.zendesk.com
    auth: {email: bot@acme.com, api_token: "${ZENDESK_API_TOKEN}"}
    poll_interval: 30s
    site_id: "1234"
"""

ENV = {"UPPZY_API_KEY": "key-123456", "UPPZY_SITE_ID": "site-9",
       "ZENDESK_API_TOKEN": "zd-secret-token"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_minimal_shape_from_the_issue_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("UPPZY_TENANT_ID", raising=False)
    config = load_config(write(tmp_path, VALID))
    assert config.uppzy.poll_interval == 2.5
    assert config.uppzy.answer_timeout == 120
    assert config.uppzy.tenant_id == ""
    assert config.uppzy.api_key.get_secret_value() == "key-123456"
    zendesk = config.adapters[0]
    assert zendesk.poll_interval == 30
    assert config.site_for(zendesk) == "1234"
    assert "zd-secret-token" not in repr(config)


def test_env_default_and_missing_variable_named():
    assert expand_env({"a": "${NOPE:-fallback}"}, env={}) == {"a": "fallback"}
    assert expand_env({"a": ["x${V}y"]}, env={"V": "1"}) == {"a": ["x1y"]}
    with pytest.raises(ConfigError, match=r"adapters\[0\]\.auth\.token: environment variable T"):
        expand_env({"adapters": [{"auth": {"token": "${T}"}}]}, env={})


def test_a_secret_with_yaml_syntax_cannot_change_the_structure():
    config = parse_config(
        {"uppzy": {"api_key": "${K}", "site_id": "s"}},
        env={"K": "abc: {x: 1} # not a comment"},
    )
    assert config.uppzy.api_key.get_secret_value() == "abc: {x: 1} # not a comment"


BAD_CASES = {
    "missing api key": ("uppzy:\n  site_id: s\n", "uppzy.api_key: field required"),
    "unknown top-level key": (
        "uppzy: {api_key: k, site_id: s}\nuppzzy: {}\n", "uppzzy: unknown key"),
    "unknown uppzy key": (
        "uppzy: {api_key: k, site_id: s, api_keys: x}\n", "uppzy.api_keys: unknown key"),
    "bad mode": ("uppzy: {api_key: k, site_id: s, mode: fast}\n", "uppzy.mode:"),
    "bad duration": (
        "uppzy: {api_key: k, site_id: s, answer_timeout: 2 weeks}\n",
        "uppzy.answer_timeout: value error, invalid duration"),
    "bad base url": ("uppzy: {api_key: k, site_id: s, base_url: api.uppzy.com}\n",
                     "uppzy.base_url:"),
    "adapter without type": (
        "uppzy: {api_key: k, site_id: s}\nadapters:\n  - name: a\n", "adapters[0].type: field"),
    "unknown adapter type": (
        "uppzy: {api_key: k, site_id: s}\nadapters:\n  - {name: a, type: nope, url: http://x}\n",
        "adapters[0].type: unknown adapter type 'nope'"),
    "adapter auth missing token": (
        "uppzy: {api_key: k, site_id: s}\nadapters:\n"
        "  - {name: a, type: zendesk, url: https://a.zendesk.com, auth: {email: b@a.com}}\n",
        "adapters[0].auth"),
    "adapter unknown key": (
        "uppzy: {api_key: k, site_id: s}\nadapters:\n"
        "  - {name: a, type: zendesk, url: https://a.zendesk.com, auth: {access_token: t},"
        " pol_interval: 3}\n",
        "adapters[0].pol_interval: unknown key"),
    "duplicate adapter names": (
        "uppzy: {api_key: k, site_id: s}\nadapters:\n"
        "  - {name: a, type: zendesk, url: https://a.zendesk.com, auth: {access_token: t}}\n"
        "  - {name: a, type: zendesk, url: https://b.zendesk.com, auth: {access_token: t}}\n",
        "adapters[1].name: duplicate adapter name 'a'"),
    "unset variable": ("uppzy: {api_key: '${SURELY_UNSET_VAR}', site_id: s}\n",
                       "uppzy.api_key: environment variable SURELY_UNSET_VAR is not set"),
    "template without answer": (
        "uppzy: {api_key: k, site_id: s}\ndraft: {template: 'hello'}\n",
        "draft.template: value error, must contain {answer}"),
    "invalid yaml": ("uppzy: [unclosed\n", "invalid YAML at line"),
    "not a mapping": ("- just\n- a list\n", "<root>: the config must be a mapping"),
    "workers out of range": ("uppzy: {api_key: k, site_id: s}\nengine: {workers: 0}\n",
                             "engine.workers:"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_config_exits_2_naming_the_key(case: str, tmp_path: Path):
    text, expected = BAD_CASES[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = CliRunner().invoke(app, ["check", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert expected in result.output


def test_missing_file_and_no_config_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("CONNECTOR_CONFIG", raising=False)
    runner = CliRunner()
    result = runner.invoke(app, ["status", "--config", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "file not found" in result.output
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 2 and "CONNECTOR_CONFIG" in result.output


def test_console_script_exits_2_before_any_remote_call(tmp_path: Path):
    """The installed entry point, in its own process: a typo never reaches the network."""
    path = tmp_path / "bad.yaml"
    path.write_text("uppzy: {api_key: k, site_id: s, base_url: 'http://127.0.0.1:9'}\nfoo: 1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "connector", "run", "--once", "--config", str(path)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "foo: unknown key" in proc.stderr


def test_config_example_documents_a_valid_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    for key in ("UPPZY_API_KEY", "UPPZY_SITE_ID", "ZENDESK_CLIENT_SECRET", "RT_TOKEN",
                "HELPSCOUT_APP_ID", "HELPSCOUT_APP_SECRET", "FRESHDESK_API_KEY", "ZAMMAD_TOKEN",
                "DJHD_TOKEN", "JSM_API_TOKEN", "FRONT_API_TOKEN", "INTERCOM_TOKEN"):
        monkeypatch.setenv(key, "value-for-test")
    example = Path(__file__).parent.parent / "config.example.yaml"
    config = load_config(example)
    assert [a.type for a in config.adapters] == ["zendesk", "rt", "helpscout", "freshdesk",
                                                 "zammad", "django_helpdesk", "jsm", "front",
                                                 "intercom"]
    assert config.notifications == []  # shipped commented out: nothing is sent by default
    assert config.retention == 30 * 86400
    # The commented receiver is documentation: uncommented, it must be a valid config too.
    text = example.read_text()
    start = text.index("# notifications:")
    block, rest = text[start:].split("\n\n", 1)
    uncommented = "\n".join(line[2:] if line.startswith("# ") else line[1:]
                            for line in block.splitlines())
    enabled = tmp_path / "with-notifications.yaml"
    enabled.write_text(text[:start] + uncommented + "\n\n" + rest)
    assert load_config(enabled).notifications[0].format == "json"
    assert config.draft.template == "{answer}\n\n— {marker}"


def test_config_errors_point_at_the_fix():
    """Every unset variable at once, "did you mean" for a typo, an empty secret said as such,
    and a bad adapter name explained instead of shown as a regular expression."""
    base = {"uppzy": {"api_key": "${NO_KEY_HERE}", "site_id": "${NO_SITE_HERE}"}}
    with pytest.raises(ConfigError) as missing:
        parse_config(base, env={})
    assert str(missing.value).splitlines() == [
        "uppzy.api_key: environment variable NO_KEY_HERE is not set",
        "uppzy.site_id: environment variable NO_SITE_HERE is not set",
    ]
    good = {"uppzy": {"api_key": "k" * 20, "site_id": "s"}}
    with pytest.raises(ConfigError, match=r"engine.worker: unknown key \(did you mean "
                       r"'workers'\?\)"):
        parse_config({**good, "engine": {"worker": 3}}, env={})
    adapter = {"name": "zd", "type": "zendesk", "url": "https://x.zendesk.com",
               "auth": {"email": "a@b.c", "api_token": "${EMPTY:-}"}, "pol_interval": "3s"}
    with pytest.raises(ConfigError) as typos:
        parse_config({**good, "adapters": [adapter]}, env={})
    assert "adapters[0].pol_interval: unknown key (did you mean 'poll_interval'?)" in \
        str(typos.value)
    assert "adapters[0].auth.api_token: is empty" in str(typos.value)
    with pytest.raises(ConfigError, match=r"adapters\[0\].name: must be 1 to 63 letters"):
        parse_config({**good, "adapters": [{**adapter, "name": "bad name",
                                            "auth": {"email": "a@b.c", "api_token": "t"}}]},
                     env={})
