"""Role-import jobs: a synchronization template whose job reads roles from the app and writes them
into the service principal's ``appRoles`` instead of provisioning users (catalog ``jobKind``
``roleImport``; AWS Single-Account Access is the gallery example).

Sources:

* Entra's AWS Single-Account Access tutorial
  (https://learn.microsoft.com/entra/identity/saas-apps/amazon-web-service-tutorial): "The
  provisioning service imports roles only from AWS to Microsoft Entra ID. The service doesn't
  provision users and groups from Microsoft Entra ID to AWS"; "All imported roles are written to the
  appRoles property of the Microsoft Entra ID servicePrincipal object"; a role is eligible only with
  exactly one SAML provider and a combined role ARN + provider ARN length below 240; credentials are
  the AWS access key (``clientsecret``) and secret (``Secret Token``); roles should not be edited by
  hand while imports run.
* AWS (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_providers_create_saml_assertions.html):
  the SAML ``Role`` attribute value is ``<role ARN>,<provider ARN>``, which is why the imported
  role's ``value`` has that form (Entra sends the assigned role's value as the claim).
* The legacy multi-account tutorial
  (https://learn.microsoft.com/entra/identity/saas-apps/aws-multi-accounts-tutorial) shows such roles
  on a service principal: displayName and description ``RoleName,ProviderName``, allowedMemberTypes
  ``["User"]``, origin ``ServicePrincipal``.
* Users' reports (https://github.com/MicrosoftDocs/azure-docs/issues/17151,
  https://github.com/MicrosoftDocs/azure-docs/issues/51322): a role that stops qualifying is
  disabled in Entra on a later cycle, not deleted.

UNCONFIRMED (no public example of a role-import provisioning log row): the row's direction
(``sourceSystem`` the app, ``targetSystem`` Microsoft Entra ID, as inbound jobs log), the identity
types (``Role`` / ``AppRole``) and the ``synchronizedEntryCountByType`` key. They are data in the
catalog entry's ``roleImport`` block, not code.
"""

from __future__ import annotations

import copy
import hashlib
import json

ROLE_IMPORT = "roleImport"

#: used when a catalog entry's roleImport block leaves a field out
DEFAULTS = {
    "value": "{roleArn},{providerArn}",
    "displayName": "{roleName},{providerName}",
    "description": "{roleName},{providerName}",
    "maxCombinedArnLength": 239,
    "sourceObjectType": "Role",
    "targetObjectType": "AppRole",
    "entryCountType": "Role to AppRole",
    "logDirection": "inbound",
}


def is_role_import(sync: dict | None) -> bool:
    """Whether a synchronization template (catalog record) imports roles."""
    return bool(sync) and sync.get("jobKind") == ROLE_IMPORT


def config(sync: dict) -> dict:
    """The template's roleImport block with defaults filled in."""
    block = sync.get("roleImport") if isinstance(sync.get("roleImport"), dict) else {}
    return {**DEFAULTS, **{k: v for k, v in block.items() if not k.startswith("_")}}


def account_for(targets: dict, address: str, sync_template_id: str | None) -> dict:
    """The simulated AWS account behind an access key: the matching target entry's ``awsAccount``,
    else ``defaultAwsAccount`` (an empty account when neither exists)."""
    accounts = targets.get("awsAccounts") or {}
    wanted = (address or "").strip().rstrip("/").lower()
    name = targets.get("defaultAwsAccount")
    for entry in targets.get("targets", []):
        if wanted and entry.get("address", "").strip().rstrip("/").lower() == wanted and \
                (not entry.get("templateId") or entry["templateId"] == sync_template_id):
            name = entry.get("awsAccount", name)
            break
    account = accounts.get(name) if isinstance(name, str) else None
    return account if isinstance(account, dict) else {"accountId": "000000000000", "roles": []}


def eligible_roles(account: dict, cfg: dict) -> list[dict]:
    """The account's roles the job imports, each ``{"roleName", "providerName", "roleArn",
    "providerArn", "value", "displayName", "description"}``, sorted by value (deterministic)."""
    account_id = str(account.get("accountId", "000000000000"))
    out = []
    for role in account.get("roles") or []:
        providers = role.get("samlProviders") or []
        if len(providers) != 1:  # DOC: exactly one SAML provider; none = not federated at all
            continue
        path = role.get("path") or "/"
        names = {
            "roleName": role["roleName"],
            "providerName": providers[0],
            "roleArn": f"arn:aws:iam::{account_id}:role{path}{role['roleName']}",
            "providerArn": f"arn:aws:iam::{account_id}:saml-provider/{providers[0]}",
            "accountId": account_id,
        }
        if len(names["roleArn"]) + len(names["providerArn"]) > int(cfg["maxCombinedArnLength"]):
            continue  # DOC: the combined length must be less than 240 characters
        item = dict(names)
        for key in ("value", "displayName", "description"):
            item[key] = str(cfg[key]).format(**names)
        out.append(item)
    return sorted(out, key=lambda r: r["value"])


