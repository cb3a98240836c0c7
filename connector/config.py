"""Loads the YAML config: ``${VAR}`` expansion, validation with key paths, secret registration.

Every error is a ``ConfigError`` whose message starts with the key path (``adapters[0].auth``),
because the person reading it at 3 a.m. needs to know which line to fix, not a stack trace.
Adapter sections are validated by the adapter's own settings model, found through the plugin
registry, so a third-party adapter gets the same checking as a built-in one.
"""

from __future__ import annotations

import difflib
import os
import re
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from adapters.base import AdapterSettings
from adapters.registry import adapter_class
from connector.core.durations import Duration
from connector.core.errors import ConfigError
from connector.core.redact import register_secret

SessionMode = Literal["per_thread", "per_user", "per_channel"]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UppzySettings(_Strict):
    base_url: str = "https://api.uppzy.com/api/v1"
    api_key: SecretStr
    site_id: str = Field(min_length=1)
    tenant_id: str | None = None
    mode: Literal["async", "sync"] = "async"
    # sync mode: chat calls that may wait for their answer at once, each on a thread and a
    # connection of its own, apart from engine.workers (a 5-60 s wait must not hold a worker);
    # unset: sized from arrivals and answer times, 16 to 64 (connector/engine/sync_slots.py)
    sync_concurrency: int | None = Field(default=None, ge=1, le=512)
    poll_interval: Duration = 2.5
    answer_timeout: Duration = 120.0
    connect_timeout: Duration = 5.0
    read_timeout: Duration = 30.0
    response_language: str | None = None

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("poll_interval", "answer_timeout")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be greater than zero")
        return value


class DatabaseSettings(_Strict):
    url: str = "sqlite:///connector.db"


class DraftSettings(_Strict):
    mode: Literal["post", "shadow"] = "post"  # shadow: answers stored and compared, not posted
    template: str = "{answer}\n\n— {marker}"
    min_confidence: float | Literal["low", "medium", "high"] | None = None
    fallback: str = (
        "The AI assistant has no confident answer for this message; please reply yourself."
    )

    @field_validator("template")
    @classmethod
    def _template(cls, value: str) -> str:
        if "{answer}" not in value:
            raise ValueError("must contain {answer}")
        try:
            value.format(answer="", marker="", confidence_level="", confidence_score="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"unknown placeholder {exc}; use {{answer}}, {{marker}}, {{confidence_level}},"
                " {confidence_score}"
            ) from None
        return value


class FeedbackSettings(_Strict):
    good_tags: list[str] = ["ai_good"]
    bad_tags: list[str] = ["ai_bad"]
    # Ratings from adoption (a draft used: good; discarded: bad). An agent's tag always wins:
    # an implicit rating waits ``implicit_delay`` before it is sent, and a tag seen meanwhile
    # replaces it.
    implicit: bool = False
    implicit_edited: Literal["good", "bad"] | None = None
    implicit_delay: Duration = 3600.0


class AdoptionSettings(_Strict):
    """When a posted draft counts as used, edited or discarded (see engine/adoption.py)."""

    used_threshold: float = Field(default=0.8, gt=0, le=1)
    edited_threshold: float = Field(default=0.4, ge=0, le=1)
    window: Duration = 7 * 86400.0  # no agent reply within it: expired

    @model_validator(mode="after")
    def _ordered(self) -> AdoptionSettings:
        if self.edited_threshold > self.used_threshold:
            raise ValueError("edited_threshold must not be above used_threshold")
        return self


class EngineSettings(_Strict):
    workers: int = Field(default=8, ge=1, le=64)
    batch_size: int = Field(default=64, ge=1, le=1000)
    max_attempts: int = Field(default=8, ge=1, le=100)
    tick: Duration = 0.5
    instance_id: str | None = None
    lease_ttl: Duration = 30.0
    max_backoff: Duration = Field(
        default=60.0, gt=0,
        description="The longest wait between retries of an item after transient errors "
        "(5xx, 429, timeouts): how soon work resumes once an outage ends.",
    )

    @field_validator("lease_ttl")
    @classmethod
    def _lease(cls, value: float) -> float:
        if value < 3:
            raise ValueError("must be at least 3s (leases are renewed every third of it)")
        return value


class OpsSettings(_Strict):
    """The local HTTP endpoint for Prometheus and health probes."""

    enabled: bool = True
    listen: str = "127.0.0.1:9464"

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        split_listen(value)
        return value


