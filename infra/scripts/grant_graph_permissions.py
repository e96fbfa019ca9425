"""Grant the function app's managed identity the Microsoft Graph application permissions it needs.

Run by a tenant admin (Privileged Role Administrator, Cloud Application Administrator cannot
grant Graph app roles) after `azd provision`, or again at any time: it is idempotent. Graph
application permissions are app-role assignments on the Microsoft Graph service principal, not
Azure RBAC, so Bicep's role assignments cannot grant them; creating the assignment *is* the admin
consent.

Least privilege first (reference graph-provisioning-api.md §5.3):

* ``Application.ReadWrite.OwnedBy``  instantiate gallery apps; tag, read and delete them; every
  synchronization call on service principals the identity created (and so owns).
* ``AppRoleAssignment.ReadWrite.All`` + ``Application.Read.All``  assign users and groups to the
  new enterprise apps (Graph requires both).
* ``AuditLog.Read.All`` + ``Directory.Read.All``  read provisioning logs; Directory.Read.All also
  resolves the users and groups to assign.

``--fallback`` adds ``Synchronization.ReadWrite.All``: needed only if the tenant answers 403 to
synchronization calls on apps the identity instantiated (whether instantiating makes the caller
owner of the *service principal* is UNCONFIRMED; see docs/deploy.md). The other documented way out
is to add the identity as owner of each service principal, which this app does not do.

Usage::

    python infra/scripts/grant_graph_permissions.py --identity-client-id <client id> --dry-run
    python infra/scripts/grant_graph_permissions.py --identity-client-id <client id> [--fallback]

Credentials: a client secret from ``AZURE_TENANT_ID`` / ``AZURE_CLIENT_ID`` / ``AZURE_CLIENT_SECRET``
when set (automation, the emulator), otherwise ``DefaultAzureCredential`` (``az login``,
``azd auth login``...). ``GRAPH_BASE_URL``, ``GRAPH_SCOPE``, ``AZURE_AUTHORITY_HOST``,
``AZURE_DISABLE_INSTANCE_DISCOVERY`` and ``REQUESTS_CA_BUNDLE`` are honoured, so the same script
runs against the local emulator. Tokens and secrets are never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import requests
from azure.core.credentials import TokenCredential
from azure.identity import ClientSecretCredential, DefaultAzureCredential

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
API_VERSION = "v1.0"
TIMEOUT = (10, 60)

LEAST_PRIVILEGE = (
    "Application.ReadWrite.OwnedBy",
    "AppRoleAssignment.ReadWrite.All",
    "Application.Read.All",
    "AuditLog.Read.All",
    "Directory.Read.All",
)
FALLBACK = ("Synchronization.ReadWrite.All",)


class GrantError(Exception):
    """A problem the admin must act on; the message says what and never holds a token."""


@dataclass
class Result:
    """What a run found and did (printed as text, or as JSON with --json)."""

    identity: dict[str, str]
    granted: list[str] = field(default_factory=list)
    would_grant: list[str] = field(default_factory=list)
    already_granted: list[str] = field(default_factory=list)
    not_needed: list[str] = field(default_factory=list)
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "identity": self.identity,
            "granted": self.granted,
            "wouldGrant": self.would_grant,
            "alreadyGranted": self.already_granted,
            "notNeeded": self.not_needed,
            "dryRun": self.dry_run,
            "changed": bool(self.granted),
        }


class Graph:
    """The handful of Graph calls this script makes, with errors turned into GrantError."""

    def __init__(self, credential: TokenCredential, base_url: str, scope: str) -> None:
        self.root = f"{base_url.rstrip('/')}/{API_VERSION}"
        self.credential = credential
        self.scope = scope
        self.session = requests.Session()

    def _headers(self) -> dict[str, str]:
        token = self.credential.get_token(self.scope).token
        return {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> requests.Response:
        url = path if path.startswith("https://") else f"{self.root}/{path}"
        response = self.session.request(method, url, json=body, headers=self._headers(), timeout=TIMEOUT)
        if response.status_code >= 400:
            raise GrantError(f"{method} {path} -> {response.status_code} {_graph_error(response)}")
        return response

    def get(self, path: str) -> dict[str, Any]:
        return dict(self.call("GET", path).json())

    def list(self, path: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        next_path: str | None = path
        while next_path:
            page = self.get(next_path)
            items.extend(page.get("value", []))
            next_path = page.get("@odata.nextLink")
        return items


def _graph_error(response: requests.Response) -> str:
    try:
        error = response.json().get("error", {})
        return f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")
    except ValueError:
        return response.reason or ""


def _odata_string(value: str) -> str:
    if any(ord(ch) < 32 for ch in value):
        raise GrantError("the display name contains control characters")
    return "'" + value.replace("'", "''") + "'"


def find_identity(graph: Graph, client_id: str | None, object_id: str | None, name: str | None) -> dict[str, Any]:
    """The managed identity's service principal, by client (app) id, object id or display name."""
    try:
        if object_id:
            return graph.get(f"servicePrincipals/{object_id}")
        if client_id:
            return graph.get(f"servicePrincipals(appId='{client_id}')")
    except GrantError as error:
        raise GrantError(f"managed identity not found ({error})") from None
    assert name is not None
    matches = graph.list(f"servicePrincipals?$filter=displayName eq {_odata_string(name)}")
    if len(matches) != 1:
        raise GrantError(
            f"{len(matches)} service principals are named {name!r}; use --identity-client-id or --identity-object-id"
        )
    return matches[0]