def role_objects(account: dict, cfg: dict) -> dict[str, dict]:
    """The eligible roles as source objects of a cycle, keyed by value (the role's identity: the
    role ARN and provider ARN pair, so the same role name federated another way is another role)."""
    objects = {}
    for role in eligible_roles(account, cfg):
        attrs = {"value": role["value"], "displayName": role["displayName"], "description": role["description"]}
        digest = hashlib.sha256(json.dumps(attrs, sort_keys=True).encode()).hexdigest()[:16]
        objects[role["value"]] = {"id": role["value"], "arn": role["roleArn"], "type": cfg["sourceObjectType"],
                                  "displayName": role["displayName"], "attrs": attrs, "hash": digest}
    return objects


def app_role(role_id: str, attrs: dict) -> dict:
    """The appRole written to the service principal for one imported role."""
    return {
        "allowedMemberTypes": ["User"],
        "description": attrs["description"],
        "displayName": attrs["displayName"],
        "id": role_id,
        "isEnabled": True,
        "origin": "ServicePrincipal",
        "value": attrs["value"],
    }


def find_role(app_roles: list[dict], value: str) -> dict | None:
    """The SP's app role with this value (an imported role, or one a person added with it)."""
    for role in app_roles or []:
        if isinstance(role, dict) and role.get("value") == value:
            return copy.deepcopy(role)
    return None


_CHANGE = {"create": "Add", "update": "Update", "disable": "Update", "other": "Update"}
_VERB = {"create": "created", "update": "updated", "disable": "disabled"}


def steps(action: str, kind: str, name: str, app: str, status: str) -> list[dict]:
    """provisioningSteps of one role import (import from the app, matching, export to Entra ID)."""
    out = [{
        "name": "EntryImportAdd" if action == "create" else "EntryImport",
        "provisioningStepType": "import",
        "status": "success" if status != "failure" else "failure",
        "description": f"Received {kind} '{name}' change of type ({_CHANGE[action]}) from {app}",
        "details": {},
    }]
    if action == "other":
        out.append({"name": "EntrySynchronizationSkip", "provisioningStepType": "matching", "status": "skipped",
                    "description": f"{kind} '{name}' was skipped: the service principal already holds it with the same values",
                    "details": {"SkipReason": "RedundantExport"}})
        return out
    out.append({"name": "EntrySynchronizationAdd" if action == "create" else "EntrySynchronizationUpdate",
                "provisioningStepType": "matching", "status": "success",
                "description": f"{kind} '{name}' will be {_VERB[action]} in Azure Active Directory", "details": {}})
    out.append({"name": "EntryExportAdd" if action == "create" else "EntryExportUpdate",
                "provisioningStepType": "export", "status": status,
                "description": (f"{kind} '{name}' was {_VERB[action]} in Azure Active Directory" if status == "success"
                                else f"Failed to import {kind} '{name}'"),
                "details": {"ReportableIdentifier": name}})
    return out


def modified_properties(action: str, attrs: dict, previous: dict | None) -> list[dict]:
    """What the import changed on the appRole."""
    if action == "create":
        return [{"displayName": key, "oldValue": None, "newValue": value} for key, value in attrs.items()]
    if action == "update":
        old = (previous or {}).get("attrs", {})
        return [{"displayName": key, "oldValue": old.get(key), "newValue": value}
                for key, value in attrs.items() if old.get(key) != value] or \
            [{"displayName": "isEnabled", "oldValue": "False", "newValue": "True"}]
    if action == "disable":
        return [{"displayName": "isEnabled", "oldValue": "True", "newValue": "False"}]
    return []


def log_row(*, row_id: str, change_id: str, at: str | None, ms: int, job_id: str, cycle_id: str, sp_id: str,
            ctx: dict, obj: dict, action: str, status: str, error: dict | None, role_id: str,
            previous: dict | None, source_system: dict, target_system: dict, initiated_by: dict) -> dict:
    """The provisioningObjectSummary of one role import (direction and identity types: UNCONFIRMED, data)."""
    cfg = ctx["roleImport"]
    return {
        "id": row_id,
        "activityDateTime": at,
        "tenantId": ctx["tenantId"],
        "jobId": job_id,
        "cycleId": cycle_id,
        "changeId": change_id,
        "provisioningAction": action,
        "durationInMilliseconds": ms,
        "sourceSystem": source_system,
        "targetSystem": target_system,
        "initiatedBy": initiated_by,
        "servicePrincipal": {"id": sp_id, "displayName": ctx["app"]},
        "sourceIdentity": {"id": obj.get("arn") or obj["id"], "displayName": obj["displayName"],
                           "identityType": cfg["sourceObjectType"], "details": {}},
        "targetIdentity": {"id": role_id, "displayName": obj["displayName"] if role_id else "",
                           "identityType": cfg["targetObjectType"], "details": {}},
        "provisioningStatusInfo": {"status": status, "errorInformation": error},
        "provisioningSteps": steps(action, cfg["sourceObjectType"], obj["displayName"], ctx["app"], status),
        "modifiedProperties": modified_properties(action, obj.get("attrs") or {}, previous),
    }
