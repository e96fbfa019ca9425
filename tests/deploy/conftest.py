"""Fixtures for the deployment checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from deploy_support import REPO_ROOT


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
