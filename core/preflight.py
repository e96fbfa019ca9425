"""Preflight: check that this deployment can work before the first request, one row per check.

Run it right after ``azd up`` (``GET /api/preflight`` with a function key) or from a shell
(``python -m core.preflight [--json] [--env-file FILE]``). Every check runs, whatever failed before
it (a check whose input is broken is ``skipped`` and names the check that broke it), and each row
says what was checked, what was found and - for a failure - how to fix it:

* **settings** - every setting of :data:`core.settings.SETTINGS`, parsed by ``Settings.from_env``
  (all problems at once, one row each; the raw value is never echoed).
* **graph token** - a token for ``GRAPH_SCOPE`` from the app's own credential (a new
  ``DefaultAzureCredential``, as :mod:`core.clients` builds it, so no token cached by this process
  hides a grant or a removal). Its payload is decoded without verifying the signature (only Graph
  verifies it; we only read it): app-only tokens carry the application permissions granted to the
  app in the ``roles`` claim, user tokens carry ``scp`` instead
  (https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference).
* **graph permission: X** - one row per permission of
  :data:`core.permissions.REQUIRED_GRAPH_PERMISSIONS`, with what it is needed for; granted
  permissions beyond that set are a warning (least privilege), not a failure.
* **graph gallery** - ``GET /applicationTemplates?$top=1``: Graph is reachable at
  ``GRAPH_BASE_URL`` and accepts the token (the call needs no permission beyond a valid token:
  https://learn.microsoft.com/graph/api/applicationtemplate-list).
* **key vault** - lists secret *properties* (one page, never a value; "Get Secrets" answers no
  values and needs the list permission:
  https://learn.microsoft.com/rest/api/keyvault/secrets/get-secrets/get-secrets). This proves the
  identity holds a data-plane role on the vault; reading a value needs *Key Vault Secrets User*
  (https://learn.microsoft.com/azure/key-vault/general/rbac-guide), and a role that reads metadata
  only (*Key Vault Reader*) would pass here too. Reading a value to tell them apart is exactly what
  a preflight must not do.
* **task hub** (HTTP) or **storage** (CLI). The HTTP trigger passes in a row made with the Durable
  client binding: a status read of an instance id that does not exist, answered by the task hub
  through the Durable extension (404 = the hub answered). The CLI has no Durable host to ask, so it
  checks the ``AzureWebJobsStorage`` connection the way the host resolves it (a connection string,
  ``UseDevelopmentStorage=true``, or identity-based ``AzureWebJobsStorage__queueServiceUri`` /
  ``__accountName``) with one List Queues call for the request queue
  (https://learn.microsoft.com/rest/api/storageservices/list-queues1). On the Azure Storage
  backend that account holds the task hub; on the Durable Task Scheduler it holds only the queues,
  and the row says the hub itself is checked by the HTTP preflight only.

Secrets: no row, log line or exception text carries a secret. Every detail is built from names,
ids, counts and status codes; as a second guard every row is scrubbed of the values of secret-like
environment variables (client secrets, storage account keys, SAS tokens, identity headers).
Imports nothing from ``azure.functions``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import textwrap
import time
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from core import errors, names
from core.identity import decode_claims  # the one JWT decoder (GraphClient.granted_roles uses it too)
from core.permissions import REQUIRED_GRAPH_PERMISSIONS
from core.settings import SETTINGS, Settings

logger = logging.getLogger(__name__)

OK, FAILED, WARNING, SKIPPED = "ok", "failed", "warning", "skipped"
STATUSES = (OK, FAILED, WARNING, SKIPPED)

GRANT_DOC = "docs/deploy.md, 'Grant Microsoft Graph permissions'"
GRANT_COMMAND = "python infra/scripts/grant_graph_permissions.py --identity-client-id <client id>"
#: Managed identity tokens are cached by Azure: a new grant can take a while to reach them.
MI_CACHE_DOC = ("https://learn.microsoft.com/entra/identity/managed-identities-azure-resources/"
                "managed-identity-best-practice-recommendations#limitation-of-using-managed-identities-for-authorization")
PROBE_INSTANCE_ID = "preflight-probe-no-such-instance"
STORAGE_SETTING = "AzureWebJobsStorage"
#: set by infra/app/api.bicep when the Durable Task Scheduler holds the task hub
DTS_SETTING = "DURABLE_TASK_SCHEDULER_CONNECTION_STRING"

_SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}
#: which settings each check reads: a bad one among them skips the check (instead of guessing a default)
_GRAPH_TOKEN_SETTINGS = ("GRAPH_SCOPE", "AZURE_DISABLE_INSTANCE_DISCOVERY")
_GRAPH_CALL_SETTINGS = _GRAPH_TOKEN_SETTINGS + ("GRAPH_BASE_URL", "GRAPH_API_VERSION")
_KEY_VAULT_SETTINGS = ("KEY_VAULT_URL", "KEY_VAULT_VERIFY_CHALLENGE_RESOURCE", "AZURE_DISABLE_INSTANCE_DISCOVERY")
_SECRET_NAME = re.compile(r"(SECRET|PASSWORD|KEY|TOKEN|HEADER|CONNECTION_STRING|SIGNATURE)$", re.IGNORECASE)
_SECRET_PART = re.compile(r"(?:AccountKey|SharedAccessSignature|SharedAccessKey)=([^;]+)", re.IGNORECASE)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
_MAX_TEXT = 400


@dataclass(frozen=True)
class CheckResult:
    """One row: ``name`` (e.g. ``graph permission: AuditLog.Read.All``), ``status``, ``detail``, ``fix``."""

    name: str
    status: str
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class PreflightReport:
    """Every row, in order; ``ok`` when nothing failed (warnings do not fail)."""

    checks: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        return not any(c.status in (FAILED, SKIPPED) for c in self.checks)

    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == FAILED]

    def counts(self) -> dict[str, int]:
        return {status: sum(1 for c in self.checks if c.status == status) for status in STATUSES}

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "counts": self.counts(), "checks": [c.to_dict() for c in self.checks]}


# ------------------------------------------------------------------------------------------ checks
def check_settings(env: Mapping[str, str]) -> tuple[list[CheckResult], Settings | None, set[str]]:
    """The settings rows, the settings the other checks can use (or None), and the names that are bad."""
    try:
        settings = Settings.from_env(env)
    except errors.ConfigurationError as exc:
        rows = [CheckResult(f"setting: {p.path}", FAILED, p.message, _setting_fix(p.path)) for p in exc.problems]
        bad = {p.path for p in exc.problems}
        return rows, _usable_settings(env, bad), bad
    return [CheckResult("settings", OK, f"all {len(SETTINGS)} settings are valid (Graph {settings.graph_root}, "
                                        f"Key Vault {settings.key_vault_url})")], settings, set()


def _setting_fix(name: str) -> str:
    setting = _SETTINGS_BY_NAME.get(name)
    what = f" ({setting.description.rstrip('.')})" if setting else ""
    return (f"set {name}{what} in the function app's settings: in Azure infra/app/api.bicep or 'az functionapp "
            f"config appsettings set', locally local.settings.json")


def _usable_settings(env: Mapping[str, str], bad: set[str]) -> Settings | None:
    """Settings with every bad value replaced by its default, for the checks that do not read it.

    Checks that read a bad setting are skipped, so a default never stands in for what the operator
    meant; a missing required setting gets a placeholder for the same reason. Built field by field
    (the cross-field rules of ``from_env`` already reported their problems: a default may well
    conflict with a good value, e.g. a small MONITOR_MAX_POLL_SECONDS).
    """
    from core.settings import _parser

    values: dict[str, Any] = {}
    try:
        for setting in SETTINGS:
            raw = env.get(setting.name)
            if setting.name in bad or raw is None or raw.strip() == "":
                values[setting.field] = "https://preflight.invalid" if setting.required else setting.default
            else:
                values[setting.field] = _parser(setting)(raw)
        return Settings(**values)
    except (ValueError, TypeError):
        return None


def _skipped(name: str, needs: Iterable[str], bad: set[str]) -> CheckResult | None:
    broken = sorted(set(needs) & bad)
    if not broken:
        return None
    return CheckResult(name, SKIPPED, "not run: it reads " + ", ".join(broken) + ", which is invalid (see above)",
                       "fix the setting rows above, then run the preflight again")


def check_graph_token(settings: Settings, credential: Any) -> tuple[CheckResult, dict[str, Any] | None]:
    """Acquire a Graph token; the row and its claims (None when there is no token)."""
    from core.identity import token_failure_is_transient

    try:
        token = credential.get_token(settings.graph_scope)
    except Exception as exc:  # noqa: BLE001 - azure-identity raises several types; all are reported
        transient = token_failure_is_transient(exc)
        detail = (f"no token for {settings.graph_scope}: {type(exc).__name__}: {_first_line(exc)}")
        fix = ("the token endpoint did not answer: check the network and run the preflight again" if transient else
               "in Azure: the function app's user-assigned identity must be attached and AZURE_CLIENT_ID must be its "
               "client id (azd: AZURE_MANAGED_IDENTITY_CLIENT_ID); locally: set AZURE_TENANT_ID, AZURE_CLIENT_ID and "
               "AZURE_CLIENT_SECRET of the app registration (docs: README, 'Running against a real tenant')")
        return CheckResult("graph token", FAILED, detail, fix), None
    try:
        claims = decode_claims(token.token)
    except (ValueError, UnicodeDecodeError) as exc:
        return CheckResult("graph token", FAILED, f"got a token for {settings.graph_scope}, but cannot read its claims "
                           f"({exc})", "GRAPH_SCOPE must name Microsoft Graph, e.g. https://graph.microsoft.com/.default"
                           ), None
    minutes = max(0, int((token.expires_on - time.time()) // 60))
    who = claims.get("appid") or claims.get("azp") or "?"
    detail = (f"token for {claims.get('aud', '?')} issued to client {who} in tenant {claims.get('tid', '?')}, "
              f"valid {minutes} more minutes")
    if not claims.get("roles") and claims.get("scp"):
        return CheckResult(
            "graph token", FAILED,
            detail + "; it is a user's (delegated) token: the app calls Graph with its own identity, whose "
                     "permissions this cannot show",
            "run the preflight as the app: set AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET of the app "
            "registration, or call GET /api/preflight on the deployed app"), claims
    return CheckResult("graph token", OK, detail), claims


def check_graph_permissions(claims: Mapping[str, Any]) -> list[CheckResult]:
    """One row per required permission, plus a warning listing permissions held beyond them."""
    raw = claims.get("roles") or []
    roles = {str(r) for r in raw} if isinstance(raw, list) else set()
    rows = []
    for permission, why in REQUIRED_GRAPH_PERMISSIONS.items():
        name = f"graph permission: {permission}"
        if permission in roles:
            rows.append(CheckResult(name, OK, f"granted; needed for: {why}"))
        else:
            rows.append(CheckResult(
                name, FAILED, f"not granted (absent from the token's roles claim); the app needs it for: {why}",
                f"an admin grants the Graph application permission {permission} to the app's identity: "
                f"{GRANT_COMMAND} ({GRANT_DOC}); only new tokens carry it, and Azure caches a managed "
                f"identity's tokens for a while ({MI_CACHE_DOC})"))
    extra = sorted(roles - set(REQUIRED_GRAPH_PERMISSIONS))
    if extra:
        rows.append(CheckResult(
            "graph permissions: beyond the required set", WARNING,
            "also granted, not needed by this app: " + ", ".join(extra),
            "remove them to keep least privilege (docs/deploy.md, 'Grant Microsoft Graph permissions')"))
    return rows


def check_graph_gallery(settings: Settings, credential: Any) -> CheckResult:
    """One read of the gallery through the app's own Graph transport."""
    from core.graph.transport import GraphClient

    graph = GraphClient(settings, credential, write_pacer=False)
    try:
        body = graph.get("/applicationTemplates", {"$top": "1", "$select": "id,displayName"})
    except errors.PermissionDenied as exc:
        return CheckResult("graph gallery", FAILED, f"Graph refused GET /applicationTemplates: {exc}",
                           "Graph refused the token itself: check the graph token row and GRAPH_SCOPE")
    except errors.ProvisioningError as exc:
        transient = exc.kind != "permanent"
        return CheckResult("graph gallery", FAILED, f"GET {settings.graph_root}/applicationTemplates failed: {exc}",
                           "Graph did not answer: check the network and run the preflight again" if transient else
                           "check GRAPH_BASE_URL (the Graph root, e.g. https://graph.microsoft.com) and "
                           "GRAPH_API_VERSION")
    values = body.get("value") if isinstance(body, dict) else None
    if not isinstance(values, list):
        return CheckResult("graph gallery", FAILED, f"{settings.graph_root}/applicationTemplates answered without a "
                           "'value' list: GRAPH_BASE_URL does not point at Microsoft Graph",
                           "set GRAPH_BASE_URL to the Graph root, e.g. https://graph.microsoft.com")
    first = values[0].get("displayName") if values and isinstance(values[0], dict) else None
    return CheckResult("graph gallery", OK, f"read the application gallery at {settings.graph_root}"
                       + (f" (first template: {first})" if first else " (empty page)"))


