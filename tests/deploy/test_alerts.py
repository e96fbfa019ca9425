"""The fleet alerts and workbook (infra/app/alerts.bicep) against the events the app logs (core/events.py).

No Bicep compiler and no Kusto engine offline, so the checks are about what goes wrong silently
without them: a rule whose query names an event nobody logs (it never fires), a field the event does
not carry (an empty dimension), a dimension the query does not output, a rule with no action group
or scoped elsewhere than the Application Insights resource, a duration Azure Monitor refuses, a
workbook that is not JSON, docs that show another query than the one deployed. The helpers are
checked on planted bad input at the end.
"""

from __future__ import annotations

import ast
import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from bicep_text import BicepFile, matching_close
from deploy_support import REPO_ROOT
from test_bicep_structure import module_body, resource_body

from core import events
from core.contracts import OUTCOMES, STEADY_WITH_FAILURES
from core.fleet import HEALTH
from core.model import LABEL_VALUE_PATTERN

INFRA = REPO_ROOT / "infra"
APP = INFRA / "app"
ALERTS = BicepFile(APP / "alerts.bicep")
KQL_DIR = APP / "alerts"
KQL_FILES = sorted(KQL_DIR.glob("*.kql"))
WORKBOOK_PATH = APP / "workbooks" / "fleet.workbook.json"
DOCS = REPO_ROOT / "docs" / "fleet-operations.md"

# The newest stable API versions of the three resource types (azure-rest-api-specs,
# specification/monitor/.../stable/2023-12-01 and 2023-01-01, applicationinsights/.../stable/2023-06-01).
API_VERSIONS = {
    "Microsoft.Insights/scheduledQueryRules": "2023-12-01",
    "Microsoft.Insights/actionGroups": "2023-01-01",
    "Microsoft.Insights/workbooks": "2023-06-01",
}
# Evaluation frequencies a log search alert rule offers (1 minute to 1 day).
FREQUENCIES = {"PT1M", "PT5M", "PT10M", "PT15M", "PT30M", "PT45M", "PT1H", "PT2H", "PT3H", "PT4H", "PT5H",
               "PT6H", "P1D"}
# The keys of a count map per event whose `counts` the queries read one by one.
COUNT_KEYS = {
    events.BATCH_COMPLETED: {"total", STEADY_WITH_FAILURES, *OUTCOMES},
    events.SWEEP_COMPLETED: {"total", *HEALTH},
}


# -- reading core/events.py, KQL and ISO 8601 ------------------------------------------------------

def documented_fields() -> dict[str, set[str]]:
    """Per event, the fields core/events.py's docstring lists in its bullet (``name`` - ... ``field`` ...)."""
    doc = events.__doc__ or ""
    fields: dict[str, set[str]] = {}
    for bullet in re.split(r"\n(?=\* ``)", doc):
        match = re.match(r"\* ``(\w+)``", bullet.strip())
        if match:
            tokens = set(re.findall(r"``(\w+)``", bullet)) - {match.group(1)}
            fields[match.group(1)] = {t for t in tokens if not t.isupper()} | {"event"}
    return fields


def query_events(query: str) -> set[str]:
    """The event names a query selects: its ``tostring(e.event) == "..."`` checks (and ``in (...)``)."""
    names = set(re.findall(r'tostring\(e\.event\)\s*==\s*"([^"]+)"', query))
    for group in re.findall(r"tostring\(e\.event\)\s+in\s*\(([^)]*)\)", query):
        names |= set(re.findall(r'"([^"]+)"', group))
    return names


def prefilter_events(query: str) -> set[str]:
    return set(re.findall(r'message\s+has\s+"([^"]+)"', query))


def query_fields(query: str) -> set[str]:
    """The top-level fields a query reads from the parsed event ``e``: ``e.name`` and ``e["name"]``."""
    return set(re.findall(r"\be\.([A-Za-z_]\w*)", query)) | set(re.findall(r'\be\["([^"]+)"\]', query))


