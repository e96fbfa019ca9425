"""provisionOnDemand: provision chosen users or groups at once, outside the cycle schedule.

The result is a ``stringKeyStringValuePair`` whose ``key`` and ``value`` are JSON *strings*
(https://learn.microsoft.com/graph/api/synchronization-synchronizationjob-provisionondemand).
One subject gives shape 1 (``key`` = ``{"result","details"}``, ``value`` = one object); several give shape 2 (``key`` = the StatusInfo contract name, ``value`` = an array).
"""

from __future__ import annotations

import json

from emulator.errors import GraphError, not_found
from emulator.provisioning import mapping as schema_mapping
from emulator.provisioning.directory_view import DirectoryView
from emulator.provisioning.engine import CONNECTION_FAILURES, Engine
from emulator.provisioning.jobs import Job, ts
from emulator.provisioning.scope import object_from_directory, scope_objects

MULTI_KEY = "Microsoft.Identity.Health.CPP.Common.DataContracts.SyncFabric.StatusInfo"


def _bad(message: str) -> GraphError:
    return GraphError(400, "BadRequest", message)


def response(results: list[tuple[dict, dict]]) -> dict:
    """The 200 body for one or several subjects."""
    if len(results) == 1:
        key, value = results[0]
        return {"@odata.type": "#microsoft.graph.stringKeyStringValuePair", "key": json.dumps(key), "value": json.dumps(value)}
    return {"@odata.type": "#microsoft.graph.stringKeyStringValuePair", "key": MULTI_KEY, "value": json.dumps([value for _, value in results])}


def parse_subjects(body: dict, schema: dict, directory: DirectoryView) -> list[dict]:
    """The directory objects named by a provisionOnDemand body (400 for a bad body, 404 unknown object)."""
    params = body.get("parameters") if isinstance(body, dict) else None
    if not isinstance(params, list) or not params:
        raise _bad("'parameters' is required: [{ruleId, subjects: [{objectId, objectTypeName}]}].")
    rule_ids = {r["id"] for r in schema.get("synchronizationRules", []) if isinstance(r, dict) and isinstance(r.get("id"), str)}
    objects = None
    found: list[dict] = []
    for index, param in enumerate(params):
        rule_id = param.get("ruleId") if isinstance(param, dict) else None
        if not isinstance(rule_id, str) or rule_id not in rule_ids:
            raise _bad(f"parameters[{index}].ruleId must be the id of a synchronizationRule of the job's schema.")
        subjects = param.get("subjects")
        if not isinstance(subjects, list) or not subjects:
            raise _bad(f"parameters[{index}].subjects must be a non-empty array.")
        for subject in subjects:
            if not isinstance(subject, dict) or not isinstance(subject.get("objectId"), str):
                raise _bad(f"parameters[{index}].subjects[].objectId is required.")
            if objects is None:
                objects = {o["id"]: o for o in map(object_from_directory, directory.all_users() + directory.all_groups()) if o}
            obj = objects.get(subject["objectId"])
            if obj is None:
                raise not_found(subject["objectId"])
            found.append(obj)
    return found


def provision_one(engine: Engine, directory: DirectoryView, job: Job, ctx: dict, obj: dict, now: float) -> tuple[dict, dict]:
    """Provision one object now; returns the (key, value) objects of its stringKeyStringValuePair."""
    in_scope = obj["id"] in scope_objects(directory, job.sp_id, ctx["syncAll"])
    if in_scope and ctx.get("mappings"):
        outcome, values, reason = schema_mapping.project(obj, ctx["mappings"])
        if outcome == schema_mapping.OUT_OF_FILTER:
            key = {"result": "Skipped", "details": {"errorCode": "NotEffectivelyEntitled",
                                                    "reason": f"{obj['type']} '{obj['displayName']}' did not pass a scoping filter ({reason})."}}
            return key, {"action": "Other", "reportableIdentifier": obj["displayName"], "sourceIdentity": {"id": obj["id"], "displayName": obj["displayName"], "identityType": obj["type"], "details": {}}}
        if outcome == schema_mapping.EXPORT:
            obj = {**obj, "attrs": values, "hash": schema_mapping.values_hash(values)}
    if not in_scope:
        key = {"result": "Skipped", "details": {"errorCode": "NotEffectivelyEntitled", "reason": f"{obj['type']} '{obj['displayName']}' is not assigned to the application."}}
        return key, {"action": "Other", "reportableIdentifier": obj["displayName"], "sourceIdentity": {"id": obj["id"], "displayName": obj["displayName"], "identityType": obj["type"], "details": {}}}
    link = job.links.get(obj["id"])
    action = "create" if link is None else ("update" if link["hash"] != obj["hash"] else "other")
    error = None
    if ctx["scenario"] in CONNECTION_FAILURES:
        status, error = "failure", CONNECTION_FAILURES[ctx["scenario"]]
    elif ctx["scenario"] == "escrowFailures" and action != "other":
        status, error = "failure", "serverError"
    else:
        status = "skipped" if action == "other" else "success"
    row = engine.apply_single(job, obj, action, status, error, ctx, now)
    info = row["provisioningStatusInfo"]
    err = info["errorInformation"] or {}
    result = {"success": "Success", "failure": "Failure", "skipped": "Skipped"}[status]
    key = {"result": result, "details": {"errorCode": "RedundantExport"} if status == "skipped" else ({"errorCode": err.get("errorCode")} if err else {})}
    value = {
        "action": action.capitalize(),
        "changeId": row["changeId"],
        "startTime": ts(now - row["durationInMilliseconds"] / 1000.0),
        "endTime": row["activityDateTime"],
        "modifiedProperties": row["modifiedProperties"],
        "provisioningSteps": row["provisioningSteps"],
        "reportableIdentifier": obj["displayName"],
        "statusInfo": {
            "status": result,
            "errorCode": err.get("errorCode"),
            "reason": err.get("reason"),
            "additionalDetails": None,
            "errorCategory": "NonServiceFailure" if err else None,
            "recommendedAction": None,
        },
        "sourceIdentity": row["sourceIdentity"],
        "sourceSystem": row["sourceSystem"],
        "targetIdentity": row["targetIdentity"],
        "targetSystem": row["targetSystem"],
    }
    return key, value
