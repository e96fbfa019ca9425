"""Fixtures for the emulator's own tests: Graph clients per registered client.

``graph`` is the workflow app (least-privilege roles); ``graph_as("admin")`` etc. give the other
seeded clients (``admin``, ``unprivileged``, ``managed-identity``), optionally on ``beta``.
"""

from __future__ import annotations

from typing import Callable

import pytest

from emulator.testing import RunningEmulator
from emulator_graph import GraphClient


@pytest.fixture
def graph(emulator_env: RunningEmulator) -> GraphClient:
    return GraphClient(emulator_env)


@pytest.fixture
def graph_as(emulator_env: RunningEmulator) -> Callable[..., GraphClient]:
    def make(client: str = "workflow", version: str = "v1.0") -> GraphClient:
        return GraphClient(emulator_env, client, version)

    return make