def check_key_vault(settings: Settings, credential: Any) -> CheckResult:
    """List one page of secret properties (names and attributes only, never a value)."""
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

    from core.clients import make_secret_client
    from core.identity import token_failure_is_transient

    client = make_secret_client(settings, credential, retry_total=1)
    fix_role = ("grant the function app's identity 'Key Vault Secrets User' on the vault (infra/app/rbac.bicep does; "
                "locally: your app registration) and check KEY_VAULT_URL names the vault")
    try:
        page = next(iter(client.list_properties_of_secrets(max_page_size=5).by_page()), None)
        count = len(list(page)) if page is not None else 0
    except ClientAuthenticationError as exc:
        if token_failure_is_transient(exc):
            return CheckResult("key vault", FAILED, f"no Key Vault token now: {type(exc).__name__}",
                               "the token endpoint did not answer: run the preflight again")
        status = getattr(exc, "status_code", None)
        return CheckResult("key vault", FAILED, f"Key Vault {settings.key_vault_url} refused to list secrets"
                           + (f" (HTTP {status})" if status else f": {type(exc).__name__}"), fix_role)
    except HttpResponseError as exc:
        status = exc.status_code or 0
        code = getattr(getattr(exc, "error", None), "code", None)
        detail = f"Key Vault {settings.key_vault_url} refused to list secrets (HTTP {status}{', ' + code if code else ''})"
        if status in (401, 403):
            return CheckResult("key vault", FAILED, detail, fix_role)
        return CheckResult("key vault", FAILED, detail, "Key Vault is busy or unavailable: run the preflight again"
                           if status == 429 or status >= 500 else "check KEY_VAULT_URL")
    except Exception as exc:  # noqa: BLE001 - unreachable host, bad challenge resource, TLS...
        return CheckResult("key vault", FAILED, f"cannot reach Key Vault {settings.key_vault_url}: "
                           f"{type(exc).__name__}: {_first_line(exc)}",
                           "check KEY_VAULT_URL (https://<vault>.vault.azure.net) and the network path to the vault")
    finally:
        client.close()
    return CheckResult("key vault", OK, f"listed secret properties of {settings.key_vault_url} ({count} on the first "
                       "page; names and attributes only, no value read)")


