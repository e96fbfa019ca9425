"""Every setting the deployed code reads is set by the Bicep app settings, or documented in
docs/deploy.md as optional with its default; and every Bicep app setting has a reader.

"The code reads" means: core/settings.py's SETTINGS table (the single reader of the app's own
settings), every ``%NAME%`` binding expression in the shipped code and host.json, every binding
``connection=`` (identity-based: ``<connection>__queueServiceUri`` ...), and any direct
``os.environ`` / ``os.getenv`` read in the shipped code.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from bicep_text import BicepFile, top_level_keys
from deploy_support import load_script

from core.settings import SETTINGS, Settings

SETTINGS_VARS = ("hostSettings", "appCodeSettings", "durableSettings")

# Bicep app settings read by the platform, not by our code, and why each is there.
PLATFORM_SETTINGS = {
    "AzureWebJobsStorage__credential": "host storage via managed identity",
    "AzureWebJobsStorage__clientId": "which user-assigned identity the host uses for storage",
    "AzureWebJobsStorage__blobServiceUri": "host leases, Durable blobs",
    "AzureWebJobsStorage__queueServiceUri": "queue trigger and output, Durable queues",
    "AzureWebJobsStorage__tableServiceUri": "Durable instance/history tables",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "host telemetry",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Entra-authenticated telemetry (local auth off)",
    "PYTHON_THREADPOOL_THREAD_COUNT": "Python worker threads (>= host.json maxConcurrentActivityFunctions)",
    "AZURE_CLIENT_ID": "azure-identity's DefaultAzureCredential picks the user-assigned identity",
    "AZURE_TENANT_ID": "azure-identity (tenant of the identity)",
    "DURABLE_TASK_SCHEDULER_CONNECTION_STRING": "Durable Task Scheduler connection (storageProvider override)",
    "TASKHUB_NAME": "Durable Task Scheduler task hub, for host.json files that say %TASKHUB_NAME%",
    "AzureFunctionsJobHost__extensions__durableTask__storageProvider__type": "host.json override",
    "AzureFunctionsJobHost__extensions__durableTask__storageProvider__connectionStringName": "host.json override",
    "AzureFunctionsJobHost__extensions__durableTask__hubName": "host.json override",
}

# Only set by local tooling (emulator / devhost); the deployed app must not need them.
LOCAL_ONLY = {"AZURE_CLIENT_SECRET", "AZURE_AUTHORITY_HOST", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"}

IDENTITY_SUFFIXES = ("__queueServiceUri", "__serviceUri", "__fullyQualifiedNamespace", "__blobServiceUri")
BINDING_EXPRESSION = re.compile(r"""["']%([A-Za-z_][A-Za-z0-9_]*)%["']""")
ENV_READ = re.compile(r"""os\.(?:environ\.get|getenv|environ\[)\(?\s*["']([A-Za-z_][A-Za-z0-9_]*)["']""")
DOC_ROW = re.compile(r"^\|\s*`([A-Za-z_][A-Za-z0-9_]*)`\s*\|\s*`([^`]*)`\s*\|", re.MULTILINE)


@pytest.fixture(scope="module")
def api(repo_root: Path) -> BicepFile:
    return BicepFile(repo_root / "infra" / "app" / "api.bicep")


@pytest.fixture(scope="module")
def bicep_settings(api: BicepFile) -> dict[str, str]:
    """Every app setting name in api.bicep -> its value expression (as text)."""
    result: dict[str, str] = {}
    for var in SETTINGS_VARS:
        block = api.object_after(rf"^var {var} =")
        for key in top_level_keys(block):
            value = re.search(rf"^\s*{re.escape(key)}\s*:\s*(.+?)\s*$", block, re.MULTILINE)
            assert value, key
            result[key] = value.group(1)
    return result


@pytest.fixture(scope="module")
def documented_optional(repo_root: Path) -> dict[str, str]:
    """Rows of docs/deploy.md's "Optional settings" table: name -> default."""
    text = (repo_root / "docs" / "deploy.md").read_text(encoding="utf-8")
    start = text.index("### Optional settings")
    end = text.find("\n#", start + 1)
    section = text[start : end if end != -1 else len(text)]
    rows = dict(DOC_ROW.findall(section))
    assert rows, "the optional settings table is empty"
    return rows


@pytest.fixture(scope="module")
def shipped_sources(repo_root: Path) -> dict[str, str]:
    """Text of every file the deployment package ships (as azd builds it) that can read settings."""
    package = load_script("package_contents").azd_package(repo_root)
    return {
        path: (repo_root / path).read_text(encoding="utf-8")
        for path in package
        if path.endswith(".py") or path == "host.json"
    }


def code_read_settings(sources: dict[str, str]) -> dict[str, str]:
    """Setting name -> where the code reads it."""
    found = {s.name: "core/settings.py SETTINGS" for s in SETTINGS}
    for path, text in sources.items():
        for name in BINDING_EXPRESSION.findall(text):
            found.setdefault(name, f"{path} (%{name}% binding expression)")
        for name in ENV_READ.findall(text):
            found.setdefault(name, f"{path} (direct environment read)")
    return found


def binding_connections(sources: dict[str, str]) -> dict[str, str]:
    """Connection setting prefixes used by bindings -> file."""
    found: dict[str, str] = {}
    for path, text in sources.items():
        if not path.endswith(".py"):
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.keyword) and node.arg == "connection" and isinstance(node.value, ast.Constant):
                found[str(node.value.value)] = path
    return found


