"""Timer triggers, as the host's ``TimerListener`` runs them.

* The schedule (NCRONTAB or TimeSpan, ``%SETTING%`` resolved from app settings) is parsed at start;
  a bad schedule stops devhost with a clear error.
* Schedule status ``{Last, Next, LastUpdated}`` is kept per function in
  ``<state-dir>/timers/<function>.json`` (the host keeps it in storage): after each run, and the
  first time the function is seen.
* At start: if the stored ``Next`` has passed (devhost was down when it was due) the function runs
  at once with ``past_due=True``; otherwise, with ``run_on_startup`` it runs at once with
  ``past_due=False``. If the stored ``Next`` does not follow from ``Last`` under the current
  schedule, the schedule changed and the status is reset (not past due), as the host does.
* One invocation at a time per function; the next occurrence is computed after the run ends, so
  occurrences missed while a run was in progress are skipped (host behaviour).
* Times are UTC unless ``WEBSITE_TIME_ZONE`` names an IANA zone (e.g. ``Europe/Paris``); Windows
  zone names are not supported. Timer triggers always use the real clock, also with
  ``--virtual-clock`` (that mode is for durable timers).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
from typing import Any

from azure.functions import meta

from devhost.app_loader import FunctionSpec, LoadedApp
from devhost.config import resolve_setting_refs, timespan_text
from devhost.triggers.ncrontab import ConstantSchedule, CronSchedule, parse_schedule

log = logging.getLogger("devhost.timer")

UTC = dt.timezone.utc


def _zone():
    name = os.environ.get("WEBSITE_TIME_ZONE") or os.environ.get("TZ_FUNCTIONS")
    if not name:
        return UTC
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(name)
    except Exception:
        log.warning("WEBSITE_TIME_ZONE=%r is not an IANA time zone; timer schedules use UTC", name)
        return UTC


def _iso(t: dt.datetime | None) -> str | None:
    return t.astimezone(UTC).isoformat() if t else None


def _parse(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    t = dt.datetime.fromisoformat(text)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


class TimerListener:
    """Runs one timer-triggered function on its schedule."""

    def __init__(self, app: LoadedApp, spec: FunctionSpec, state_dir: str, writer: Any,
                 function_timeout: float | None = None, clock=None) -> None:
        self.app, self.spec, self.writer = app, spec, writer
        trig = spec.trigger
        self.expression = resolve_setting_refs(str(trig.get("schedule", "")), what=f"schedule of '{spec.name}'")
        self.schedule: CronSchedule | ConstantSchedule = parse_schedule(self.expression)
        self.run_on_startup = bool(trig.get("runOnStartup") or trig.get("run_on_startup"))
        self.status_path = os.path.join(state_dir, "timers", f"{spec.name}.json")
        self.function_timeout = function_timeout
        self.zone = _zone()
        self._now = clock or (lambda: dt.datetime.now(UTC))
        self._task: asyncio.Task | None = None

    # ------------------------------------------------------------ schedule in UTC
    def next_after(self, t: dt.datetime) -> dt.datetime:
        if isinstance(self.schedule, ConstantSchedule):
            return self.schedule.next_after(t)
        local = t.astimezone(self.zone).replace(tzinfo=None)
        nxt = self.schedule.next_after(local)
        return nxt.replace(tzinfo=self.zone).astimezone(UTC)

    # ------------------------------------------------------------ status file
    def load_status(self) -> dict | None:
        try:
            with open(self.status_path, encoding="utf-8") as f:
                data = json.load(f)
            return {"Last": _parse(data.get("Last")), "Next": _parse(data.get("Next")),
                    "LastUpdated": _parse(data.get("LastUpdated")), "Schedule": data.get("Schedule")}
        except (FileNotFoundError, ValueError, TypeError):
            return None

    def save_status(self, last: dt.datetime | None, nxt: dt.datetime) -> None:
        os.makedirs(os.path.dirname(self.status_path), exist_ok=True)
        tmp = self.status_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"Last": _iso(last), "Next": _iso(nxt), "LastUpdated": _iso(self._now()),
                       "Schedule": self.expression}, f)
        os.replace(tmp, self.status_path)

    def startup_decision(self) -> tuple[bool, bool, dict]:
        """``(run_now, past_due, status)`` at start, per the module docstring."""
        now = self._now()
        status = self.load_status()
        if status and status["Next"] and status.get("Schedule") == self.expression:
            past_due = now > status["Next"]
            if past_due:
                return True, True, status
            return self.run_on_startup, False, status
        status = {"Last": None, "Next": self.next_after(now), "LastUpdated": now}
        self.save_status(None, status["Next"])
        return self.run_on_startup, False, status

    # ------------------------------------------------------------ running
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"timer:{self.spec.name}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def run_now(self) -> None:
        """Run once now, outside the schedule (admin API); the schedule status is not changed."""
        status = self.load_status() or {}
        await self._invoke(False, status.get("Last"), status.get("Next") or self.next_after(self._now()))

    async def _invoke(self, past_due: bool, last: dt.datetime | None, nxt: dt.datetime) -> None:
        payload = json.dumps({"Schedule": {"AdjustForDST": True},
                              "ScheduleStatus": {"Last": _iso(last or dt.datetime.min.replace(tzinfo=UTC)),
                                                 "Next": _iso(nxt), "LastUpdated": _iso(self._now())},
                              "IsPastDue": past_due})
        timer = meta._ConverterMeta.get("timerTrigger").decode(meta.Datum(type="json", value=payload), trigger_metadata={})
        try:
            call = self.app.invoke(self.spec.name, {self.spec.trigger["name"]: timer})
            result = await (asyncio.wait_for(call, self.function_timeout) if self.function_timeout else call)
            await self.writer.write(self.spec, result)
        except asyncio.CancelledError:
            raise
        except asyncio.TimeoutError:
            log.error("Function 'Functions.%s' timed out after %ss (functionTimeout): Timeout value of %s was exceeded "
                      "by function: Functions.%s", self.spec.name, self.function_timeout,
                      timespan_text(self.function_timeout), self.spec.name)
        except Exception:
            log.exception("Timer function 'Functions.%s' failed", self.spec.name)

    async def _run(self) -> None:
        run_now, past_due, status = self.startup_decision()
        log.info("Timer 'Functions.%s' schedule %r; next run at %s", self.spec.name, self.expression, _iso(status["Next"]))
        last = status.get("Last")
        due = status["Next"]
        if run_now:
            if past_due:
                log.info("Timer 'Functions.%s' is past due (was due at %s)", self.spec.name, _iso(status["Next"]))
            occurrence = status["Next"] if past_due else self._now()
            due = self.next_after(self._now())
            await self._invoke(past_due, last, due)
            last = occurrence
            due = self.next_after(max(self._now(), occurrence)) if due <= self._now() else due
            self.save_status(last, due)
        while True:
            while True:
                delay = (due - self._now()).total_seconds()
                if delay <= 0:
                    break
                await asyncio.sleep(min(delay, 30.0))
            following = self.next_after(due)
            await self._invoke(False, last, following)
            last = due
            now = self._now()
            due = following if following > now else self.next_after(now)
            self.save_status(last, due)