def count_keys(query: str) -> set[str]:
    return set(re.findall(r"\be\.counts\.(\w+)", query))


def output_columns(query: str) -> list[str]:
    """The columns of the query's last ``| project`` (``name = expr`` or a bare column)."""
    projects = re.split(r"\n\s*\|\s*project\s+", "\n" + query)
    assert len(projects) > 1, "no project"
    last = re.split(r"\n\s*\|", projects[-1])[0]
    columns, depth, current = [], 0, ""
    for ch in last + ",":
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            columns.append(current.strip())
            current = ""
        else:
            current += ch
    return [re.match(r"(\w+)", c).group(1) for c in columns if c]  # type: ignore[union-attr]


def iso_duration(text: str) -> timedelta:
    match = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", text)
    if not match or text in ("P", "PT") or text.endswith("T"):
        raise ValueError(f"{text!r} is not an ISO 8601 duration")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def check_query(query: str, where: str) -> str:
    """The one event ``query`` selects, after checking its names and fields; raises AssertionError."""
    assert query.lstrip().startswith("traces"), f"{where}: a log search query starts with its table (traces)"
    selected = query_events(query)
    assert len(selected) == 1, f"{where}: select exactly one event, got {selected}"
    (event,) = selected
    assert event in events.EVENTS, f"{where}: {event!r} is not in core.events.EVENTS: nothing logs it"
    assert prefilter_events(query) == selected, f"{where}: the `message has` pre-filter names another event"
    assert "parse_json(message)" in query, f"{where}: the event is the JSON in message"
    unknown = query_fields(query) - documented_fields()[event]
    assert not unknown, f"{where}: {event} carries no field(s) {sorted(unknown)} (core/events.py)"
    if count_keys(query):
        assert event in COUNT_KEYS, f"{where}: {event} has no counts map"
        assert count_keys(query) <= COUNT_KEYS[event], f"{where}: unknown counts {count_keys(query) - COUNT_KEYS[event]}"
    return event


# -- the Bicep ---------------------------------------------------------------------------------------

def param_default(file: BicepFile, name: str) -> str:
    match = re.search(rf"^param {name} string = '([^']*)'", file.text, re.MULTILINE)
    assert match, f"param {name} has no literal default"
    return match.group(1)


def var_objects(file: BicepFile, name: str) -> list[str]:
    """The bodies of the object literals of ``var <name> = [ {...} {...} ]`` (or of one ``{...}``)."""
    match = re.search(rf"^var {name} = ([\[{{])", file.text, re.MULTILINE)
    assert match, f"var {name} not found"
    start = match.start(1)
    block = file.text[start : matching_close(file.text, start) + 1]
    if block.startswith("{"):
        return [block[1:-1]]
    bodies, i = [], 1
    while (i := block.find("{", i)) != -1:
        end = matching_close(block, i)
        bodies.append(block[i + 1 : end])
        i = end + 1
    return bodies


def literal(body: str, key: str) -> str | None:
    match = re.search(rf"^\s*{key}:\s*'([^']*)'", body, re.MULTILINE)
    return match.group(1) if match else None


def string_list(body: str, key: str) -> list[str]:
    match = re.search(rf"^\s*{key}:\s*\[([^\]]*)\]", body, re.MULTILINE)
    assert match, f"{key} list not found"
    return re.findall(r"'([^']*)'", match.group(1))


def setting(body: str, key: str) -> str:
    """``key: 'literal'`` or ``key: someParam`` (resolved to the param's default) in an object body."""
    value = literal(body, key)
    if value is not None:
        return value
    match = re.search(rf"^\s*{key}:\s*(\w+)\s*$", body, re.MULTILINE)
    assert match, f"{key} not set"
    return param_default(ALERTS, match.group(1))


def severity(body: str) -> int:
    match = re.search(r"^\s*severity:\s*(\d+)\s*$", body, re.MULTILINE)
    assert match, "no literal severity"
    return int(match.group(1))


