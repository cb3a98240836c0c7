"""Shared fixtures: simulators on 127.0.0.1, configs pointing at them, engines on temp SQLite."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from djhd_fixture import djhd_server  # noqa: F401  (session fixture: a real django-helpdesk)
from rt_fixture import rt_server  # noqa: F401  (session fixture: a real Request Tracker)
from support import API_KEY, ZD_TOKEN, config_dict

from adapters.zendesk.simulator import ZendeskSimulator
from connector.config import Config, parse_config
from connector.engine.runtime import Runtime
from connector.testing.uppzy_sim import UppzySimulator


@pytest.fixture
def uppzy() -> Iterator[UppzySimulator]:
    sim = UppzySimulator(api_keys={API_KEY: "ok"}, answer_time=(0.05, 0.3)).start()
    yield sim
    sim.stop()


@pytest.fixture
def zendesk() -> Iterator[ZendeskSimulator]:
    sim = ZendeskSimulator(exclude_newest=0, api_token=ZD_TOKEN).start()
    yield sim
    sim.stop()


@pytest.fixture
def make_config(tmp_path: Path, uppzy: UppzySimulator, zendesk: ZendeskSimulator
                ) -> Callable[..., Config]:
    def build(**overrides: Any) -> Config:
        return parse_config(config_dict(tmp_path, uppzy, zendesk, **overrides))
    return build


@pytest.fixture
def config_file(tmp_path: Path, uppzy: UppzySimulator, zendesk: ZendeskSimulator
                ) -> Callable[..., Path]:
    def write(**overrides: Any) -> Path:
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config_dict(tmp_path, uppzy, zendesk, **overrides)))
        return path
    return write


@pytest.fixture
def make_engine(make_config: Callable[..., Config]) -> Iterator[Callable[..., Runtime]]:
    engines: list[Runtime] = []

    def build(**overrides: Any) -> Runtime:
        engine = Runtime(make_config(**overrides))
        engine.start()
        engines.append(engine)
        return engine

    yield build
    for engine in engines:
        engine.shutdown(grace=2)
        engine.db.dispose()