def check_storage(env: Mapping[str, str], credential: Any) -> CheckResult:
    """The CLI's storage row: one List Queues call on the ``AzureWebJobsStorage`` connection."""
    conn = (env.get(STORAGE_SETTING) or "").strip()
    uri = (env.get(f"{STORAGE_SETTING}__queueServiceUri") or "").strip()
    if not uri and env.get(f"{STORAGE_SETTING}__accountName"):
        uri = f"https://{env[f'{STORAGE_SETTING}__accountName'].strip()}.queue.core.windows.net"
    dts = bool((env.get(DTS_SETTING) or "").strip())
    hub = ("the task hub is in the Durable Task Scheduler: only GET /api/preflight checks it" if dts else
           "on the Azure Storage backend the Durable task hub lives in this account (devhost keeps its own in SQLite)")
    if not conn and not uri:
        return CheckResult("storage", FAILED, f"{STORAGE_SETTING} is not set ({hub})",
                           f"set {STORAGE_SETTING} (locally: UseDevelopmentStorage=true, Azurite; in Azure infra/app/"
                           f"api.bicep sets {STORAGE_SETTING}__queueServiceUri and the managed identity)")
    try:
        from azure.storage.queue import QueueServiceClient
    except ImportError:
        return CheckResult("storage", WARNING, "not checked: the azure-storage-queue package is not installed here",
                           "pip install -r requirements-dev.txt, or call GET /api/preflight on the app")
    options: dict[str, Any] = {"retry_total": 0, "connection_timeout": 5, "read_timeout": 10}
    try:
        if conn:
            service = QueueServiceClient.from_connection_string(conn, **options)
        else:
            service = QueueServiceClient(uri, credential=credential, **options)
    except Exception as exc:  # noqa: BLE001 - a malformed connection string
        return CheckResult("storage", FAILED, f"{STORAGE_SETTING} is not a usable storage connection "
                           f"({type(exc).__name__})", f"set {STORAGE_SETTING} to a storage connection string or "
                           "UseDevelopmentStorage=true")
    where = f"{service.primary_hostname}"
    try:
        found = [q.name for q in islice(service.list_queues(name_starts_with=names.QUEUE_PROVISIONING_REQUESTS,
                                                            results_per_page=5), 5)]
    except Exception as exc:  # noqa: BLE001 - refused, unreachable, bad key
        status = getattr(exc, "status_code", None)
        return CheckResult("storage", FAILED, f"storage {where} did not list queues: {type(exc).__name__}"
                           + (f" (HTTP {status})" if status else ""),
                           "locally: start Azurite (devhost starts it for UseDevelopmentStorage=true); in Azure: "
                           "the identity needs 'Storage Queue Data Contributor' and the account must be reachable")
    finally:
        service.close()
    if names.QUEUE_PROVISIONING_REQUESTS not in found:
        return CheckResult("storage", WARNING, f"reached storage {where}, but the queue "
                           f"'{names.QUEUE_PROVISIONING_REQUESTS}' does not exist yet ({hub})",
                           "the deployment (infra/app/storage.bicep) creates it, and devhost creates it on start")
    return CheckResult("storage", OK, f"reached storage {where}; queue '{names.QUEUE_PROVISIONING_REQUESTS}' "
                       f"exists ({hub})")


