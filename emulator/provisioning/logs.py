"""Provisioning log rows (``provisioningObjectSummary``) and their v1.0 / beta shapes.

Rows are stored once, in the v1.0 shape, in a bounded ring buffer. ``render(row, "beta")`` adds
the deprecated beta names (``action``, ``statusInfo`` with the error fields directly inside), which
beta still returns next to the v1.0 names
(https://learn.microsoft.com/graph/api/resources/provisioningobjectsummary?view=graph-rest-beta).
"""

from __future__ import annotations

from collections import deque

AAD_SYSTEM = {"id": "0404601d-a9c0-4ec7-bbcd-02660120d8c9", "displayName": "Azure Active Directory", "details": {}}
PROVISIONING_SERVICE = {"id": "", "displayName": "Azure AD Provisioning Service", "initiatorType": "system"}
_BETA_ACTION = {"create": "Create", "update": "Update", "delete": "Delete", "disable": "Disable", "stagedDelete": "StagedDelete", "other": "Other"}


class LogStore:
    """Ring buffer of rows, oldest first; ``rows()`` gives newest first."""

    def __init__(self, capacity: int) -> None:
        self._rows: deque[dict] = deque(maxlen=max(1, capacity))
        self.added = 0  # rows ever added: rows()[k] is the (added - k)-th row written

    def add(self, row: dict) -> None:
        """Append one row (drops the oldest when full)."""
        self._rows.append(row)
        self.added += 1

    def last(self) -> dict:
        """The newest row."""
        return self._rows[-1]

    def rows(self) -> list[dict]:
        """Every kept row, newest first."""
        return list(reversed(self._rows))

    def __len__(self) -> int:
        return len(self._rows)

    def to_state(self) -> list[dict]:
        """Rows oldest first, JSON-ready."""
        return list(self._rows)

    def load_state(self, rows: list[dict], added: int | None = None) -> None:
        """Replace the buffer with saved rows (oldest first) and the count of rows ever added."""
        self._rows.clear()
        self._rows.extend(rows)
        self.added = max(added or 0, len(self._rows))


def render(row: dict, api_version: str) -> dict:
    """The row as the given API version returns it (a new top-level dict; nested parts shared)."""
    body = dict(row)
    if api_version != "beta":
        return body
    status = row["provisioningStatusInfo"]
    error = status.get("errorInformation")
    if error:
        body["statusInfo"] = {
            "@odata.type": "#microsoft.graph.statusDetails",
            "status": status["status"],
            "errorCode": error["errorCode"],
            "reason": error["reason"],
            "additionalDetails": error["additionalDetails"],
            "errorCategory": _pascal(error["errorCategory"]),
            "recommendedAction": error["recommendedAction"],
        }
    else:
        body["statusInfo"] = {"@odata.type": "#microsoft.graph.statusBase", "status": status["status"]}
    body["action"] = _BETA_ACTION.get(row["provisioningAction"], "Other")
    return body


def _pascal(text: str) -> str:
    return text[:1].upper() + text[1:]


def error_info(code: str, reason: str) -> dict:
    """provisioningErrorInfo for a failed export (the target's fault, so nonServiceFailure)."""
    return {"errorCode": code, "reason": reason, "additionalDetails": None, "errorCategory": "nonServiceFailure", "recommendedAction": None}


def _import_step(kind: str, name: str, change: str = "Add", step_name: str = "EntryImportAdd") -> dict:
    """The import step every event starts with."""
    return {
        "name": step_name,
        "provisioningStepType": "import",
        "status": "success",
        "description": f"Received {kind} '{name}' change of type ({change}) from Azure Active Directory",
        "details": {},
    }


def _scoping_step(kind: str, *, active: bool, assigned: bool, passed: bool, scoping_filter: str | None = None) -> dict:
    """The scoping step: the facts the service weighs, and whether the scoping filters passed."""
    details = {
        "Active in the source system": str(active),
        "Assigned to the application": str(assigned),
        f"{kind} has the required role": str(assigned),
        "Scoping filter evaluation passed": str(passed),
    }
    if scoping_filter is not None:
        details["Scoping filter"] = scoping_filter
    return {
        "name": "EntrySynchronizationScoping",
        "provisioningStepType": "scoping",
        "status": "success",
        "description": f"Determine if {kind} in scope by evaluating against each scoping filter",
        "details": details,
    }


def _skip_step(kind: str, name: str, reason: str, *, is_active: bool, in_scope: bool) -> dict:
    """The skip step of an object the cycle does not provision (SkipReason NotEffectivelyEntitled)."""
    return {
        "name": "EntrySynchronizationSkip",
        "provisioningStepType": "matching",
        "status": "skipped",
        "description": f"The {kind} '{name}' will be skipped due to the following reasons: {reason}",
        "details": {"SkipReason": NOT_EFFECTIVELY_ENTITLED, "IsActive": str(is_active),
                    "Assigned to the application": "True", "IsInProvisioningScope": str(in_scope)},
    }


