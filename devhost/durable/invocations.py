"""Invocation ids and user tracebacks, shared by episodes, activity workers and worker processes."""
from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import os
import traceback
import uuid

_invocation_counter = itertools.count(1)
_process_tag = uuid.uuid4().hex[:12]


def new_invocation_id() -> str:
    """Unique per process run without an os.urandom call each time (that call drops the GIL)."""
    n = next(_invocation_counter)
    return f"{_process_tag[:8]}-{_process_tag[8:12]}-4000-8000-{n:012x}"


_HOST_PATHS = (os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.path.dirname(asyncio.__file__),
               os.path.dirname(concurrent.futures.__file__))


def user_traceback(exc: BaseException) -> str:
    """The exception's traceback without devhost's and asyncio's frames (the worker shows the user's)."""
    remote = getattr(exc, "remote_traceback", None)
    if remote:  # raised in a worker process (devhost/workers.py): its traceback, already trimmed there
        return str(remote)
    summary = traceback.TracebackException.from_exception(exc)
    frames = [f for f in summary.stack if not f.filename.startswith(_HOST_PATHS)]
    summary.stack = traceback.StackSummary.from_list(frames)
    return "".join(summary.format()).strip()