def task_hub_result(status_code: int | None, task_hub: str | None, error: BaseException | None = None) -> CheckResult:
    """The HTTP variant's task-hub row from the answer to a status read of :data:`PROBE_INSTANCE_ID`."""
    hub = f"task hub '{task_hub}'" if task_hub else "the task hub"
    if error is not None:
        return CheckResult("task hub", FAILED, f"the Durable client could not read {hub}: {type(error).__name__}",
                           "check the Durable backend's storage connection (AzureWebJobsStorage, or the Durable Task "
                           "Scheduler connection) and the identity's data roles on it")
    if status_code in (200, 202, 404):  # 404: the hub answered "no such instance"
        return CheckResult("task hub", OK, f"{hub} answered a status read through the Durable extension "
                           f"(HTTP {status_code} for instance '{PROBE_INSTANCE_ID}')")
    return CheckResult("task hub", FAILED, f"{hub} answered a status read with HTTP {status_code}",
                       "the Durable backend cannot read its storage: check AzureWebJobsStorage (or the Durable Task "
                       "Scheduler connection) and the identity's data roles; the host log has the cause")


# ------------------------------------------------------------------------------------------ runner
def run_preflight(environ: Mapping[str, str] | None = None, *, credential: Any = None,
                  task_hub: CheckResult | None = None) -> PreflightReport:
    """Run every check and return the report (never raises for what it checks).

    ``credential``: the token credential to check (default: a new ``DefaultAzureCredential`` built
    as the app builds it). ``task_hub``: the HTTP trigger's task-hub row; without it the
    ``AzureWebJobsStorage`` connection is checked instead (the CLI).
    """
    env = dict(os.environ if environ is None else environ)
    rows, settings, bad = check_settings(env)
    own_credential = None
    if settings is not None and credential is None:
        from core.clients import make_credential

        credential = own_credential = make_credential(settings)
    try:
        if settings is None:
            rows += [CheckResult(name, SKIPPED, "not run: the settings cannot be read (see above)",
                                 "fix the setting rows above") for name in ("graph token", "graph gallery", "key vault")]
        else:
            rows += _guarded("graph token", lambda: _graph_rows(settings, credential, bad))
            rows += _guarded("key vault", lambda: [_skipped("key vault", _KEY_VAULT_SETTINGS, bad)
                                                   or check_key_vault(settings, credential)])
        rows += [task_hub] if task_hub is not None else _guarded("storage", lambda: [check_storage(env, credential)])
    finally:
        if own_credential is not None:
            own_credential.close()
    secrets = secret_values(env)
    return PreflightReport(tuple(_scrubbed(row, secrets) for row in rows))