def rules() -> list[dict]:
    """Every alert rule the module defines: key, query text, dimensions, frequency, window, severity."""
    result = []
    for body in var_objects(ALERTS, "fleetRules"):
        load = re.search(r"query:\s*trim\(loadTextContent\('([^']+)'\)\)", body)
        assert load, "a fleet rule's query is not loaded from a .kql file"
        result.append({"key": literal(body, "key"), "file": load.group(1), "dimensions": string_list(body, "dimensions"),
                       "evaluationFrequency": setting(body, "evaluationFrequency"),
                       "windowSize": setting(body, "windowSize"), "severity": severity(body)})
    (unhealthy,) = var_objects(ALERTS, "instanceUnhealthy")
    load = re.search(r"^var instanceUnhealthyQuery = trim\(loadTextContent\('([^']+)'\)\)", ALERTS.text, re.MULTILINE)
    assert load
    # its two resources (default and per owner) take the schedule from the module's parameters
    schedules = {(setting(resource_body(ALERTS, symbol), "evaluationFrequency"), setting(resource_body(ALERTS, symbol), "windowSize"))
                 for symbol in ("instanceUnhealthyDefault", "instanceUnhealthyByOwner")}
    assert len(schedules) == 1
    ((frequency, window),) = schedules
    result.append({"key": literal(unhealthy, "key"), "file": load.group(1), "dimensions": string_list(unhealthy, "dimensions"),
                   "evaluationFrequency": frequency, "windowSize": window, "severity": severity(unhealthy)})
    for rule in result:
        rule["query"] = (APP / rule["file"]).read_text(encoding="utf-8").strip()
    return result


RULES = rules()


def resources(file: BicepFile) -> dict[str, tuple[str, str, bool]]:
    """symbol -> (type, api version, existing)."""
    pattern = r"^resource (\w+) '([^'@]+)@([^']+)'( existing)? ="
    return {m.group(1): (m.group(2), m.group(3), bool(m.group(4))) for m in re.finditer(pattern, file.text, re.MULTILINE)}


def test_the_module_is_wired_from_main_with_the_application_insights_resource() -> None:
    main = BicepFile(INFRA / "main.bicep")
    body = module_body(main, "alerts")
    assert re.search(r"^module alerts 'app/alerts\.bicep' = \{", main.text, re.MULTILINE)
    assert "applicationInsightsName: monitoring.outputs.applicationInsightsName" in body
    for name in ("alertEmails", "alertWebhookUrl", "alertOwnerEmails", "alertOwnerWebhooks"):
        assert f"{name}: {name}" in body, name
    parameters = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    env = {"alertEmails": "ALERT_EMAILS", "alertWebhookUrl": "ALERT_WEBHOOK_URL",
           "alertOwnerEmails": "ALERT_OWNER_EMAILS", "alertOwnerWebhooks": "ALERT_OWNER_WEBHOOKS"}
    for name, variable in env.items():
        assert parameters[name]["value"] == "${" + variable + "}", name
    # the webhooks may carry a token: secure parameters in main and in the module, never in an output
    for file in (main, ALERTS):
        for name in ("alertWebhookUrl", "alertOwnerWebhooks"):
            assert re.search(rf"@secure\(\)\n(@description\([^\n]*\)\n)?param {name} (string|object)", file.raw), (file.path.name, name)
        outputs = re.findall(r"^output .*$", file.text, re.MULTILINE)
        assert not [o for o in outputs if "ebhook" in o], outputs


