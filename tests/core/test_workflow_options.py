"""core.workflow_options: one source for the orchestrators' options, the settings table.

The options once had their own defaults, and five of them disagreed with the settings table (an
orchestration started by hand ran with other values than one started by a trigger). Now every
default of an option that is a setting is the setting's default, and these tests fail if the two
can drift apart again.
"""

from __future__ import annotations

import dataclasses

from core import settings as s
from core.workflow_options import FROM_SETTINGS, RetryPolicy, WorkflowOptions, workflow_options

BASE = {"KEY_VAULT_URL": "https://vault.example.net/"}


def test_the_defaults_are_the_settings_tables():
    assert WorkflowOptions() == WorkflowOptions.from_settings(s.Settings.from_env(BASE))
    assert WorkflowOptions.from_dict({}) == WorkflowOptions()
    # the five that used to disagree: the settings table wins
    options = WorkflowOptions()
    assert (options.max_throttle_waits, options.poll_max_interval, options.polls_per_execution,
            options.sweep_max_in_flight, options.activity_retry.first_retry_interval_ms) == (10, 300, 20, 10, 5000)


def test_every_option_from_a_setting_follows_it():
    changed = {}
    for setting in s.SETTINGS:
        if setting.field in set(FROM_SETTINGS.values()) | {"activity_retry_first_interval_seconds",
                                                             "activity_retry_max_attempts"}:
            changed[setting.name] = (("false" if setting.default else "true") if setting.type == "bool" else f"{setting.default}-x"
                                     if setting.type == "str" else str(int(setting.default) + 7))
    changed["MONITOR_MAX_POLL_SECONDS"] = "100000"  # stays above the first poll
    settings = s.Settings.from_env({**BASE, **changed})
    options = WorkflowOptions.from_settings(settings)
    for name, source in FROM_SETTINGS.items():
        assert getattr(options, name) == getattr(settings, source) != getattr(WorkflowOptions(), name), name
    assert options.activity_retry == RetryPolicy(12000, 12)
    # what a trigger sends is exactly what an orchestrator rebuilds
    assert WorkflowOptions.from_dict(workflow_options(settings)) == options


def test_every_workflow_setting_is_an_option():
    workflow_prefixes = ("MONITOR_", "THROTTLED_", "BATCH_", "HEALTH_SWEEP_MAX", "HEALTH_SWEEP_RESTART",
                         "ROTATION_MAX_IN_FLIGHT")
    mapped = set(FROM_SETTINGS.values())
    for setting in s.SETTINGS:
        if setting.name.startswith(workflow_prefixes):
            assert setting.field in mapped, setting.name
    assert mapped <= {f.name for f in dataclasses.fields(s.Settings)}


def test_the_trigger_dict_keeps_its_keys_and_the_full_dict_round_trips():
    sent = workflow_options(s.Settings.from_env(BASE))
    assert list(sent) == ["maxInstancesInFlight", "subBatchSize", "subBatchesInFlight", "reportContainer",
                          "reportInlineMax", "activityRetry", "maxThrottleWaits", "pollFirstInterval",
                          "pollMaxInterval", "monitorDeadline", "pollsPerExecution", "sweepMaxInFlight",
                          "restartCredentialQuarantine", "sweepPageSize", "sweepMaxReported",
                          "sweepDriftCheck", "rotationMaxInFlight", "sweepRotationSafetyNet",
                          "credentialExpiryWarningDays"]
    assert sent["activityRetry"] == {"firstRetryIntervalMs": 5000, "maxAttempts": 5}
    custom = WorkflowOptions(step_retry={"ensure_job": RetryPolicy(100, 2)}, poll_backoff=3.0)
    assert WorkflowOptions.from_dict(custom.to_dict()) == custom
    assert custom.retry_for("ensure_job") == RetryPolicy(100, 2) and custom.retry_for("x") == custom.activity_retry
    assert RetryPolicy.from_dict({"firstRetryIntervalMs": 0, "maxAttempts": -1}) == RetryPolicy(1, 1)
