"""Structural checks of infra/ (no Bicep compiler offline: see docs/deploy.md).

What can go wrong without a compiler is structure: a module path that does not exist, a parameter
declared and never used or passed under the wrong name, an output azd needs that is missing, a
key-based setting, a security switch left on. Each test reads the Bicep text for exactly that.
The parser's own behaviour is checked on small planted files at the end.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from bicep_text import BicepFile, check_balanced, matching_close, top_level_keys
from deploy_support import REPO_ROOT, load_script

from core import names
from core.permissions import REQUIRED_GRAPH_PERMISSIONS

INFRA = REPO_ROOT / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))

# Outputs azd relies on: the location/tenant of the environment and the deployed service's name.
AZD_OUTPUTS = {"AZURE_LOCATION", "AZURE_TENANT_ID", "SERVICE_API_NAME", "AZURE_FUNCTION_NAME"}

ROLE_IDS = {
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "Durable Task Data Contributor": "0ad04412-c4d5-4796-b79c-f76d14c8d402",
}


def bicep(relative: str) -> BicepFile:
    return BicepFile(INFRA / relative)


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_brackets_and_strings_are_balanced(path: Path) -> None:
    check_balanced(BicepFile(path).text)


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_param_is_used(path: Path) -> None:
    file = BicepFile(path)
    unused = [p.name for p in file.params() if not file.identifier_used(p.name)]
    assert not unused, f"{path.name}: unused params {unused}"


def test_every_module_exists_and_gets_exactly_its_params() -> None:
    checked = 0
    for path in BICEP_FILES:
        for module in BicepFile(path).modules():
            assert not module.path.startswith("br"), f"{module.symbol}: registry modules cannot be checked offline"
            target = (path.parent / module.path).resolve()
            assert target.is_file(), f"{path.name}: module {module.symbol} -> {module.path} does not exist"
            declared = {p.name: p for p in BicepFile(target).params()}
            unknown = set(module.params) - set(declared)
            assert not unknown, f"{module.symbol} passes params {target.name} does not declare: {unknown}"
            missing = {n for n, p in declared.items() if not p.has_default} - set(module.params)
            assert not missing, f"{module.symbol} does not pass required params of {target.name}: {missing}"
            checked += 1
    assert checked >= 6


def test_module_outputs_used_in_main_exist() -> None:
    main = bicep("main.bicep")
    outputs = {m.symbol: set(BicepFile(INFRA / m.path).outputs()) for m in main.modules()}
    references = re.findall(r"\b(\w+)!?\.outputs\.(\w+)", main.text)
    assert references
    for symbol, output in references:
        assert output in outputs[symbol], f"main.bicep uses {symbol}.outputs.{output}, which is not declared"


def test_every_app_module_is_used_by_main() -> None:
    used = {(INFRA / m.path).resolve() for m in bicep("main.bicep").modules()}
    for path in (INFRA / "app").glob("*.bicep"):
        assert path.resolve() in used, f"{path.name} is not referenced by main.bicep"


def hook_scripts() -> dict[str, Path]:
    """The postprovision hook's script per platform, from azure.yaml (paths relative to the root)."""
    hooks = yaml.safe_load((REPO_ROOT / "azure.yaml").read_text(encoding="utf-8"))["hooks"]["postprovision"]
    return {platform: REPO_ROOT / hook["run"] for platform, hook in hooks.items()}


def test_outputs_azd_needs_are_present_and_hooks_use_only_outputs() -> None:
    outputs = set(bicep("main.bicep").outputs())
    assert AZD_OUTPUTS <= outputs
    scripts = hook_scripts()
    assert set(scripts) == {"posix", "windows"}
    for script in scripts.values():
        assert script.is_file(), script
        text = script.read_text(encoding="utf-8")
        referenced = set(re.findall(r"\$(?:env:|\{)?([A-Z][A-Z0-9_]+)", text))
        assert "AZURE_MANAGED_IDENTITY_CLIENT_ID" in referenced, "the hook must print the identity's client id"
        assert referenced <= outputs | {"AZURE_ENV_NAME", "AZURE_SUBSCRIPTION_ID"}, referenced - outputs