def _guarded(name: str, check: Callable[[], list[CheckResult]]) -> list[CheckResult]:
    """``check()``, or one failed row naming the unexpected error's type (a bug must not hide the other rows)."""
    try:
        return check()
    except Exception as exc:  # noqa: BLE001 - reported as the check's result
        logger.error("preflight check %s raised %s", name, type(exc).__name__)  # no message: it could quote a value
        return [CheckResult(name, FAILED, f"the check itself failed: {type(exc).__name__}: {_first_line(exc)}",
                            "report this as a bug, with the log line 'preflight check ... raised'")]


def _graph_rows(settings: Settings, credential: Any, bad: set[str]) -> list[CheckResult]:
    skipped = _skipped("graph token", _GRAPH_TOKEN_SETTINGS, bad)
    if skipped:
        return [skipped, CheckResult("graph gallery", SKIPPED, "not run: no Graph token", "fix the rows above")]
    token_row, claims = check_graph_token(settings, credential)
    rows = [token_row]
    if claims is not None and token_row.status == OK:
        rows += check_graph_permissions(claims)
    else:
        rows.append(CheckResult("graph permissions", SKIPPED, "not run: no app token to read the roles of",
                                "fix the graph token row"))
    if token_row.status == OK:
        rows.append(_skipped("graph gallery", _GRAPH_CALL_SETTINGS, bad) or check_graph_gallery(settings, credential))
    else:
        rows.append(CheckResult("graph gallery", SKIPPED, "not run: no usable Graph token", "fix the graph token row"))
    return rows