def application_roles(graph_sp: dict[str, Any]) -> dict[str, str]:
    """Microsoft Graph's application permissions: value -> app role id."""
    return {
        role["value"]: role["id"]
        for role in graph_sp.get("appRoles", [])
        if "Application" in role.get("allowedMemberTypes", []) and role.get("isEnabled", True)
    }


def grant(graph: Graph, identity: dict[str, Any], wanted: list[str], dry_run: bool) -> Result:
    """Create the missing app-role assignments of ``wanted`` on Microsoft Graph for ``identity``."""
    graph_sp = graph.get(f"servicePrincipals(appId='{GRAPH_APP_ID}')")
    roles = application_roles(graph_sp)
    unknown = [value for value in wanted if value not in roles]
    if unknown:
        raise GrantError(f"Microsoft Graph has no application permission named {', '.join(unknown)}")
    role_names = {role_id: value for value, role_id in roles.items()}
    assignments = graph.list(f"servicePrincipals/{identity['id']}/appRoleAssignments")
    held = {role_names.get(a["appRoleId"], a["appRoleId"]) for a in assignments if a["resourceId"] == graph_sp["id"]}

    result = Result(
        identity={"id": identity["id"], "appId": identity.get("appId", ""), "displayName": identity.get("displayName", "")},
        dry_run=dry_run,
        already_granted=[value for value in wanted if value in held],
        not_needed=sorted(held - set(wanted)),
    )
    for value in wanted:
        if value in held:
            continue
        if dry_run:
            result.would_grant.append(value)
            continue
        body = {"principalId": identity["id"], "resourceId": graph_sp["id"], "appRoleId": roles[value]}
        try:
            graph.call("POST", f"servicePrincipals/{identity['id']}/appRoleAssignments", body)
        except GrantError as error:
            # Another admin (or a concurrent run) granted it between our read and this write.
            if "already exists" not in str(error):
                raise
            result.already_granted.append(value)
            continue
        result.granted.append(value)
    return result


def credential_from_env() -> TokenCredential:
    """A client-secret credential when the environment holds one, else DefaultAzureCredential."""
    disable_discovery = os.environ.get("AZURE_DISABLE_INSTANCE_DISCOVERY", "false").strip().lower() in ("1", "true", "yes")
    secret = os.environ.get("AZURE_CLIENT_SECRET")
    if secret:
        missing = [n for n in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID") if not os.environ.get(n)]
        if missing:
            raise GrantError(f"AZURE_CLIENT_SECRET is set but {', '.join(missing)} is not")
        return ClientSecretCredential(
            os.environ["AZURE_TENANT_ID"],
            os.environ["AZURE_CLIENT_ID"],
            secret,
            authority=os.environ.get("AZURE_AUTHORITY_HOST") or None,
            disable_instance_discovery=disable_discovery,
        )
    return DefaultAzureCredential(exclude_managed_identity_credential=True)


def print_result(result: Result) -> None:
    who = result.identity
    print(f"Managed identity: {who['displayName']} (client id {who['appId']}, object id {who['id']})")
    for value in result.already_granted:
        print(f"  already granted  {value}")
    for value in result.granted:
        print(f"  granted          {value}")
    for value in result.would_grant:
        print(f"  would grant      {value}")
    for value in result.not_needed:
        print(f"  also held        {value}  (not needed by this app; remove it if nothing else uses it)")
    if result.dry_run:
        print(f"Dry run: {len(result.would_grant)} permission(s) would be granted; nothing was changed.")
    elif result.granted:
        print(f"Granted {len(result.granted)} permission(s). New tokens of the identity carry them (allow a few minutes).")
    else:
        print("Nothing to do: every permission is already granted.")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--identity-client-id", help="client id of the managed identity (azd: AZURE_MANAGED_IDENTITY_CLIENT_ID)")
    target.add_argument("--identity-object-id", help="object id of the managed identity's service principal")
    target.add_argument("--identity-name", help="display name of the managed identity (must be unique)")
    parser.add_argument("--fallback", action="store_true", help="also grant Synchronization.ReadWrite.All")
    parser.add_argument("--dry-run", action="store_true", help="print what would be granted; change nothing")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wanted = list(LEAST_PRIVILEGE) + (list(FALLBACK) if args.fallback else [])
    try:
        graph = Graph(
            credential_from_env(),
            os.environ.get("GRAPH_BASE_URL") or "https://graph.microsoft.com",
            os.environ.get("GRAPH_SCOPE") or "https://graph.microsoft.com/.default",
        )
        identity = find_identity(graph, args.identity_client_id, args.identity_object_id, args.identity_name)
        result = grant(graph, identity, wanted, args.dry_run)
    except GrantError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # sign-in failures from azure-identity, network errors
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