def steps_for(action: str, kind: str, name: str, app: str, status: str, in_scope: bool) -> list[dict]:
    """provisioningSteps of one event, with the step names the real service logs."""
    if action == "skip":
        return skipped_steps(kind, name)
    change = {"create": "Add", "update": "Update", "disable": "Update", "delete": "Delete", "other": "Update"}[action]
    import_name = "EntryImportAdd" if action == "create" else "EntryImport"
    steps = [
        _import_step(kind, name, change, import_name),
        _scoping_step(kind, active=True, assigned=in_scope, passed=True),
    ]
    if action == "other":
        steps.append(
            {
                "name": "EntrySynchronizationSkip",
                "provisioningStepType": "matching",
                "status": "skipped",
                "description": f"{kind} '{name}' was skipped: it already exists in {app} with the same values",
                "details": {"SkipReason": "RedundantExport"},
            }
        )
        return steps
    verb = {"create": "created", "update": "updated", "disable": "disabled", "delete": "deleted"}[action]
    matching = {
        "create": ("EntrySynchronizationAdd", f"{kind} '{name}' will be created in {app} ({kind} is active and assigned in Azure Active Directory, but no matching {kind} was found in {app})"),
        "update": ("EntrySynchronizationUpdate", f"{kind} '{name}' will be updated in {app}"),
        "disable": ("EntrySynchronizationUpdate", f"{kind} '{name}' will be disabled in {app} ({kind} is no longer assigned in Azure Active Directory)"),
        "delete": ("EntrySynchronizationDelete", f"{kind} '{name}' will be deleted in {app} ({kind} is no longer assigned in Azure Active Directory)"),
    }[action]
    steps.append({"name": matching[0], "provisioningStepType": "matching", "status": "success", "description": matching[1], "details": {}})
    export_name = {"create": "EntryExportAdd", "update": "EntryExportUpdate", "disable": "EntryExportUpdate", "delete": "EntryExportDelete"}[action]
    if status == "success":
        description = f"{kind} '{name}' was {verb} in {app}"
    else:
        description = f"Failed to {action} {kind} '{name}' in {app}"
    steps.append(
        {
            "name": export_name,
            "provisioningStepType": "export",
            "status": status,
            "description": description,
            "details": {"ReportableIdentifier": name},
        }
    )
    return steps


#: SkipReason of a user the service does not provision (disabled, unassigned or out of the scoping filter)
NOT_EFFECTIVELY_ENTITLED = "NotEffectivelyEntitled"


def skipped_steps(kind: str, name: str) -> list[dict]:
    """provisioningSteps of a disabled user a cycle skips (status skipped, SkipReason NotEffectivelyEntitled).

    DOC: "filter the log to the action Create and status Skipped. If users were skipped with the
    SkipReason code of NotEffectivelyEntitled, this may indicate that the user accounts [...] were
    not matched because the user account status was Disabled"
    (https://learn.microsoft.com/entra/identity/app-provisioning/application-provisioning-config-problem-no-users-provisioned).
    The description follows the service's wording as users quote it
    (https://learn.microsoft.com/answers/questions/1023522/user-provisioning-noteffectivelyentitled);
    the skip step's details carry the scope facts next to the SkipReason, as a user's provisioning
    log shows them (OBS: IsActive, Assigned to the application, IsInProvisioningScope;
    https://learn.microsoft.com/answers/a/12571236).
    The step type is UNCONFIRMED: published rows show EntrySynchronizationSkip as ``export``
    (RedundantExport) or ``processing`` (AttributeValidationFailed); none for this reason.
    """
    reason = ("1) This object does not have required entitlement for provisioning. If you did not expect the "
              "object to be skipped, update provisioning scope to 'Sync all users and groups' or assign the object "
              "to the application with entitlement of provisioning category")
    return [
        _import_step(kind, name),
        _scoping_step(kind, active=False, assigned=True, passed=True),
        _skip_step(kind, name, reason, is_active=False, in_scope=True),
    ]


def modified_properties(action: str, obj: dict, previous: dict | None) -> list[dict]:
    """modifiedProperty list: every mapped attribute on create, the changed ones on update."""
    attrs = obj.get("attrs", {})
    if action == "create":
        return [{"displayName": "objectId", "oldValue": None, "newValue": obj["id"]}] + [
            {"displayName": key, "oldValue": None, "newValue": value} for key, value in attrs.items()
        ]
    if action == "update":
        old = (previous or {}).get("attrs", {})
        return [
            {"displayName": key, "oldValue": old.get(key), "newValue": value}
            for key, value in attrs.items()
            if old.get(key) != value
        ]
    if action == "disable":
        return [{"displayName": "accountEnabled", "oldValue": "True", "newValue": "False"}]
    return []


def scoped_out_steps(kind: str, name: str, groups: str) -> list[dict]:
    """provisioningSteps of an object a scoping filter refuses (status skipped, SkipReason NotEffectivelyEntitled).

    The reason is the third one the service lists for NotEffectivelyEntitled, "This object did not
    pass a scoping filter" (as users quote it:
    https://learn.microsoft.com/answers/questions/1023522/user-provisioning-noteffectivelyentitled);
    the scoping step fails (``Scoping filter evaluation passed`` False) and names the filter groups.
    """
    reason = ("1) This object did not pass a scoping filter. If you did not expect the object to be skipped, "
              "please review your scoping filters and ensure that the object passes your specified scoping criteria.")
    return [
        _import_step(kind, name),
        _scoping_step(kind, active=True, assigned=True, passed=False, scoping_filter=groups),
        _skip_step(kind, name, reason, is_active=True, in_scope=False),
    ]