def test_every_setting_the_code_reads_is_set_or_documented(
    shipped_sources: dict[str, str], bicep_settings: dict[str, str], documented_optional: dict[str, str]
) -> None:
    required = {s.name for s in SETTINGS if s.required}
    read = code_read_settings(shipped_sources)
    # The scan itself works: the timer trigger's schedule is a %...% binding expression.
    expressions = {name for text in shipped_sources.values() for name in BINDING_EXPRESSION.findall(text)}
    assert expressions or not any("timer_trigger" in text for text in shipped_sources.values())
    missing = []
    for name, where in sorted(read.items()):
        if name in bicep_settings:
            continue
        if name in required:
            missing.append(f"{name} (required; read by {where}) is not set in infra/app/api.bicep")
        elif name not in documented_optional:
            missing.append(f"{name} (read by {where}) is neither set in api.bicep nor in docs/deploy.md")
    assert not missing, "\n".join(missing)


def test_binding_connections_are_identity_based(
    shipped_sources: dict[str, str], bicep_settings: dict[str, str]
) -> None:
    connections = binding_connections(shipped_sources)
    assert connections or not any("queue_trigger" in text for text in shipped_sources.values())
    for connection, path in connections.items():
        assert any(connection + suffix in bicep_settings for suffix in IDENTITY_SUFFIXES), (
            f"{path} binds connection '{connection}', but api.bicep sets no {connection}__queueServiceUri-style setting"
        )
        assert f"{connection}__credential" in bicep_settings, connection
        assert connection not in bicep_settings, f"{connection} must not be a (key-based) connection string"


def test_every_bicep_setting_has_a_reader(shipped_sources: dict[str, str], bicep_settings: dict[str, str]) -> None:
    read = code_read_settings(shipped_sources)
    orphans = [name for name in bicep_settings if name not in read and name not in PLATFORM_SETTINGS]
    assert not orphans, f"api.bicep sets settings nothing reads: {orphans}"


def test_documented_defaults_match_the_code(documented_optional: dict[str, str]) -> None:
    by_name = {s.name: s for s in SETTINGS}
    for name, default in documented_optional.items():
        assert name in by_name, f"docs/deploy.md documents {name}, which core/settings.py does not read"
        assert not by_name[name].required, f"{name} is required, so it cannot be optional in docs/deploy.md"
        assert default == by_name[name].default_text(), f"{name}: docs say {default!r}, code says {by_name[name].default_text()!r}"


def test_local_only_settings_are_not_deployed(bicep_settings: dict[str, str]) -> None:
    assert not LOCAL_ONLY & set(bicep_settings)