def test_api_versions_and_the_scope_of_every_rule() -> None:
    declared = resources(ALERTS)
    assert declared["applicationInsights"][0] == "Microsoft.Insights/components" and declared["applicationInsights"][2]
    assert re.search(r"resource applicationInsights '[^']+' existing = \{\s*name: applicationInsightsName\s*\}", ALERTS.text)
    kinds = {t for t, _, existing in declared.values() if not existing}
    assert kinds == set(API_VERSIONS)
    for symbol, (kind, version, existing) in declared.items():
        if not existing:
            assert version == API_VERSIONS[kind], (symbol, version)
    query_rules = [s for s, (k, _, _) in declared.items() if k == "Microsoft.Insights/scheduledQueryRules"]
    assert sorted(query_rules) == ["fleetAlerts", "instanceUnhealthyByOwner", "instanceUnhealthyDefault"]
    for symbol in query_rules:
        body = resource_body(ALERTS, symbol)
        assert "kind: 'LogAlert'" in body, symbol
        assert re.search(r"scopes:\s*\[\s*applicationInsights\.id\s*\]", body), f"{symbol} is not scoped to Application Insights"
        assert re.search(r"timeAggregation: 'Count'\s*operator: 'GreaterThan'\s*threshold: 0\b", body), symbol
        assert re.search(r"dimensions: \[for name in \w+\.dimensions: \{\s*name: name\s*operator: 'Include'\s*values: \['\*'\]", body), symbol
        assert "autoMitigate: true" in body and "enabled: true" in body, symbol
        group = re.search(r"actionGroups:\s*\[\s*([\w\[\]]+)\.id\s*\]", body)
        assert group, f"{symbol} has no action group"
        expected = "ownerGroups[i]" if symbol == "instanceUnhealthyByOwner" else "defaultGroup"
        assert group.group(1) == expected, symbol
    for symbol in ("defaultGroup", "ownerGroups"):
        body = resource_body(ALERTS, symbol)
        assert "location: 'global'" in body and "enabled: true" in body
        assert body.count("useCommonAlertSchema: true") == 2, symbol  # email and webhook receivers
        assert re.search(r"groupShortName: (?:'[^']{1,12}'|take\('[^']*', 12\))", body), symbol
    workbook = resource_body(ALERTS, "workbook")
    assert "kind: 'shared'" in workbook and "sourceId: applicationInsights.id" in workbook
    assert "category: 'workbook'" in workbook and "version: 'Notebook/1.0'" in workbook
    assert re.search(r"serializedData: string\(union\(loadJsonContent\('workbooks/fleet\.workbook\.json'\), \{\s*"
                     r"fallbackResourceIds: \[\s*applicationInsights\.id\s*\]", workbook)
    assert re.search(r"name: guid\(", workbook), "a workbook's name is a GUID, deterministic to update in place"


