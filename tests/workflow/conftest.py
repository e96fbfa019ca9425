"""Fixtures for the workflow's end-to-end tests: helpers and the emulator + devhost stack live in
``support.py`` (imported by the test modules); each module builds its own stack as a fixture."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
for path in (str(HERE), str(ROOT)):  # the library's ``core`` must win over any ``tests/core``
    while path in sys.path:
        sys.path.remove(path)
    sys.path.insert(0, path)