def split_listen(value: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) as a bind address; ValueError says what is wrong."""
    host, sep, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError("expected host:port, e.g. 127.0.0.1:9464")
    return host, int(port)


NotifyEvent = Literal[
    "draft_posted", "turn_failed", "low_confidence", "auth_refused", "uppzy_errors",
    "adapter_stale",
]


class NotificationSettings(_Strict):
    """One webhook receiver and the events it wants; thresholds shape the incident rules."""

    name: str | None = None
    url: SecretStr  # Slack-style URLs carry their token in the path
    format: Literal["json", "slack"] = "json"
    secret: SecretStr | None = Field(default=None, validate_default=True)
    events: list[NotifyEvent] = [
        "turn_failed", "low_confidence", "auth_refused", "uppzy_errors", "adapter_stale",
    ]
    error_threshold: int = Field(default=10, ge=1)  # Uppzy 429/5xx answers within error_window
    error_window: Duration = 300.0
    cooldown: Duration = 1800.0  # one message per incident: quiet this long after an alert
    stale_intervals: int = Field(default=10, ge=1)  # cursor unmoved for this many polls
    timeout: Duration = 5.0
    retries: int = Field(default=3, ge=0, le=10)
    backoff: Duration = 2.0
    queue_size: int = Field(default=1000, ge=1)

    @field_validator("url")
    @classmethod
    def _url(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("secret")
    @classmethod
    def _signed(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None and info.data.get("format") == "json":
            raise ValueError("required for format json: receivers verify the signature")
        return value


class Config(_Strict):
    uppzy: UppzySettings
    database: DatabaseSettings = DatabaseSettings()
    session: SessionMode = "per_thread"
    draft: DraftSettings = DraftSettings()
    feedback: FeedbackSettings = FeedbackSettings()
    adoption: AdoptionSettings = AdoptionSettings()
    engine: EngineSettings = EngineSettings()
    ops: OpsSettings = OpsSettings()
    notifications: list[NotificationSettings] = Field(default_factory=list)
    adapters: list[AdapterSettings] = Field(default_factory=list)
    retention: Duration | None = Field(
        default=30 * 86400.0, gt=0,
        description="How long customer text and answers stay in the database (ids, states and "
        "timings stay); null keeps them forever.",
    )

    def adapter(self, name: str) -> AdapterSettings:
        for settings in self.adapters:
            if settings.name == name:
                return settings
        raise KeyError(name)

    def site_for(self, adapter: AdapterSettings) -> str:
        return adapter.site_id or self.uppzy.site_id

    def site_keys(self, site: str) -> list[str]:
        """The settings that name ``site``."""
        keys = [f"adapters[{i}].site_id" for i, a in enumerate(self.adapters) if a.site_id == site]
        if self.uppzy.site_id == site or not keys:
            keys.insert(0, "uppzy.site_id")
        return keys

    def site_problem(self, site: str, detail: str) -> str:
        """What to fix when Uppzy answers 404 for ``site``: the keys that name it, and the base
        URL (a path other than Uppzy's API answers 404 for every site)."""
        keys = self.site_keys(site)
        return (f"Uppzy does not know site {site!r} ({detail}): fix {' / '.join(keys)}, or "
                f"uppzy.base_url ({self.uppzy.base_url}), which must be Uppzy's API root, "
                "ending in /api/v1")

    def shadow(self, adapter: AdapterSettings) -> bool:
        """Whether this adapter only stores answers (to compare with agents) instead of posting."""
        return (adapter.draft.mode or self.draft.mode) == "shadow"


def expand_env(value: Any, path: str = "", env: dict[str, str] | None = None) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of a parsed YAML tree.

    Expansion happens after parsing, so a secret holding ``:`` or ``#`` cannot change the YAML
    structure. Every unset variable is reported at once, each with its key path, so one edit
    of the environment fixes them all.
    """
    missing: list[str] = []
    expanded = _expand(value, path, os.environ if env is None else env, missing)
    if missing:
        raise ConfigError("\n".join(missing))
    return expanded


def _expand(value: Any, path: str, env: Mapping[str, str], missing: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: _expand(v, _join(path, str(k)), env, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{path}[{i}]", env, missing) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env and env[name] != "":
            return env[name]
        if default is not None:
            return default
        missing.append(f"{path or '<root>'}: environment variable {name} is not set")
        return ""

    return _VAR.sub(substitute, value)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _loc(prefix: str, loc: Iterable[Any]) -> str:
    text = prefix
    for part in loc:
        text = f"{text}[{part}]" if isinstance(part, int) else _join(text, str(part))
    return text or "<root>"


def _first_error(
    exc: ValidationError, prefix: str = "", model: type[BaseModel] | None = None
) -> ConfigError:
    lines = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if not _is_union_tag(p)]
        lines.append(f"{_loc(prefix, loc)}: {_explain(err, loc, model)}")
    return ConfigError("\n".join(dict.fromkeys(lines)))


def _explain(err: Any, loc: list[Any], model: type[BaseModel] | None) -> str:
    """Pydantic's message in words that say what to change."""
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "extra_forbidden":
        near = difflib.get_close_matches(str(loc[-1]), _siblings(model, loc[:-1]), n=1)
        return f"unknown key (did you mean {near[0]!r}?)" if near else "unknown key"
    if kind == "too_short" and ctx.get("actual_length") == 0:
        return "is empty (an unset ${VAR:-} expands to nothing)"
    if kind in ("too_short", "string_too_short"):
        return f"must be at least {ctx.get('min_length')} characters long"
    if kind == "string_pattern_mismatch" and loc and loc[-1] == "name":
        return ("must be 1 to 63 letters, digits, '_', '.' or '-', starting with a letter or "
                "digit (it becomes part of session ids and URLs)")
    message = err["msg"]
    return f"{message[:1].lower()}{message[1:]}"


def _siblings(model: type[BaseModel] | None, loc: list[Any]) -> list[str]:
    """The keys allowed where ``loc`` points, for "did you mean"."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            args = [a for a in typing.get_args(current) if isinstance(a, type)]
            current = args[0] if args else None
            continue
        field = current.model_fields.get(part) if _is_model(current) else None
        if field is None:
            return []
        current = field.annotation
        options = [a for a in (typing.get_args(current) or (current,))
                   if _is_model(a) or typing.get_origin(a) is list]
        current = options[0] if options else current
    return list(current.model_fields) if _is_model(current) else []


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _is_union_tag(part: Any) -> bool:
    """Pydantic puts the tried union member's class name into the location; hide it."""
    return isinstance(part, str) and (part[:1].isupper() or part.startswith("function-"))


def parse_config(raw: Any, env: dict[str, str] | None = None) -> Config:
    """Validate an already-parsed YAML document."""
    if not isinstance(raw, dict):
        raise ConfigError("<root>: the config must be a mapping of sections")
    raw = expand_env(raw, env=env)
    adapters_raw = raw.get("adapters") or []
    if not isinstance(adapters_raw, list):
        raise ConfigError("adapters: must be a list")
    try:
        config = Config.model_validate({**raw, "adapters": []})
    except ValidationError as exc:
        raise _first_error(exc, model=Config) from None
    names: set[str] = set()
    for index, item in enumerate(adapters_raw):
        prefix = f"adapters[{index}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{prefix}: must be a mapping")
        type_name = item.get("type")
        if not type_name:
            raise ConfigError(f"{prefix}.type: field required")
        try:
            model = adapter_class(str(type_name)).settings_model
        except KeyError as exc:
            raise ConfigError(f"{prefix}.type: {exc.args[0]}") from None
        try:
            settings = model.model_validate(item)
        except ValidationError as exc:
            raise _first_error(exc, prefix, model) from None
        settings.locate(prefix)  # so an adapter's own errors can name the key to fix
        if settings.name in names:
            raise ConfigError(f"{prefix}.name: duplicate adapter name {settings.name!r}")
        names.add(settings.name)
        config.adapters.append(settings)
    _register_secrets(config)
    return config


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Read and validate the config file; ``None`` falls back to ``$CONNECTOR_CONFIG``."""
    path = path or os.environ.get("CONNECTOR_CONFIG")
    if not path:
        raise ConfigError("--config: no config file given (or set CONNECTOR_CONFIG)")
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"--config: file not found: {file}") from None
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {file}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"<root>: invalid YAML{where}") from None
    return parse_config(raw)


def _register_secrets(model: BaseModel) -> None:
    for value in model.__dict__.values():
        if isinstance(value, SecretStr):
            register_secret(value.get_secret_value())
        elif isinstance(value, BaseModel):
            _register_secrets(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, BaseModel):
                    _register_secrets(item)