def test_no_receiver_no_rule_and_owner_routing() -> None:
    text = ALERTS.text
    assert re.search(r"^var hasDefaultReceivers = !empty\(defaultEmails\) \|\| !empty\(alertWebhookUrl\)$", text, re.MULTILINE)
    assert re.search(r"^resource defaultGroup '[^']+' = if \(hasDefaultReceivers\)", text, re.MULTILINE)
    assert re.search(r"^resource instanceUnhealthyDefault '[^']+' = if \(hasDefaultReceivers\)", text, re.MULTILINE)
    assert re.search(r"^resource fleetAlerts '[^']+' = \[for rule in fleetRules: if \(hasDefaultReceivers\)", text, re.MULTILINE)
    assert re.search(r"^resource ownerGroups '[^']+' = \[for owner in owners:", text, re.MULTILINE)
    assert re.search(r"^resource instanceUnhealthyByOwner '[^']+' = \[for \(owner, i\) in owners:", text, re.MULTILINE)
    assert re.search(r"^var owners = union\(map\(items\(alertOwnerEmails\), entry => entry\.key\), "
                     r"map\(items\(alertOwnerWebhooks\), entry => entry\.key\)\)$", text, re.MULTILINE)
    # azd hands an object parameter the JSON of its variable (azd 1.23.4+, Azure/azure-dev#6694); a JSON text in a
    # string parameter would break azd's parameters file (quotes inside a JSON string)
    for file in (BicepFile(INFRA / "main.bicep"), ALERTS):
        for name in ("alertOwnerEmails", "alertOwnerWebhooks"):
            assert re.search(rf"^param {name} object = \{{\}}$", file.text, re.MULTILINE), (file.path.name, name)
    # the default rule excludes the owners with a group of their own; each owner's rule keeps only its own
    assert re.search(r"^var defaultOwnerFilter = empty\(owners\) \? '' : '\\n\| where owner !in \(dynamic\(\$\{string\(owners\)\}\)\)'$",
                     text, re.MULTILINE)
    assert "query: '${instanceUnhealthyQuery}${defaultOwnerFilter}'" in resource_body(ALERTS, "instanceUnhealthyDefault")
    assert ("query: '${instanceUnhealthyQuery}\\n| where owner in (dynamic(${string([owner])}))'"
            in resource_body(ALERTS, "instanceUnhealthyByOwner"))
    # an owner label value goes into the KQL as JSON inside dynamic(): a label value can hold no quote or
    # backslash, so the JSON of any allowed value is the plain string in double quotes
    for value in ("cloud-team", "HR apps/EMEA", "a@b.example", "x:y.z_1"):
        assert re.fullmatch(LABEL_VALUE_PATTERN, value) and json.dumps([value]) == f'["{value}"]'
    for value in ('a"b', "a\\b", "a'b"):
        assert not re.fullmatch(LABEL_VALUE_PATTERN, value)
    unhealthy = next(r for r in RULES if r["key"] == "instance-unhealthy")
    assert "owner" in output_columns(unhealthy["query"])
    assert "owner" in documented_fields()[events.CLASSIFICATION_CHANGED]


def test_every_query_file_is_loaded_and_every_load_exists() -> None:
    loaded = set(re.findall(r"load(?:Text|Json)Content\('([^']+)'\)", ALERTS.text))
    for path in loaded:
        assert (APP / path).is_file(), path
    assert {f"alerts/{p.name}" for p in KQL_FILES} <= loaded
    assert {r["file"] for r in RULES} == {f"alerts/{p.name}" for p in KQL_FILES}
    assert len({r["key"] for r in RULES}) == len(RULES)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r["key"])
def test_rule_query_selects_a_logged_event_with_its_documented_fields(rule: dict) -> None:
    check_query(rule["query"], rule["file"])


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r["key"])
def test_rule_dimensions_are_output_columns_and_durations_are_valid(rule: dict) -> None:
    columns = output_columns(rule["query"])
    assert 1 <= len(rule["dimensions"]) <= 6, "a log search alert splits by at most six dimensions"
    assert set(rule["dimensions"]) <= set(columns), set(rule["dimensions"]) - set(columns)
    frequency, window = rule["evaluationFrequency"], rule["windowSize"]
    assert frequency in FREQUENCIES, frequency
    assert iso_duration(frequency) <= iso_duration(window) <= timedelta(days=1), (frequency, window)
    assert rule["severity"] in range(5)


def test_the_rules_cover_point_7s_events() -> None:
    selected = {check_query(r["query"], r["file"]) for r in RULES}
    assert selected == {events.CLASSIFICATION_CHANGED, events.CREDENTIAL_EXPIRY, events.ROTATION_FAILED,
                        events.BATCH_COMPLETED}
    unhealthy = next(r for r in RULES if r["key"] == "instance-unhealthy")["query"]
    bad = re.search(r'toCategory in \(([^)]*)\)', unhealthy)
    assert bad and set(re.findall(r'"(\w+)"', bad.group(1))) == {"quarantined", "failing", "disabled"} <= set(HEALTH)
    assert "instanceKey" in next(r for r in RULES if r["key"] == "instance-unhealthy")["dimensions"]


# -- the workbook ------------------------------------------------------------------------------------

def workbook_items(node: dict) -> list[dict]:
    found = []
    for item in node.get("items", []):
        found.append(item)
        if item.get("type") == 12:  # a group holds items of its own
            found += workbook_items(item.get("content", {}))
    return found


