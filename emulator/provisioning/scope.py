"""Who is in a job's scope, read from the directory at the start of each cycle.

Scope is the service principal's assigned users and groups plus the *direct* user members of
assigned groups (nested groups are not provisioned, DOC), or every user and group when the
``SyncAll`` secret is ``"true"``. Each object is reduced to the attributes the connector maps, with
a hash so the next cycle can tell an unchanged object from an updated one.
"""

from __future__ import annotations

import json

from emulator.provisioning.directory_view import DirectoryView

#: directory attributes (besides the ones in ``attrs``) that mappings and scoping filters may read
SOURCE_ATTRIBUTES = ("givenName", "surname", "jobTitle", "department", "mailNickname", "employeeId", "country",
                     "city", "companyName", "usageLocation", "description")


def object_from_directory(item: dict) -> dict | None:
    """The engine's view of a directory user or group (None for anything else, e.g. an SP)."""
    odata_type = str(item.get("@odata.type", "")).lower()
    if "principalType" in item and "principalId" in item:  # an appRoleAssignment rather than the object
        kind = item["principalType"]
        oid, name = item["principalId"], item.get("principalDisplayName") or ""
        attrs = {"displayName": name}
    elif odata_type.endswith("group") or (not odata_type and ("securityEnabled" in item or "groupTypes" in item)):
        kind, oid, name = "Group", item.get("id"), item.get("displayName") or ""
        attrs = {
            "displayName": name,
            "mailEnabled": str(bool(item.get("mailEnabled", False))),
            "securityEnabled": str(bool(item.get("securityEnabled", True))),
            "mailNickname": item.get("mailNickname") or "",
        }
    elif odata_type.endswith("user") or (not odata_type and "userPrincipalName" in item):
        kind, oid, name = "User", item.get("id"), item.get("displayName") or ""
        attrs = {
            "userPrincipalName": item.get("userPrincipalName") or "",
            "displayName": name,
            "mail": item.get("mail") or "",
            "accountEnabled": str(bool(item.get("accountEnabled", True))),
        }
    else:
        return None
    if kind not in ("User", "Group") or not oid:
        return None
    # what attribute mappings and scoping filters read (emulator.provisioning.mapping): the
    # directory's string attributes, booleans as "True"/"False", plus IsSoftDeleted
    source = {"objectId": oid, "IsSoftDeleted": "False", **{k: v for k, v in attrs.items()}}
    for name_ in SOURCE_ATTRIBUTES:
        value = item.get(name_)
        if isinstance(value, (str, bool)) and name_ not in source:
            source[name_] = str(value) if isinstance(value, bool) else value
    return {"id": oid, "type": kind, "displayName": name, "attrs": attrs, "hash": json.dumps(attrs, sort_keys=True),
            "source": source}


def scope_objects(directory: DirectoryView, sp_id: str, sync_all: bool) -> dict[str, dict]:
    """Users and groups in scope: all of them, or the assigned ones plus direct members of assigned groups."""
    found: dict[str, dict] = {}

    def add(item: dict) -> dict | None:
        obj = object_from_directory(item)
        if obj is not None:
            found.setdefault(obj["id"], obj)
        return obj

    if sync_all:
        for item in directory.all_users():
            add(item)
        for item in directory.all_groups():
            add(item)
        return found
    for item in directory.assigned_principals(sp_id):
        obj = add(item)
        if obj is not None and obj["type"] == "Group":
            for member in directory.group_members(obj["id"]):
                member_obj = object_from_directory(member)
                if member_obj is not None and member_obj["type"] == "User":  # nested groups are not provisioned
                    found.setdefault(member_obj["id"], member_obj)
    return found
