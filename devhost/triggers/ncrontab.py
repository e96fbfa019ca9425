"""Timer schedules as the Functions timer trigger reads them: NCRONTAB or a TimeSpan.

* NCRONTAB (the ``NCrontab`` library the host uses): ``{second} {minute} {hour} {day} {month}
  {day-of-week}``; 5 fields (no seconds) are accepted too. Each field takes ``*``, a value, a range
  ``a-b``, a step ``*/n``, ``a-b/n`` or ``a/n`` (``a`` to the field's maximum), and comma lists of
  these. Months take ``Jan``..``Dec``, days of week ``Sun``..``Sat`` (0-6, 7 is also Sunday).
  **Day-of-month and day-of-week must both match** (NCrontab's rule; classic cron uses OR).
* TimeSpan ``hh:mm:ss`` (or ``d.hh:mm:ss``): a constant interval after the previous occurrence
  (the host's ``ConstantSchedule``).

Times are naive wall-clock datetimes in the schedule's time zone (devhost uses UTC unless
``WEBSITE_TIME_ZONE`` names an IANA zone, see ``timer.py``).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from devhost.errors import ConfigError

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_MONTHS_FULL = ["january", "february", "march", "april", "may", "june", "july", "august", "september",
                "october", "november", "december"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_DAYS_FULL = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]

# (name, min, max, names) per field, seconds first
_FIELDS = [
    ("second", 0, 59, None),
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day", 1, 31, None),
    ("month", 1, 12, (_MONTHS, _MONTHS_FULL, 1)),
    ("day-of-week", 0, 6, (_DAYS, _DAYS_FULL, 0)),
]


class ScheduleError(ConfigError):
    """A timer schedule is not valid NCRONTAB or TimeSpan."""


def _value(text: str, lo: int, hi: int, names, field: str, expr: str) -> int:
    t = text.strip().lower()
    if names is not None:
        short, full, base = names
        if t in short:
            return short.index(t) + base
        if t in full:
            return full.index(t) + base
    if not t.isdigit():
        raise ScheduleError(f"schedule {expr!r}: {field} value {text!r} is not a number")
    v = int(t)
    if field == "day-of-week" and v == 7:
        return 0
    if not lo <= v <= hi:
        raise ScheduleError(f"schedule {expr!r}: {field} value {v} is outside {lo}-{hi}")
    return v


def _parse_field(text: str, lo: int, hi: int, names, field: str, expr: str) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise ScheduleError(f"schedule {expr!r}: empty item in {field} field {text!r}")
        step, has_step = 1, "/" in part
        if has_step:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"schedule {expr!r}: {field} step {step_text!r} must be a positive number")
            step = int(step_text)
        if part == "*":
            first, last = lo, hi
        elif "-" in part:
            a, b = part.split("-", 1)
            first, last = _value(a, lo, hi, names, field, expr), _value(b, lo, hi, names, field, expr)
            if field == "day-of-week" and b.strip() == "7":
                last = 6  # "1-7" = Monday..Sunday: 7 is Sunday (0)
                values.add(0)
            if first > last:
                raise ScheduleError(f"schedule {expr!r}: {field} range {part!r} runs backwards")
        else:
            first = _value(part, lo, hi, names, field, expr)
            last = hi if has_step else first  # "a/n" runs from a to the field's maximum
        values.update(range(first, last + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed NCRONTAB expression; :meth:`next_after` gives the next occurrence."""

    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]

    @classmethod
    def parse(cls, expression: str) -> "CronSchedule":
        parts = expression.split()
        if len(parts) == 5:
            parts = ["0"] + parts
        if len(parts) != 6:
            raise ScheduleError(
                f"schedule {expression!r}: expected 6 fields '{{second}} {{minute}} {{hour}} {{day}} {{month}} {{day-of-week}}' "
                f"(or 5 without seconds), got {len(parts)}"
            )
        sets = [_parse_field(p, lo, hi, names, name, expression) for p, (name, lo, hi, names) in zip(parts, _FIELDS)]
        return cls(expression, *sets)

    def matches(self, t: dt.datetime) -> bool:
        return (t.second in self.seconds and t.minute in self.minutes and t.hour in self.hours
                and t.day in self.days and t.month in self.months and (t.isoweekday() % 7) in self.days_of_week)

    def next_after(self, after: dt.datetime) -> dt.datetime:
        """First occurrence strictly after ``after`` (microseconds dropped), searching up to 5 years."""
        t = after.replace(microsecond=0) + dt.timedelta(seconds=1)
        limit = after + dt.timedelta(days=366 * 5)
        while t <= limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0, second=0) + dt.timedelta(days=32)).replace(day=1)
                continue
            if t.day not in self.days or (t.isoweekday() % 7) not in self.days_of_week:
                t = t.replace(hour=0, minute=0, second=0) + dt.timedelta(days=1)
                continue
            if t.hour not in self.hours:
                t = t.replace(minute=0, second=0) + dt.timedelta(hours=1)
                continue
            if t.minute not in self.minutes:
                t = t.replace(second=0) + dt.timedelta(minutes=1)
                continue
            if t.second not in self.seconds:
                t = t + dt.timedelta(seconds=1)
                continue
            return t
        raise ScheduleError(f"schedule {self.expression!r} has no occurrence within 5 years")


@dataclass(frozen=True)
class ConstantSchedule:
    """A TimeSpan schedule (``hh:mm:ss``): every ``interval`` after the previous occurrence."""

    expression: str
    interval: dt.timedelta

    def next_after(self, after: dt.datetime) -> dt.datetime:
        return after + self.interval


_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2})$")


def parse_schedule(expression: str) -> CronSchedule | ConstantSchedule:
    """NCRONTAB when it has 5-6 space-separated fields, else a TimeSpan like ``00:05:00``."""
    text = expression.strip()
    m = _TIMESPAN.match(text)
    if m and " " not in text:
        days, h, mi, s = (int(x or 0) for x in m.groups())
        interval = dt.timedelta(days=days, hours=h, minutes=mi, seconds=s)
        if interval <= dt.timedelta(0):
            raise ScheduleError(f"schedule {expression!r}: a TimeSpan schedule must be positive")
        return ConstantSchedule(text, interval)
    return CronSchedule.parse(text)