def test_workbook_is_valid_json_whose_queries_name_logged_events_and_documented_fields() -> None:
    workbook = json.loads(WORKBOOK_PATH.read_text(encoding="utf-8"))
    assert workbook["version"] == "Notebook/1.0"
    assert "fallbackResourceIds" not in workbook, "the Bicep sets it to the deployed Application Insights resource"
    items = workbook_items(workbook)
    names = [i["name"] for i in items]
    assert len(names) == len(set(names)), "step names must be unique"
    parameters = [p["name"] for i in items if i["type"] == 9 for p in i["content"]["parameters"]]
    assert "TimeRange" in parameters
    drawn: set[tuple[str, str]] = set()
    queries = [i for i in items if i["type"] == 3]
    assert len(queries) >= 8
    for item in queries:
        content = item["content"]
        assert content["version"] == "KqlItem/1.0" and content["queryType"] == 0, item["name"]
        assert content["resourceType"] == "microsoft.insights/components", item["name"]
        assert content["visualization"] in {"timechart", "barchart", "table", "piechart", "tiles"}, item["name"]
        assert "{TimeRange}" in content["query"], f"{item['name']} ignores the time range"
        event = check_query(content["query"], item["name"])
        drawn |= {(event, field) for field in query_fields(content["query"])}
    assert {(events.SWEEP_COMPLETED, "counts"), (events.SWEEP_COMPLETED, "quarantinedByReason"),
            (events.BATCH_COMPLETED, "counts"), (events.BATCH_COMPLETED, "durationSeconds"),
            (events.ROTATION_COMPLETED, "counts")} <= drawn


# -- the docs ----------------------------------------------------------------------------------------

def docs_section() -> str:
    text = DOCS.read_text(encoding="utf-8")
    start = text.index("## Alerts and the workbook")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_docs_show_the_deployed_queries_the_settings_and_the_sources() -> None:
    section = docs_section()
    blocks = [b.strip() for b in re.findall(r"```kusto\n(.*?)```", section, re.DOTALL)]
    deployed = [p.read_text(encoding="utf-8").strip() for p in KQL_FILES]
    assert sorted(blocks) == sorted(deployed), "docs/fleet-operations.md must show exactly the .kql files"
    for variable in ("ALERT_EMAILS", "ALERT_WEBHOOK_URL", "ALERT_OWNER_EMAILS", "ALERT_OWNER_WEBHOOKS"):
        assert f"azd env set {variable} " in section, variable
    for example in re.findall(r"azd env set ALERT_OWNER_\w+ '([^']+)'", section):
        assert isinstance(json.loads(example), dict)  # the Bicep json()s it
    for source in ("templates/microsoft.insights/scheduledqueryrules", "templates/microsoft.insights/actiongroups",
                   "templates/microsoft.insights/workbooks", "azure-monitor/reference/tables/apptraces",
                   "azure-functions/functions-reference-python#logging"):
        assert f"https://learn.microsoft.com/azure/{source}" in section, source
    for rule in RULES:
        assert rule["key"] in ALERTS.text
    # what each alert means and what to do
    assert section.count("What to do:") >= 4


def test_trace_telemetry_is_not_sampled_away() -> None:
    """Adaptive sampling drops traces at peak (host.json samplingSettings); an event dropped is an alert
    that never fires (https://learn.microsoft.com/azure/azure-functions/configure-monitoring#configure-sampling)."""
    host = json.loads((REPO_ROOT / "host.json").read_text(encoding="utf-8"))
    sampling = host["logging"]["applicationInsights"]["samplingSettings"]
    if sampling.get("isEnabled", True):
        assert "Trace" in sampling["excludedTypes"].split(";")


