"""Property-based tests of the JSON API: schemathesis generates requests from the OpenAPI schema
(valid and invalid ones) and every answer must be a deliberate one, never a server error."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from squads.accounts.api_tokens import create_api_token
from chat_server.app import create_app
from squads.settings.env import Settings
from squads.nodes.service import create_node
from squads.context import AppContext
from squads.storage.db import session_scope

# schemathesis collects operations at import time, so the app (on a throwaway database) is built here.
FOLDER = Path(tempfile.mkdtemp(prefix="squads-schemathesis-"))
CONTEXT = AppContext(settings=Settings(data_dir=FOLDER, config_dir=FOLDER / "config"))
with session_scope(CONTEXT.db.sessions) as _session:
    TOKEN = create_api_token(_session, name="schemathesis", actor="pytest").token
    create_node(_session, name="web-1", labels={"role": "web"}, actor="pytest")
APP = create_app(CONTEXT)
schema = schemathesis.openapi.from_dict(APP.openapi())
schema.app = APP  # requests go to the app in this process (ASGI), no port needed


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    CONTEXT.db.engine.dispose()
    shutil.rmtree(FOLDER, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_makes_the_server_fail(case: schemathesis.Case) -> None:
    response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code < 500, (case.method, case.formatted_path, case.body, response.text[:500])
