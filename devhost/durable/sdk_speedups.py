"""One speed-up for the SDK's replay, without changing what it computes.

``azure.durable_functions`` builds a ``HistoryEvent`` for every event of every replay and parses its
``Timestamp`` with ``dateutil.parser.parse`` (~0.2 ms each): for a fan-out of 1,000 activities that
is most of the replay time, and it is paid again on every episode. We replace the module-level
``dt_parse`` name that ``HistoryEvent`` uses with a function that returns *the same value*: our own
timestamp format (``YYYY-MM-DDTHH:MM:SS.ffffffZ``) is built directly with the tzinfo dateutil
itself gives a 'Z' on this machine, and every other text goes to dateutil itself. Results are
memoised (datetimes are immutable), so old events cost a dict lookup on later replays.
"""
from __future__ import annotations

import datetime as dt
import re

_FORMAT = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{6})Z\Z")
_CACHE: dict[str, dt.datetime] = {}
_CACHE_LIMIT = 500_000
_installed = False


def install() -> None:
    """Patch ``HistoryEvent``'s parser once per process (idempotent)."""
    global _installed
    if _installed:
        return
    import importlib
    import sys

    importlib.import_module("azure.durable_functions.models.history.HistoryEvent")
    # the package re-exports the class under the module's name, so take the module from sys.modules
    history_module = sys.modules["azure.durable_functions.models.history.HistoryEvent"]
    from dateutil.parser import parse as dateutil_parse

    # whatever tzinfo dateutil gives for a 'Z' on this machine (tzlocal() when the local zone is UTC)
    utc = dateutil_parse("2000-01-01T00:00:00.000000Z").tzinfo

    def parse(text, *args, **kwargs):
        if args or kwargs or not isinstance(text, str):
            return dateutil_parse(text, *args, **kwargs)
        value = _CACHE.get(text)
        if value is None:
            match = _FORMAT.match(text)
            if match:
                y, mo, d, h, mi, s, us = (int(g) for g in match.groups())
                value = dt.datetime(y, mo, d, h, mi, s, us, tzinfo=utc)
            else:
                value = dateutil_parse(text)
            if len(_CACHE) >= _CACHE_LIMIT:
                _CACHE.clear()
            _CACHE[text] = value
        return value

    history_module.dt_parse = parse
    _installed = True
