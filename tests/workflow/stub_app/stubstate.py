"""Scripted activity answers shared by the stub app and the replay tests (same process, same module)."""

from __future__ import annotations

import threading
from typing import Any

LOCK = threading.Lock()
#: activity name -> a list of answers (the last one repeats) or a callable(payload, call_number)
SCRIPT: dict[str, Any] = {}
CALLS: list[tuple[str, dict]] = []  # (activity, payload)


def answer(name: str, payload: dict) -> Any:
    with LOCK:
        CALLS.append((name, payload))
        n = sum(1 for a, _ in CALLS if a == name)
        script = SCRIPT.get(name)
    if callable(script):
        return script(payload, n)
    if not script:
        raise RuntimeError(f"no script for {name}")
    return script[min(n, len(script)) - 1]