def test_deployed_values_pass_the_settings_parser(repo_root: Path, bicep_settings: dict[str, str]) -> None:
    """The values Bicep writes (literals, or main.bicep parameter defaults) parse with core/settings.py."""
    main = BicepFile(repo_root / "infra" / "main.bicep")
    api_call = next(m for m in main.modules() if m.symbol == "api")
    api_params = main.object_after(r"^module api ")
    main_defaults = dict(re.findall(r"^param\s+(\w+)\s+\w+\s*=\s*'([^']*)'", main.text, re.MULTILINE))
    parameter_file = json.loads((repo_root / "infra" / "main.parameters.json").read_text(encoding="utf-8"))
    azd_defaults = {
        name: m.group(1)
        for name, entry in parameter_file["parameters"].items()
        if (m := re.fullmatch(r"\$\{[A-Z_]+=(.*)\}", str(entry["value"])))
    }
    env = {"KEY_VAULT_URL": "https://kv-example.vault.azure.net/"}  # an output, not a literal
    checked = []
    for setting in SETTINGS:
        expression = bicep_settings.get(setting.name)
        if expression is None:
            continue
        if expression.startswith("'") and "${" not in expression:
            env[setting.name] = expression.strip("'")
            checked.append(setting.name)
            continue
        passed = re.search(rf"^\s*{re.escape(expression)}\s*:\s*(\w+)\s*$", api_params, re.MULTILINE)
        if expression in api_call.params and passed and passed.group(1) in main_defaults:
            main_param = passed.group(1)
            env[setting.name] = main_defaults[main_param]
            checked.append(setting.name)
            if main_param in azd_defaults:  # the azd parameter file's default must parse as well
                Settings.from_env({**env, setting.name: azd_defaults[main_param]})
    assert {"GRAPH_BASE_URL", "GRAPH_API_VERSION", "HEALTH_SWEEP_SCHEDULE"} <= set(checked)
    Settings.from_env(env)  # raises ConfigurationError naming every bad value


# Local-only values of local.settings.example.json and what replaces them in Azure.
LOCAL_SETTINGS_REPLACED = {
    "FUNCTIONS_WORKER_RUNTIME": "Flex Consumption takes the runtime from functionAppConfig and rejects this setting",
    "AzureWebJobsStorage": "AzureWebJobsStorage__* identity-based settings (no connection string in Azure)",
}


def test_local_settings_example_matches_what_azure_gets(
    repo_root: Path, bicep_settings: dict[str, str], documented_optional: dict[str, str]
) -> None:
    """Every value a developer sets locally is set in Azure too, documented as optional, or replaced."""
    example = repo_root / "local.settings.example.json"
    assert example.exists(), "local.settings.example.json documents the local settings"
    values = json.loads(example.read_text(encoding="utf-8"))["Values"]
    unaccounted = [
        name
        for name in values
        if name not in bicep_settings and name not in documented_optional and name not in LOCAL_SETTINGS_REPLACED
    ]
    assert not unaccounted, f"set locally but neither deployed nor documented: {unaccounted}"
    assert not set(LOCAL_SETTINGS_REPLACED) & set(bicep_settings)


def test_python_worker_threads_cover_the_activity_concurrency(repo_root: Path, api: BicepFile) -> None:
    host = json.loads((repo_root / "host.json").read_text(encoding="utf-8"))
    durable = host.get("extensions", {}).get("durableTask", {})
    activities = int(durable.get("maxConcurrentActivityFunctions", 10))
    threads = re.search(r"^param pythonThreadCount string = '(\d+)'", api.text, re.MULTILINE)
    assert threads, "pythonThreadCount parameter with a literal default not found in api.bicep"
    assert int(threads.group(1)) >= activities


def test_host_and_durable_storage_connection_is_identity_based(repo_root: Path, bicep_settings: dict[str, str]) -> None:
    """The host (leases, timers) and Durable's Azure Storage provider use blob, queue and table."""
    host = json.loads((repo_root / "host.json").read_text(encoding="utf-8"))
    provider = host.get("extensions", {}).get("durableTask", {}).get("storageProvider", {})
    connection = provider.get("connectionName") or provider.get("connectionStringName") or "AzureWebJobsStorage"
    for service in ("blob", "queue", "table"):
        assert f"{connection}__{service}ServiceUri" in bicep_settings, (connection, service)
    assert bicep_settings[f"{connection}__credential"] == "'managedidentity'"
    assert bicep_settings[f"{connection}__clientId"] == "identityClientId"