def test_azure_yaml_deploys_the_repository_root_as_a_python_function_service() -> None:
    project = yaml.safe_load((REPO_ROOT / "azure.yaml").read_text(encoding="utf-8"))
    api = project["services"]["api"]
    assert api == {"project": ".", "language": "python", "host": "function"}
    assert project["infra"]["path"] == "infra" and project["infra"]["module"] == "main"
    # azd finds the app by this tag.
    assert re.search(r"'azd-service-name':\s*serviceName", bicep("app/api.bicep").text)
    assert re.search(r"param serviceName string = 'api'", bicep("app/api.bicep").text)


def test_parameters_file_matches_main_bicep() -> None:
    main = bicep("main.bicep")
    declared = {p.name: p for p in main.params()}
    parameters = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert set(parameters) <= set(declared), set(parameters) - set(declared)
    required = {n for n, p in declared.items() if not p.has_default}
    assert required <= set(parameters), required - set(parameters)


def test_tags_for_azd() -> None:
    main = bicep("main.bicep")
    assert re.search(r"var tags = \{\s*'azd-env-name':\s*environmentName\s*\}", main.text)
    for module in main.modules():
        target = BicepFile(INFRA / module.path)
        if any(p.name == "tags" for p in target.params()):
            assert "tags" in module.params, f"module {module.symbol} gets no tags"
    tagged = 0
    for path in BICEP_FILES:
        file = BicepFile(path)
        for match in re.finditer(r"^resource (\w+) '[^']+'( existing)? = ", file.text, re.MULTILINE):
            if match.group(2):
                continue
            open_index = file.text.index("{", match.end())
            keys = top_level_keys(file.text[open_index + 1 : matching_close(file.text, open_index)])
            if "location" in keys:
                assert "tags" in keys, f"{path.name}: resource {match.group(1)} has a location but no tags"
                tagged += 1
    assert tagged >= 8


def test_no_secrets_or_keys_in_app_settings() -> None:
    api = bicep("app/api.bicep")
    settings_text = "\n".join(api.object_after(rf"^var {v} =") for v in ("hostSettings", "appCodeSettings", "durableSettings"))
    for forbidden in ("listKeys", "AccountKey", "SharedAccessSignature", "SharedAccessKey", "primaryKey",
                      "InstrumentationKey=", "secret", "password", "@secure"):
        assert forbidden.lower() not in settings_text.lower(), forbidden
    assert "Authentication=ManagedIdentity" in settings_text
    for path in BICEP_FILES:  # no key material anywhere in infra/
        text = BicepFile(path).text.lower()
        assert "listkeys(" not in text and "listsecrets(" not in text, path.name
    # Flex Consumption rejects these as app settings.
    keys = set(top_level_keys(settings_text))
    assert not {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "AzureWebJobsStorage"} & keys


def test_storage_is_identity_only_and_creates_the_request_queues() -> None:
    storage = bicep("app/storage.bicep").text
    assert re.search(r"allowSharedKeyAccess:\s*false", storage)
    assert re.search(r"allowBlobPublicAccess:\s*false", storage)
    assert re.search(r"minimumTlsVersion:\s*'TLS1_2'", storage)
    queues = re.search(r"var queueNames = \[(.*?)\]", bicep("main.bicep").text, re.DOTALL)
    assert queues
    declared = set(re.findall(r"'([a-z0-9-]+)'", queues.group(1)))
    expected = {names.QUEUE_PROVISIONING_REQUESTS, names.QUEUE_PROVISIONING_REQUESTS_REJECTED,
                names.QUEUE_PROVISIONING_REQUESTS + "-poison"}
    assert declared == expected


def test_monitoring_and_key_vault_have_local_auth_off_and_rbac_on() -> None:
    monitoring = bicep("app/monitoring.bicep").text
    assert re.search(r"DisableLocalAuth:\s*true", monitoring, re.IGNORECASE)
    assert re.search(r"features:\s*\{\s*disableLocalAuth:\s*true", monitoring)
    vault = bicep("app/keyvault.bicep").text
    assert re.search(r"enableRbacAuthorization:\s*true", vault)
    assert "accessPolicies" not in vault
    assert re.search(r"enableSoftDelete:\s*true", vault)


