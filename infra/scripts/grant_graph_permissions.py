"""Grant the function app's managed identity the Microsoft Graph application permissions it needs.

Run by a tenant admin (Privileged Role Administrator, Cloud Application Administrator cannot
grant Graph app roles) after `azd provision`, or again at any time: it is idempotent. Graph
application permissions are app-role assignments on the Microsoft Graph service principal, not
Azure RBAC, so Bicep's role assignments cannot grant them; creating the assignment *is* the admin
consent.

Exactly the permissions the app documents (``core.permissions.REQUIRED_GRAPH_PERMISSIONS``, the
README's "Graph permissions and why"), the least privilege that works:

* ``Application.ReadWrite.All``  instantiate gallery apps; tag, read and delete them. An app-only
  caller that instantiates is made owner of neither the application nor the service principal
  (https://github.com/microsoftgraph/microsoft-graph-docs/issues/16545,
  https://github.com/microsoftgraph/msgraph-sdk-powershell/issues/829), so
  ``Application.ReadWrite.OwnedBy`` covers nothing after instantiate, and adding the identity as
  owner itself needs ``Application.ReadWrite.All``
  (https://learn.microsoft.com/graph/api/application-post-owners).
* ``Synchronization.ReadWrite.All``  every synchronization call (job, validateCredentials,
  secrets, start, restart) without ownership.
* ``AppRoleAssignment.ReadWrite.All``  assign users and groups to the new enterprise apps.
* ``AuditLog.Read.All`` + ``Directory.Read.All``  read provisioning logs; Directory.Read.All also
  resolves the users and groups to assign (and is the read permission appRoleAssignedTo needs).

``--remove-unneeded`` also removes the identity's other Microsoft Graph permissions (e.g. the
``Application.ReadWrite.OwnedBy`` and ``Application.Read.All`` an older version of this script
granted); without it they are only reported. ``--fallback`` is accepted for old automation and
does nothing: ``Synchronization.ReadWrite.All`` is now always granted.

Usage::

    python infra/scripts/grant_graph_permissions.py --identity-client-id <client id> --dry-run
    python infra/scripts/grant_graph_permissions.py --identity-client-id <client id> [--remove-unneeded]

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

from pathlib import Path

import requests
from azure.core.credentials import TokenCredential
from azure.identity import ClientSecretCredential, DefaultAzureCredential

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:  # run as a file: the repository's core.permissions (imports nothing else)
    sys.path.insert(0, _ROOT)
from core.permissions import REQUIRED_GRAPH_PERMISSIONS  # noqa: E402

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
API_VERSION = "v1.0"
TIMEOUT = (10, 60)

#: exactly the documented set, in its order
LEAST_PRIVILEGE = tuple(REQUIRED_GRAPH_PERMISSIONS)


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
    removed: list[str] = field(default_factory=list)
    would_remove: list[str] = field(default_factory=list)
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "identity": self.identity,
            "granted": self.granted,
            "wouldGrant": self.would_grant,
            "alreadyGranted": self.already_granted,
            "notNeeded": self.not_needed,
            "removed": self.removed,
            "wouldRemove": self.would_remove,
            "dryRun": self.dry_run,
            "changed": bool(self.granted or self.removed),
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


def grant(graph: Graph, identity: dict[str, Any], wanted: list[str], dry_run: bool,
          remove_unneeded: bool = False) -> Result:
    """Create the missing app-role assignments of ``wanted`` on Microsoft Graph for ``identity``;
    with ``remove_unneeded``, delete its other Microsoft Graph app-role assignments."""
    graph_sp = graph.get(f"servicePrincipals(appId='{GRAPH_APP_ID}')")
    roles = application_roles(graph_sp)
    unknown = [value for value in wanted if value not in roles]
    if unknown:
        raise GrantError(f"Microsoft Graph has no application permission named {', '.join(unknown)}")
    role_names = {role_id: value for value, role_id in roles.items()}
    assignments = graph.list(f"servicePrincipals/{identity['id']}/appRoleAssignments")
    on_graph = [a for a in assignments if a["resourceId"] == graph_sp["id"]]
    held = {role_names.get(a["appRoleId"], a["appRoleId"]) for a in on_graph}

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
    if remove_unneeded:
        for assignment in on_graph:
            value = role_names.get(assignment["appRoleId"], assignment["appRoleId"])
            if value in wanted:
                continue
            if dry_run:
                result.would_remove.append(value)
                continue
            try:
                graph.call("DELETE", f"servicePrincipals/{identity['id']}/appRoleAssignments/{assignment['id']}")
            except GrantError as error:
                if "404" not in str(error):  # removed meanwhile by someone else: fine
                    raise
            result.removed.append(value)
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
    for value in result.removed:
        print(f"  removed          {value}")
    for value in result.would_remove:
        print(f"  would remove     {value}")
    for value in result.not_needed:
        if value not in result.removed and value not in result.would_remove:
            print(f"  also held        {value}  (not needed by this app; --remove-unneeded removes it)")
    if result.dry_run:
        print(f"Dry run: {len(result.would_grant)} permission(s) would be granted, {len(result.would_remove)} removed; "
              "nothing was changed.")
    elif result.granted or result.removed:
        print(f"Granted {len(result.granted)}, removed {len(result.removed)} permission(s). New tokens of the identity "
              "carry the change; a running function app keeps its cached token up to an hour: restart it. Azure also "
              "caches a managed identity's tokens, so the change can take hours to show (docs/deploy.md).")
    else:
        print("Nothing to do: every permission is already granted.")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--identity-client-id", help="client id of the managed identity (azd: AZURE_MANAGED_IDENTITY_CLIENT_ID)")
    target.add_argument("--identity-object-id", help="object id of the managed identity's service principal")
    target.add_argument("--identity-name", help="display name of the managed identity (must be unique)")
    parser.add_argument("--remove-unneeded", action="store_true",
                        help="also remove the identity's Microsoft Graph permissions this app does not need")
    parser.add_argument("--fallback", action="store_true", help=argparse.SUPPRESS)  # old flag: now a no-op
    parser.add_argument("--dry-run", action="store_true", help="print what would be granted; change nothing")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wanted = list(LEAST_PRIVILEGE)
    if args.fallback:
        print("note: --fallback is no longer needed: Synchronization.ReadWrite.All is always granted", file=sys.stderr)
    try:
        graph = Graph(
            credential_from_env(),
            os.environ.get("GRAPH_BASE_URL") or "https://graph.microsoft.com",
            os.environ.get("GRAPH_SCOPE") or "https://graph.microsoft.com/.default",
        )
        identity = find_identity(graph, args.identity_client_id, args.identity_object_id, args.identity_name)
        result = grant(graph, identity, wanted, args.dry_run, remove_unneeded=args.remove_unneeded)
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
