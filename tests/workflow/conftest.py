"""Fixtures for the workflow's end-to-end tests (helpers live in ``support.py``).

The repository root must come first on ``sys.path``: ``tests/core`` is a package too, and with
pytest's default import mode ``import core`` could otherwise find the tests instead of the library.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
for path in (str(HERE), str(ROOT)):
    while path in sys.path:
        sys.path.remove(path)
    sys.path.insert(0, path)
for name in [m for m in sys.modules if m == "core" or m.startswith("core.")]:
    if not str(getattr(sys.modules[name], "__file__", "") or "").startswith(str(ROOT / "core")):
        del sys.modules[name]