def test_function_app_is_flex_consumption_python_311_with_the_user_assigned_identity() -> None:
    api = bicep("app/api.bicep").text
    assert re.search(r"tier:\s*'FlexConsumption'\s*name:\s*'FC1'", api)
    assert re.search(r"runtime:\s*\{\s*name:\s*'python'\s*version:\s*'3\.11'", api)
    assert re.search(r"type:\s*'UserAssigned'", api)
    assert re.search(r"authentication:\s*\{\s*type:\s*'UserAssignedIdentity'", api)
    assert re.search(r"httpsOnly:\s*true", api)


def test_identity_gets_the_data_roles_and_key_vault_secrets_user() -> None:
    rbac = bicep("app/rbac.bicep").text
    for role, role_id in ROLE_IDS.items():
        assert role_id in rbac, f"{role} ({role_id}) missing from rbac.bicep"
    assignments = re.findall(r"^resource \w+ 'Microsoft\.Authorization/roleAssignments@[^']+'", rbac, re.MULTILINE)
    assert len(assignments) >= 6
    # Deterministic names make re-deployment idempotent; explicit principalType avoids replication races.
    assert rbac.count("name: guid(") == len(assignments)
    assert rbac.count("principalType:") == len(assignments)
    secrets_user = re.search(r"resource identitySecretsUser .*?\n\}", rbac, re.DOTALL)
    assert secrets_user and "roles.keyVaultSecretsUser" in secrets_user.group(0)
    assert "managedIdentityPrincipalId" in secrets_user.group(0) and "scope: vault" in secrets_user.group(0)


def test_durable_task_scheduler_is_optional_and_identity_based() -> None:
    main = bicep("main.bicep").text
    assert re.search(r"module scheduler 'app/dts\.bicep' = if \(useScheduler\)", main)
    assert re.search(r"param durableBackend string = 'AzureStorage'", main)
    api = bicep("app/api.bicep")
    durable = api.object_after(r"^var durableSettings =")
    assert "DURABLE_TASK_SCHEDULER_CONNECTION_STRING" in top_level_keys(durable)
    assert "AzureFunctionsJobHost__extensions__durableTask__storageProvider__type: 'azureManaged'" in durable


def module_body(file: BicepFile, symbol: str) -> str:
    match = re.search(rf"^module {symbol} '[^']+' = (?:if \([^)]*\) )?\{{", file.text, re.MULTILINE)
    assert match, f"module {symbol} not found"
    open_index = match.end() - 1
    return file.text[open_index + 1 : matching_close(file.text, open_index)]


def resource_body(file: BicepFile, symbol: str) -> str:
    match = re.search(rf"^resource {symbol} '[^']+' = (?:if \([^)]*\) )?[{{\[]", file.text, re.MULTILINE)
    assert match, f"resource {symbol} not found"
    open_index = match.end() - 1
    return file.text[open_index + 1 : matching_close(file.text, open_index)]


def test_api_waits_for_every_role_assignment_of_the_identity() -> None:
    """The function app is created after the identity's roles exist, so the first package pull
    from the deployment container (and the host's first storage call) is not refused with 403."""
    main = bicep("main.bicep")
    api = module_body(main, "api")
    depends = re.search(r"^\s*dependsOn:\s*\[([^\]]*)\]", api, re.MULTILINE)
    assert depends, "module api has no dependsOn"
    assert "rbac" in re.findall(r"\w+", depends.group(1))
    # No cycle: rbac needs nothing from api.
    assert "api." not in module_body(main, "rbac")
    # Every role assignment of the managed identity is in rbac.bicep (what api waits for), and the
    # deployment container's reader role is among them.
    for path in BICEP_FILES:
        if path.name == "rbac.bicep":
            continue
        file = BicepFile(path)
        for match in re.finditer(r"^resource (\w+) 'Microsoft\.Authorization/roleAssignments@", file.text, re.MULTILINE):
            # Outside rbac.bicep only the CI identity's roles and the Key Vault event topic's own
            # dead-letter writer (keyvault-events.bicep), which nothing of the app waits for.
            body = resource_body(file, match.group(1))
            assert "principalId: ciPrincipalId" in body or "principalId: topic.identity.principalId" in body, \
                (path.name, match.group(1))
    rbac = bicep("app/rbac.bicep").text
    storage_roles = resource_body(bicep("app/rbac.bicep"), "identityStorageRoles")
    assert "roles.storageBlobDataOwner" in storage_roles and "managedIdentityPrincipalId" in storage_roles
    assert ROLE_IDS["Storage Blob Data Owner"] in rbac


READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
WEBSITE_CONTRIBUTOR = "de139f84-1756-47ae-9be6-808fbbe84772"


def test_ci_deploy_identity_can_read_the_subscription_deployment_and_publish() -> None:
    """`azd env refresh` lists the subscription-scope deployments (deployments/read on the
    subscription, which Reader includes); `azd deploy` publishes to the function app."""
    main = bicep("main.bicep")
    params = {p.name: p for p in main.params()}
    assert params["ciPrincipalId"].has_default and re.search(r"^param ciPrincipalId string = ''", main.text, re.MULTILINE)
    assert re.search(rf"^param ciSubscriptionRoleId string = '{READER}'", main.text, re.MULTILINE)
    assert re.search(r"^var useCi = !empty\(ciPrincipalId\)", main.text, re.MULTILINE)
    role = resource_body(main, "ciSubscriptionRole")
    assert re.search(r"^resource ciSubscriptionRole 'Microsoft\.Authorization/roleAssignments@[^']+' = if \(useCi\)",
                     main.text, re.MULTILINE)
    # No scope property in a subscription-scope template: the assignment is on the subscription.
    assert re.search(r"^targetScope = 'subscription'", main.text, re.MULTILINE)
    assert "scope:" not in role
    assert "subscriptionResourceId('Microsoft.Authorization/roleDefinitions', ciSubscriptionRoleId)" in role
    assert "principalId: ciPrincipalId" in role and "principalType: 'ServicePrincipal'" in role
    assert "name: guid(subscription().id, ciPrincipalId, ciSubscriptionRoleId)" in role

    ci = module_body(main, "ciRbac")
    assert re.search(r"^module ciRbac 'app/ci-rbac\.bicep' = if \(useCi\)", main.text, re.MULTILINE)
    assert "api.outputs.SERVICE_API_NAME" in ci
    ci_rbac = bicep("app/ci-rbac.bicep")
    assignment = resource_body(ci_rbac, "ciWebsiteContributor")
    assert f"var websiteContributor = '{WEBSITE_CONTRIBUTOR}'" in ci_rbac.text
    assert "scope: functionApp" in assignment and "principalType: 'ServicePrincipal'" in assignment
    # Nothing else: no storage data role, no write on the subscription or resource group.
    assert ci_rbac.text.count("Microsoft.Authorization/roleAssignments@") == 1

    parameters = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert parameters["ciPrincipalId"]["value"] == "${AZURE_CI_PRINCIPAL_ID}"
    assert parameters["ciSubscriptionRoleId"]["value"] == "${AZURE_CI_SUBSCRIPTION_ROLE_ID}"
    docs = (REPO_ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert "AZURE_CI_PRINCIPAL_ID" in docs and "Microsoft.Resources/deployments/read" in docs


def test_deployer_principal_type_comes_from_azure_principal_type() -> None:
    main = bicep("main.bicep")
    parameters = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert parameters["principalType"]["value"] == "${AZURE_PRINCIPAL_TYPE=User}"
    assert re.search(r"@allowed\(\['User', 'ServicePrincipal', 'Group'\]\)\nparam principalType string", main.text)
    assert "deployerPrincipalType: principalType" in module_body(main, "rbac")
    rbac = bicep("app/rbac.bicep")
    deployer = [m.group(1) for m in re.finditer(r"^resource (deployer\w+) ", rbac.text, re.MULTILINE)]
    assert len(deployer) == 3
    for symbol in deployer:
        assert "principalType: deployerPrincipalType" in resource_body(rbac, symbol), symbol
    docs = (REPO_ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert "azd env set AZURE_PRINCIPAL_TYPE ServicePrincipal" in docs and "UnmatchedPrincipalType" in docs


def bundle_range(version: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    match = re.fullmatch(r"\[(\d+\.\d+\.\d+),\s*(\d+\.\d+\.\d+)\)", version)
    assert match, f"{version!r} is not a [floor, ceiling) range with full versions"
    low, high = (tuple(int(part) for part in bound.split(".")) for bound in match.groups())
    return low, high


def test_extension_bundle_floor_includes_the_durable_task_scheduler() -> None:
    """The scheduler backend (durableBackend=DurableTaskScheduler) needs the azureManaged provider,
    which Microsoft documents in the standard v4 bundle from 4.32.0
    (https://learn.microsoft.com/azure/durable-task/durable-task-scheduler/quickstart-durable-task-scheduler)."""
    host = json.loads((REPO_ROOT / "host.json").read_text(encoding="utf-8"))
    bundle = host["extensionBundle"]
    assert bundle["id"] == "Microsoft.Azure.Functions.ExtensionBundle"  # the standard bundle, not .Preview
    low, high = bundle_range(bundle["version"])
    assert low >= (4, 32, 0) and high == (5, 0, 0)
    durable = bicep("app/api.bicep").object_after(r"^var durableSettings =")
    assert "storageProvider__type: 'azureManaged'" in durable
    docs = (REPO_ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert bundle["version"] in docs
    assert "[4.*, 5.0.0)" not in docs and ".Preview" not in docs


def test_bundle_range_parser_rejects_a_wildcard_floor() -> None:
    with pytest.raises(AssertionError):
        bundle_range("[4.*, 5.0.0)")
    assert bundle_range("[4.32.0, 5.0.0)") == ((4, 32, 0), (5, 0, 0))


def graph_permissions_in_bicep() -> list[str]:
    main = bicep("main.bicep")
    declared = re.search(r"^var graphApplicationPermissions = \[(.*?)\]", main.text, re.MULTILINE | re.DOTALL)
    assert declared
    return re.findall(r"'([^']+)'", declared.group(1))


def test_graph_permissions_output_is_exactly_core_permissions() -> None:
    assert graph_permissions_in_bicep() == list(REQUIRED_GRAPH_PERMISSIONS)
    main = bicep("main.bicep")
    assert re.search(r"^output GRAPH_APPLICATION_PERMISSIONS array = graphApplicationPermissions$", main.text, re.MULTILINE)


def grant_command_from_bicep(client_id: str) -> str:
    """main.bicep's GRAPH_GRANT_COMMAND output with the identity's client id filled in."""
    main = bicep("main.bicep")
    match = re.search(r"^output GRAPH_GRANT_COMMAND string = '([^'\n]*)'$", main.text, re.MULTILINE)
    assert match, "GRAPH_GRANT_COMMAND output missing"
    template = match.group(1)
    assert template.count("${identity.outputs.clientId}") == 1 and template.count("${") == 1
    return template.replace("${identity.outputs.clientId}", client_id)


def test_grant_command_output_runs_the_grant_script_with_only_the_client_id() -> None:
    client_id = "8a1d3c9e-0000-4000-8000-000000000001"
    argv = shlex.split(grant_command_from_bicep(client_id))
    assert argv[0] == "python" and (REPO_ROOT / argv[1]).is_file()
    args = load_script("grant_graph_permissions").parse_args(argv[2:])
    assert args.identity_client_id == client_id
    assert not args.dry_run and args.identity_object_id is None and args.identity_name is None


# -- the checks above can fail: the parser on planted files ---------------------------------------

def test_parser_catches_an_unused_param_a_missing_module_and_a_bad_bracket(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "child.bicep").write_text("param needed string\nparam optional int = 1\noutput x string = needed\n")
    main = tmp_path / "main.bicep"
    main.write_text(
        "param used string\n"
        "param unused string // only mentioned in a comment: unused\n"
        "var s = 'unused ${used}'\n"
        "module a 'app/child.bicep' = {\n  name: 'a'\n  params: {\n    wrong: used\n  }\n}\n"
        "module b 'app/missing.bicep' = {\n  name: 'b'\n}\n"
    )
    file = BicepFile(main)
    assert [p.name for p in file.params() if not file.identifier_used(p.name)] == ["unused"]
    modules = {m.symbol: m for m in file.modules()}
    assert modules["a"].params == ("wrong",)
    assert not (tmp_path / modules["b"].path).exists()
    with pytest.raises(ValueError):
        check_balanced("resource x 'y' = {\n  properties: { a: [1, 2 }\n}\n")
    with pytest.raises(ValueError):
        check_balanced("var s = 'unterminated\n")
    assert top_level_keys("  a: 1\n  'b-c': { d: 2 }\n  e: [\n    f: 3\n  ]\n") == ["a", "b-c", "e"]