def test_every_rule_description_links_to_its_what_to_do_section() -> None:
    """The alert's description (in every notification) names the docs section that says what to do."""
    headings = re.findall(r"^#{2,4} (.+)$", DOCS.read_text(encoding="utf-8"), re.MULTILINE)
    slugs = {re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", h.strip().lower())) for h in headings}
    links = re.findall(r"description: '[^'\n]*docs/fleet-operations\.md#([\w-]+)'", ALERTS.text)
    assert len(links) == len(RULES)
    for link in links:
        assert link in slugs, f"docs/fleet-operations.md has no section #{link}"


# -- the checks above can fail: the helpers on planted input -----------------------------------------

def test_helpers_catch_unknown_events_undocumented_fields_and_bad_durations() -> None:
    good = ('traces\n| where message has "provisioningBatchCompleted"\n| extend e = parse_json(message)\n'
            '| where tostring(e.event) == "provisioningBatchCompleted"\n'
            '| project batchId = tostring(e.batchId), failed = toint(e.counts.failed), x = strcat("a", "b")')
    assert check_query(good, "good") == events.BATCH_COMPLETED
    assert output_columns(good) == ["batchId", "failed", "x"]
    with pytest.raises(AssertionError, match="not in core.events.EVENTS"):
        check_query(good.replace("provisioningBatchCompleted", "provisioningBatchFinished"), "renamed")
    with pytest.raises(AssertionError, match="carries no field"):
        check_query(good.replace("e.batchId", "e.batchKey"), "field")
    with pytest.raises(AssertionError, match="unknown counts"):
        check_query(good.replace("e.counts.failed", "e.counts.broken"), "counts")
    with pytest.raises(AssertionError, match="pre-filter"):
        check_query(good.replace('has "provisioningBatchCompleted"', 'has "healthSweepCompleted"'), "prefilter")
    with pytest.raises(AssertionError, match="starts with its table"):
        check_query("let x = 1;\n" + good, "let")
    assert iso_duration("PT15M") == timedelta(minutes=15) and iso_duration("P1D") == timedelta(days=1)
    for bad in ("15m", "PT", "P", "PT1H30", "P1DT"):
        with pytest.raises(ValueError):
            iso_duration(bad)
    fields = documented_fields()
    assert set(fields) == set(events.EVENTS)
    assert {"instanceKey", "from", "to", "owner", "reason"} <= fields[events.CLASSIFICATION_CHANGED]
    assert "CREDENTIAL_EXPIRY_WARNING_DAYS" not in fields[events.CREDENTIAL_EXPIRY]


def test_planted_module_without_action_group_or_scope_is_caught(tmp_path: Path) -> None:
    planted = tmp_path / "alerts.bicep"
    planted.write_text("resource fleetAlerts 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {\n"
                       "  name: 'x'\n  properties: {\n    scopes: [\n      workspace.id\n    ]\n  }\n}\n")
    body = resource_body(BicepFile(planted), "fleetAlerts")
    assert not re.search(r"scopes:\s*\[\s*applicationInsights\.id\s*\]", body)
    assert not re.search(r"actionGroups:\s*\[\s*([\w\[\]]+)\.id\s*\]", body)


# -- the emitting side: what the code logs under each event name -------------------------------------

APP_CODE = [p for d in ("core", "activities", "orchestrators", "triggers") for p in sorted((REPO_ROOT / d).rglob("*.py"))]


def _event_name(node: ast.expr) -> str | None:
    """The event name an expression stands for: "name", events.NAME or NAME (a core.events constant)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value if node.value in events.EVENTS else None
    attr = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None
    value = getattr(events, attr, None) if attr else None
    return value if isinstance(value, str) and value in events.EVENTS else None


def emitted_fields(paths: list[Path]) -> dict[str, list[tuple[str, set[str] | None]]]:
    """Per event, each place that logs it with the field names it passes (None: not all known, **kwargs).

    Two shapes: ``event_line(<event>, field=...)`` and a dict literal ``{"event": <event>, "field": ...}``."""
    found: dict[str, list[tuple[str, set[str] | None]]] = {}
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            name, fields = None, None
            if isinstance(node, ast.Call) and node.args and (
                    getattr(node.func, "id", None) == "event_line" or getattr(node.func, "attr", None) == "event_line"):
                name = _event_name(node.args[0])
                arguments = [k.arg for k in node.keywords]
                fields = None if None in arguments else {str(k) for k in arguments}
            elif isinstance(node, ast.Dict):
                keys = [k.value if isinstance(k, ast.Constant) and isinstance(k.value, str) else None for k in node.keys]
                if "event" in keys:
                    name = _event_name(node.values[keys.index("event")])
                    fields = None if None in keys else {str(k) for k in keys} - {"event"}
            if name:
                found.setdefault(name, []).append((f"{path.name}:{getattr(node, 'lineno', 0)}", fields))
    return found


def dimension_sources(query: str) -> dict[str, str]:
    """Output column -> the event field it is read from (``column = f(e.field)`` / ``f(e["field"])``)."""
    pairs = re.findall(r'(\w+) = \w+\(e(?:\.(\w+)|\["(\w+)"\])\)', query)
    return {column: dotted or bracketed for column, dotted, bracketed in pairs}


def test_the_code_logs_each_event_with_documented_fields_and_the_alert_dimensions() -> None:
    """Where the code already logs an event, it passes only documented fields, and every field an alert
    splits by (what names the instance in the alert) is passed by each place that logs it. Other fields
    the queries read may come from one shape only (credentialExpiry has three)."""
    documented = documented_fields()
    emitted = emitted_fields(APP_CODE)
    for event, places in emitted.items():
        for where, fields in places:
            if fields is not None:
                assert fields <= documented[event], f"{where}: {event} logs undocumented {sorted(fields - documented[event])}"
    checked = 0
    for rule in RULES:
        event = check_query(rule["query"], rule["file"])
        sources = dimension_sources(rule["query"])
        assert set(rule["dimensions"]) <= set(sources), f"{rule['key']}: dimension not read from one event field"
        needed = {sources[d] for d in rule["dimensions"]}
        for where, fields in emitted.get(event, []):
            if fields is not None:
                assert needed <= fields, f"{where}: {event} is logged without {sorted(needed - fields)}, which {rule['key']} splits by"
                checked += 1
    assert checked >= 2  # today: the credential calendar, the Key Vault event, the rotation failure


def test_emitted_fields_reader_on_planted_code(tmp_path: Path) -> None:
    planted = tmp_path / "emit.py"
    planted.write_text("from core import events\nfrom core.events import event_line, BATCH_COMPLETED\n"
                       "a = events.event_line(events.BATCH_COMPLETED, batchId='b', total=1)\n"
                       "b = event_line(BATCH_COMPLETED, **extra)\n"
                       "c = {'event': 'credentialRotationFailed', 'rotationId': 'r', 'outcome': 'x'}\n"
                       "d = {'event': 'somethingElse', 'x': 1}\n")
    found = emitted_fields([planted])
    assert {e: [f for _, f in places] for e, places in found.items()} == {
        events.BATCH_COMPLETED: [{"batchId", "total"}, None],
        events.ROTATION_FAILED: [{"rotationId", "outcome"}]}


def test_every_query_reads_instances_in_both_logged_shapes() -> None:
    """``credentialExpiry.instances`` is a count (sweep, Key Vault event) or a list (documented): a query that
    reads it with array_length() alone shows nothing for the count every line logs today."""
    workbook = json.loads(WORKBOOK_PATH.read_text(encoding="utf-8"))
    queries = [(i["name"], i["content"]["query"]) for i in workbook_items(workbook) if i["type"] == 3]
    queries += [(r["key"], r["query"]) for r in RULES]
    both = 'iif(gettype(e.instances) == "array", array_length(e.instances), toint(e.instances))'
    readers = [(name, q) for name, q in queries if "e.instances" in q]
    assert readers
    for name, query in readers:
        assert query.count("e.instances") == both.count("e.instances") and both in query, name
