"""Every function name in core/names.py is registered once, with the right trigger; host settings are sane."""

from __future__ import annotations

import json
from collections import Counter

from support import ROOT

from core import names
from core.settings import SETTINGS

EXPECTED_TRIGGER = {
    **{name: "orchestrationTrigger" for name in names.ORCHESTRATORS},
    **{name: "activityTrigger" for name in names.ACTIVITIES},
    names.HTTP_SUBMIT_PROVISIONING_REQUEST: "httpTrigger",
    names.HTTP_GET_PROVISIONING_REQUEST: "httpTrigger",
    names.QUEUE_PROVISIONING_REQUEST: "queueTrigger",
    names.TIMER_HEALTH_SWEEP: "timerTrigger",
    names.HTTP_PREFLIGHT: "httpTrigger",
    **{name: "httpTrigger" for name in (names.HTTP_LIST_INSTANCES, names.HTTP_GET_INSTANCE, names.HTTP_INSTANCE_ACTION,
                                        names.HTTP_FLEET_ACTION, names.HTTP_GET_FLEET_ACTION,
                                        names.HTTP_TEARDOWN_INSTANCE, names.HTTP_PLAN, names.HTTP_ADOPT_INSTANCE)},
    names.HTTP_SCHEMA_DIFF: "httpTrigger",
    names.HTTP_SCHEMA_APPLY: "httpTrigger",
    names.HTTP_INSTANCE_DRIFT: "httpTrigger",
    names.HTTP_ENFORCE_INSTANCE_DRIFT: "httpTrigger",
    names.HTTP_ENFORCE_DRIFT: "httpTrigger",
    names.HTTP_GET_DRIFT_ENFORCE: "httpTrigger",
    names.HTTP_START_ROLLOUT: "httpTrigger",
    names.HTTP_GET_ROLLOUT: "httpTrigger",
    names.HTTP_ROLLOUT_ACTION: "httpTrigger",
    names.HTTP_START_ROTATION: "httpTrigger",
    names.HTTP_GET_ROTATION: "httpTrigger",
    names.HTTP_CREDENTIAL_CALENDAR: "httpTrigger",
    names.EVENTGRID_KEY_VAULT_SECRET: "eventGridTrigger",
}


def _functions() -> list:
    import function_app

    # get_functions() may be called only once per app object (it re-validates unique names)
    return list(function_app.app.get_functions())


REGISTERED = _functions()
FUNCTIONS = {f.get_function_name(): f for f in REGISTERED}


def test_every_name_is_registered_once_with_its_trigger():
    assert set(EXPECTED_TRIGGER) == set(names.ALL_FUNCTIONS)
    assert Counter(f.get_function_name() for f in REGISTERED) == Counter(names.ALL_FUNCTIONS)
    for name, trigger in EXPECTED_TRIGGER.items():
        assert FUNCTIONS[name].get_trigger().get_binding_name() == trigger, name


def test_trigger_bindings_match_the_contract():
    bindings = {name: json.loads(f.get_function_json())["bindings"] for name, f in FUNCTIONS.items()}
    submit = next(b for b in bindings[names.HTTP_SUBMIT_PROVISIONING_REQUEST] if b["type"] == "httpTrigger")
    assert submit["route"] == "provisioning-requests" and submit["methods"] == ["POST"]
    assert submit["authLevel"] == "FUNCTION"
    read = next(b for b in bindings[names.HTTP_GET_PROVISIONING_REQUEST] if b["type"] == "httpTrigger")
    assert read["route"] == "provisioning-requests/{id}" and read["authLevel"] == "FUNCTION"
    check = next(b for b in bindings[names.HTTP_PREFLIGHT] if b["type"] == "httpTrigger")
    assert check["route"] == "preflight" and check["methods"] == ["GET"] and check["authLevel"] == "FUNCTION"
    queue = {b["type"]: b for b in bindings[names.QUEUE_PROVISIONING_REQUEST]}
    assert queue["queueTrigger"]["queueName"] == names.QUEUE_PROVISIONING_REQUESTS
    assert queue["queueTrigger"]["connection"] == "AzureWebJobsStorage"
    assert queue["queue"]["queueName"] == names.QUEUE_PROVISIONING_REQUESTS_REJECTED
    timer = next(b for b in bindings[names.TIMER_HEALTH_SWEEP] if b["type"] == "timerTrigger")
    assert timer["schedule"] == "%HEALTH_SWEEP_SCHEDULE%"
    for name in set(names.TRIGGERS) - {names.HTTP_CREDENTIAL_CALENDAR}:  # the calendar starts nothing
        assert any(b["type"] == "durableClient" for b in bindings[name]), name
    for name, route, method in ((names.HTTP_START_ROTATION, "rotations", "POST"),
                                (names.HTTP_GET_ROTATION, "rotations/{id}", "GET"),
                                (names.HTTP_CREDENTIAL_CALENDAR, "credentials", "GET")):
        http = next(b for b in bindings[name] if b["type"] == "httpTrigger")
        assert http["route"] == route and http["methods"] == [method] and http["authLevel"] == "FUNCTION", name


def test_host_json_settings():
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    # 4.32.0: the first standard bundle Microsoft documents with the Durable Task Scheduler provider
    # (tests/deploy/test_bicep_structure.py checks the floor against the scheduler backend).
    assert host["extensionBundle"] == {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.32.0, 5.0.0)"}
    durable = host["extensions"]["durableTask"]
    assert durable["hubName"].isalnum() and durable["hubName"][0].isalpha()
    assert durable["maxConcurrentActivityFunctions"] > 0 and durable["maxConcurrentOrchestratorFunctions"] > 0
    queues = host["extensions"]["queues"]
    assert queues["maxDequeueCount"] >= 1 and queues["messageEncoding"] == "base64"
    assert host["functionTimeout"] and host["logging"]["logLevel"]["default"]


def test_local_settings_example_documents_every_setting():
    example = json.loads((ROOT / "local.settings.example.json").read_text())
    documented = set(example["Values"]) | set(example["_comments"])
    missing = [s.name for s in SETTINGS if s.name not in documented]
    assert not missing, f"local.settings.example.json lacks {missing}"
    assert example["Values"]["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert "AZURE_CLIENT_SECRET" not in example["Values"]
    gitignore = (ROOT / ".gitignore").read_text().split()
    assert "local.settings.json" in gitignore


def test_every_example_request_is_valid():
    from core import model

    examples = sorted(p for p in (ROOT / "examples").glob("*.json") if not p.name.endswith("-expected.json"))
    assert len(examples) >= 3
    for path in examples:
        request = model.parse_request(json.loads(path.read_text()))
        assert request.instances, path.name
    expected = json.loads((ROOT / "examples" / "demo-expected.json").read_text())["instances"]
    demo = json.loads((ROOT / "examples" / "demo-batch.json").read_text())
    assert {i["displayName"] for i in demo["instances"]} == set(expected)
    assert len(expected) >= 20 and len({i["applicationTemplate"].get("id") or i["applicationTemplate"]["displayName"]
                                        for i in demo["instances"]}) >= 3
    # a clean steady state, steady state with failed objects (below Graph's escrow-quarantine threshold) and a failure
    assert {e["outcome"] for e in expected.values()} == {"steadyState", "failed"}
    assert {bool(e.get("withFailures")) for e in expected.values() if e["outcome"] == "steadyState"} == {True, False}
