"""Timer triggers: the NCRONTAB/TimeSpan parser (table tests) and real timers in a devhost subprocess
(every second, run_on_startup, past_due after the host was down, schedule from an app setting)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from devhost.errors import ConfigError
from devhost.testing import start_devhost
from devhost.triggers.ncrontab import CronSchedule, ScheduleError, parse_schedule
from host_support import APPS, read_records, wait_until

T0 = dt.datetime(2024, 1, 1, 0, 0, 0)  # a Monday


def _next(expr: str, start: dt.datetime = T0, n: int = 3) -> list[str]:
    s, t, out = parse_schedule(expr), start, []
    for _ in range(n):
        t = s.next_after(t)
        out.append(t.strftime("%Y-%m-%d %H:%M:%S"))
    return out


@pytest.mark.parametrize("expr, expected", [
    ("*/1 * * * * *", ["2024-01-01 00:00:01", "2024-01-01 00:00:02", "2024-01-01 00:00:03"]),
    ("*/15 * * * * *", ["2024-01-01 00:00:15", "2024-01-01 00:00:30", "2024-01-01 00:00:45"]),
    ("0 */5 * * * *", ["2024-01-01 00:05:00", "2024-01-01 00:10:00", "2024-01-01 00:15:00"]),
    ("0 30 9 * * 1-5", ["2024-01-01 09:30:00", "2024-01-02 09:30:00", "2024-01-03 09:30:00"]),
    ("0 30 9 * * Sat,Sun", ["2024-01-06 09:30:00", "2024-01-07 09:30:00", "2024-01-13 09:30:00"]),
    ("0 0 12 * * 7", ["2024-01-07 12:00:00", "2024-01-14 12:00:00", "2024-01-21 12:00:00"]),
    ("10,20 0 0 * * *", ["2024-01-01 00:00:10", "2024-01-01 00:00:20", "2024-01-02 00:00:10"]),
    ("0 0 8-10/2 * * *", ["2024-01-01 08:00:00", "2024-01-01 10:00:00", "2024-01-02 08:00:00"]),
    ("5/20 * * * * *", ["2024-01-01 00:00:05", "2024-01-01 00:00:25", "2024-01-01 00:00:45"]),
    ("0 0 0 29 Feb *", ["2024-02-29 00:00:00", "2028-02-29 00:00:00", "2032-02-29 00:00:00"]),
    ("0 0 0 1 jan,jul *", ["2024-07-01 00:00:00", "2025-01-01 00:00:00", "2025-07-01 00:00:00"]),
    # NCrontab: day-of-month AND day-of-week must both match (Friday the 13th)
    ("0 0 0 13 * 5", ["2024-09-13 00:00:00", "2024-12-13 00:00:00", "2025-06-13 00:00:00"]),
    ("0 0 * * *", ["2024-01-02 00:00:00", "2024-01-03 00:00:00", "2024-01-04 00:00:00"]),  # 5 fields: no seconds
    ("00:05:00", ["2024-01-01 00:05:00", "2024-01-01 00:10:00", "2024-01-01 00:15:00"]),  # TimeSpan
    ("1.00:00:00", ["2024-01-02 00:00:00", "2024-01-03 00:00:00", "2024-01-04 00:00:00"]),
])
def test_schedule_occurrences(expr, expected):
    assert _next(expr) == expected


@pytest.mark.parametrize("expr", ["* * * *", "61 * * * * *", "* * 24 * * *", "*/0 * * * * *", "0 0 0 0 * *",
                                  "0 0 0 * 13 *", "x * * * * *", "0 0 5-1 * * *", "0 0 0 31 2 *", "00:00:00"])
def test_invalid_schedules_are_config_errors(expr):
    with pytest.raises(ConfigError) as err:
        _next(expr)
    assert "schedule" in str(err.value)


def test_schedule_error_is_a_config_error():
    assert issubclass(ScheduleError, ConfigError)
    assert CronSchedule.parse("0 0 * * * *").matches(dt.datetime(2024, 5, 5, 7, 0, 0))


@pytest.mark.timeout(120)
def test_timers_fire_run_on_startup_and_report_past_due_after_downtime(tmp_path):
    records = tmp_path / "records"
    records.mkdir()
    host = start_devhost(APPS / "host_timer" / "function_app.py", tmp_path / "state",
                         env={"HOST_TEST_RECORD_DIR": str(records), "HOST_TIMER_SCHEDULE": "*/1 * * * * *"})
    try:
        ticks = wait_until(lambda: (r := read_records(records, "every_second")) and len(r) >= 2 and r,
                           what="two per-second timer calls")
        assert not any(t["past_due"] for t in ticks)
        startup = read_records(records, "on_startup")
        assert len(startup) == 1 and startup[0]["past_due"] is False

        # crash the host, stay down past the next due time, start again: first call is past due
        host.kill()
        status_file = tmp_path / "state" / "timers" / "every_second.json"
        due = dt.datetime.fromisoformat(json.loads(status_file.read_text())["Next"])
        wait_until(lambda: dt.datetime.now(dt.timezone.utc) > due + dt.timedelta(seconds=1), timeout=10,
                   what="the next due time to pass while the host is down")
        before = len(read_records(records, "every_second"))
        host.start()
        after = wait_until(lambda: (r := read_records(records, "every_second")) and len(r) > before and r,
                           what="timer call after restart")
        assert after[before]["past_due"] is True
        # the yearly run_on_startup function was not due: it runs again on start, not past due
        startup = wait_until(lambda: (r := read_records(records, "on_startup")) and len(r) == 2 and r,
                             what="second run_on_startup call")
        assert startup[1]["past_due"] is False
    finally:
        host.stop()


@pytest.mark.timeout(60)
def test_bad_schedule_setting_stops_startup_with_a_clear_error(tmp_path):
    from devhost.testing import DevhostStartError

    (tmp_path / "records").mkdir()
    with pytest.raises(DevhostStartError) as err:
        start_devhost(APPS / "host_timer" / "function_app.py", tmp_path / "state",
                      env={"HOST_TEST_RECORD_DIR": str(tmp_path / "records"), "HOST_TIMER_SCHEDULE": "99 * * * * *"})
    assert "second value 99 is outside 0-59" in str(err.value)
    with pytest.raises(DevhostStartError) as err:
        start_devhost(APPS / "host_timer" / "function_app.py", tmp_path / "state2",
                      env={"HOST_TEST_RECORD_DIR": str(tmp_path / "records")})
    assert "HOST_TIMER_SCHEDULE" in str(err.value)