# ------------------------------------------------------------------------------------------ secrets
def secret_values(env: Mapping[str, str]) -> list[str]:
    """Values of secret-like variables (and key parts of connection strings), longest first."""
    found: set[str] = set()
    for key, value in env.items():
        if not value:
            continue
        if _SECRET_NAME.search(key) and len(value) >= 8:
            found.add(value)
        found.update(m.group(1) for m in _SECRET_PART.finditer(value) if len(m.group(1)) >= 8)
    return sorted(found, key=len, reverse=True)


def scrub(text: str, secrets: Sequence[str]) -> str:
    for value in secrets:
        text = text.replace(value, "***")
    return _JWT.sub("<token>", text)


def _scrubbed(row: CheckResult, secrets: Sequence[str]) -> CheckResult:
    return CheckResult(row.name, row.status, scrub(row.detail, secrets)[:_MAX_TEXT * 2], scrub(row.fix, secrets))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else "")[:_MAX_TEXT]


# ------------------------------------------------------------------------------------------ output
_LABELS = {OK: "ok", FAILED: "FAILED", WARNING: "warning", SKIPPED: "skipped"}


def format_report(report: Mapping[str, Any] | PreflightReport, width: int | None = None) -> str:
    """The report as readable text: one block per check (result and name, then detail and fix).

    Accepts a :class:`PreflightReport` or its ``to_dict`` form (e.g. the HTTP answer).
    """
    data = report.to_dict() if isinstance(report, PreflightReport) else report
    width = max(60, width or shutil.get_terminal_size((110, 20)).columns) - 1
    counts = data.get("counts") or {}
    lines = [f"Preflight {'PASSED' if data.get('ok') else 'FAILED'}: "
             + ", ".join(f"{counts.get(s, 0)} {s}" for s in STATUSES if counts.get(s))]
    pad = " " * 11
    for check in data.get("checks") or []:
        status = check.get("status", "")
        lines.append(f"  {_LABELS.get(status, status):<8} {check.get('name', '')}")
        lines += _wrap(check.get("detail", ""), width, pad, pad)
        if check.get("fix") and status in (FAILED, WARNING, SKIPPED):
            lines += _wrap(check["fix"], width, pad + "fix: ", pad + "     ")
    return "\n".join(lines)


def _wrap(text: str, width: int, first: str, rest: str) -> list[str]:
    return textwrap.wrap(text, width, initial_indent=first, subsequent_indent=rest, break_long_words=False,
                         break_on_hyphens=False)


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (the emulator's env file, a .env), or the ``Values`` of local.settings.json."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        values = json.loads(text).get("Values") or {}
        return {str(k): str(v) for k, v in values.items() if v is not None}
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip().removeprefix("export ").strip()] = value.strip().strip('"').strip("'")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m core.preflight",
        description="Check settings, the Graph token and its permissions, the gallery, Key Vault and storage.")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument("--env-file", action="append", default=[], type=Path, metavar="FILE",
                        help="read settings from a KEY=VALUE file or local.settings.json (repeatable); variables "
                             "already set in the environment win, as with the Functions host")
    args = parser.parse_args(argv)
    for path in args.env_file:
        try:
            values = read_env_file(path)
        except (OSError, ValueError) as exc:
            parser.error(f"cannot read {path}: {type(exc).__name__}")
        for key, value in values.items():  # as the Functions host does: app settings become variables,
            os.environ.setdefault(key, value)  # and the SDKs (azure-identity, requests) read them from there
    env = dict(os.environ)
    report = run_preflight(env)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(format_report(report))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
