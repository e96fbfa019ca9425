"""The provisioning cycles: what a started job does over simulated time.

Each job has at most one pending event in a heap keyed by simulated time. A cycle is planned when
it starts (scope snapshot from the directory, the changes to export, each one's outcome and
duration), then its entries are processed one event at a time so log rows appear in time order
across jobs; the cycle's end updates the job status, steady state and quarantine. ``advance(now)``
pops only the events that are due, so a request costs O(due events · log jobs), never O(history).
Idle cycles of a steady job are coalesced when the clock jumps far ahead (their outcome cannot
differ: the directory only changes through requests, and every request advances the engine first).
"""

from __future__ import annotations

import heapq
import logging
import math
import random
import uuid
from typing import Callable

from emulator.provisioning import logs as logrows
from emulator.provisioning import mapping as schema_mapping
from emulator.provisioning import role_import
from emulator.provisioning.directory_view import DirectoryView
from emulator.provisioning.jobs import NEVER_INTERVAL, Job, execution, ts
from emulator.provisioning.logs import LogStore
from emulator.provisioning.scope import scope_objects
from emulator.provisioning.settings import EngineSettings

log = logging.getLogger("emulator.provisioning")

# Error codes the simulated targets produce. The real codes depend on the connector; these follow
# the SCIM connector's naming (SystemForCrossDomainIdentityManagement...). UNCONFIRMED exact codes.
TARGET_ERRORS = {
    "unauthorized": ("SystemForCrossDomainIdentityManagementUnauthorized", 401, "Unauthorized: the credentials saved for this application were rejected"),
    "serverError": ("SystemForCrossDomainIdentityManagementServiceError", 500, "Internal Server Error"),
    "throttled": ("SystemForCrossDomainIdentityManagementThrottled", 429, "Too Many Requests"),
    # The quarantine article's "SCIM Compliance issue": HTTP/404 where 200 was expected; the code is the
    # provisioning-log table's "unable to parse the response" one (howto-analyze-provisioning-logs).
    # an export without a value for a required target attribute (e.g. SCIM userName, RFC 7643 section 4.1.1
    # "REQUIRED"): the SCIM service answers 400 (RFC 7644 section 3.12, scimType invalidValue). UNCONFIRMED
    # code: the provisioning-log table (howto-analyze-provisioning-logs) lists no code for it; a failure
    # is the harder choice for a client than a skip.
    "invalidValue": ("SystemForCrossDomainIdentityManagementBadRequest", 400,
                     "Bad Request: a required attribute has no value (scimType invalidValue)"),
    "notFound": ("SystemForCrossDomainIdentityManagementServiceIncompatible", 404,
                 "Not Found: an HTTP/404 Not Found response was returned rather than the expected HTTP/200 OK response"),
}
#: Scenarios whose cycle fails as a whole (no connection the service can use): quarantined at once,
#: whatever the failure count (the quarantine article: "regardless of failure counts for issues such
#: as admin credentials or SCIM compliance").
CONNECTION_FAILURES = {"invalidCredentials": "unauthorized", "scimNonCompliant": "notFound"}


#: internal action of a change the cycle skips (a disabled user): logged as provisioningAction create, status skipped
SKIP = "skip"
#: internal action of an object a scoping filter refuses: logged as provisioningAction create, status
#: skipped, SkipReason NotEffectivelyEntitled with "did not pass a scoping filter" (logs.scoped_out_steps)
SKIP_SCOPE = "skipScope"
SKIPS = (SKIP, SKIP_SCOPE)


def _disabled_user(obj: dict) -> bool:
    return obj["type"] == "User" and (obj.get("source") or obj.get("attrs", {})).get("accountEnabled") == "False"


def _project_scope(scope: dict[str, dict], compiled: dict) -> tuple[dict[str, dict], dict[str, dict]]:
    """Apply the job schema's object mappings (``mapping.compile_schema``) to the scope snapshot.

    Returns (objects to synchronize, with ``attrs`` = the exported target values, and objects a
    scoping filter refuses, with the filter in ``scopeReason``). An object type without an enabled
    object mapping is not synchronized at all. An empty ``compiled`` (a schema that maps nothing)
    keeps the directory attributes as they are.
    """
    if not compiled:
        return scope, {}
    kept: dict[str, dict] = {}
    refused: dict[str, dict] = {}
    for oid, obj in scope.items():
        outcome, values, reason = schema_mapping.project(obj, compiled)
        if outcome == schema_mapping.EXPORT:
            kept[oid] = {**obj, "attrs": values, "hash": schema_mapping.values_hash(values)}
            missing = schema_mapping.missing_required(obj["type"], values, compiled)
            if missing:
                kept[oid]["invalid"] = missing
        elif outcome == schema_mapping.OUT_OF_FILTER:
            refused[oid] = {**obj, "scopeReason": reason}
    return kept, refused


def new_guid(rng: random.Random) -> str:
    """A GUID from a seeded generator (deterministic ids)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


class Engine:
    """Runs the cycles of every started job. ``context(job)`` supplies per-cycle facts (see service)."""

    def __init__(self, settings: EngineSettings, directory: DirectoryView, log_store: LogStore, context: Callable[[Job], dict]) -> None:
        self.settings = settings
        self.directory = directory
        self.logs = log_store
        self.context = context
        self.jobs: dict[str, Job] = {}
        self._heap: list[tuple[float, int, str, int]] = []
        self._seq = 0

    # ----- scheduling -------------------------------------------------------------------
    def schedule(self, job: Job, at: float | None) -> None:
        """Replace the job's pending event (None: nothing pending)."""
        job.gen += 1
        if at is None:
            return
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, job.id, job.gen))

    def rebuild_heap(self) -> None:
        """Recreate pending events from job state (after load_state)."""
        self._heap.clear()
        for job in self.jobs.values():
            cycle = job.cycle
            if cycle is not None:
                items = cycle["items"]
                at = items[cycle["cursor"]]["at"] if cycle["cursor"] < len(items) else cycle["endsAt"]
                self.schedule(job, at)
            elif job.running and job.next_cycle_at is not None:
                self.schedule(job, job.next_cycle_at)

    def advance(self, now: float) -> None:
        """Process every event due at or before ``now``, in time order."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, _, job_id, gen = heapq.heappop(heap)
            job = self.jobs.get(job_id)
            if job is None or job.gen != gen:
                continue
            try:
                if job.cycle is None:
                    if job.running:
                        self._start_cycle(job, at, now)
                else:
                    self._process_next(job, at)
            except Exception as error:  # noqa: BLE001 - one broken job must not stop every other job
                log.exception("provisioning job %s: the cycle failed inside the emulator", job_id)
                self._fail_cycle(job, at, now, error)

    # ----- job control ------------------------------------------------------------------
    def start(self, job: Job, now: float) -> None:
        """Start or resume: clears quarantine (DOC), schedule Active/PT40M, first cycle after the delay."""
        job.quarantine = None
        job.disabled = False
        job.running = True
        job.schedule_state = "Active"
        job.interval = "PT40M"
        job.code = "Active" if job.watermark else "NotRun"
        if job.cycle is None:
            job.next_cycle_at = now + self.settings.cycle_start_delay_seconds
            self.schedule(job, job.next_cycle_at)

    def pause(self, job: Job) -> None:
        """Pause: keep all state; a cycle in flight runs to completion (DOC known issue)."""
        job.running = False
        job.code = "Paused"
        job.schedule_state = self.settings.pause_schedule_state
        job.next_cycle_at = None
        if job.cycle is None:
            self.schedule(job, None)

    def abort_cycle(self, job: Job) -> None:
        """Drop the cycle in flight (restart)."""
        job.cycle = None
        self.schedule(job, None)

    # ----- cycles -----------------------------------------------------------------------
    def _start_cycle(self, job: Job, at: float, now: float) -> None:
        ctx = self.context(job)
        rng = random.Random(f"{job.seed}:{job.cycle_count}")
        scope = scope_objects(self.directory, job.sp_id, ctx["syncAll"])
        scenario = ctx["scenario"]
        params = ctx["params"]
        threshold = ctx["deleteThreshold"]
        if ctx.get("jobKind") == role_import.ROLE_IMPORT:
            # a role-import job never exports users: its source is the app's roles (role_import.py)
            scope, threshold = self._role_scope(job, ctx), None
        elif scenario == "tooManyDeletes" and not job.stale_seeded:
            stale = params.get("staleAccounts") or ((threshold if threshold is not None else 500) + 1)
            for index in range(int(stale)):
                attrs = {"userPrincipalName": f"former.employee{index + 1}@contoso.test", "displayName": f"Former employee {index + 1}", "mail": "", "accountEnabled": "True"}
                job.links[f"stale-{job.id[-12:]}-{index:05d}"] = {"type": "User", "displayName": attrs["displayName"], "hash": "", "attrs": attrs, "targetId": new_guid(rng)}
            job.stale_seeded = True
        refused: dict[str, dict] = {}
        if ctx.get("jobKind") != role_import.ROLE_IMPORT:
            scope, refused = _project_scope(scope, ctx.get("mappings") or {})
        initial = not job.watermark
        changes: list[tuple[dict, str]] = []
        for obj in sorted(refused.values(), key=lambda o: (o["type"] != "User", o["displayName"].lower(), o["id"])):
            # DOC: an object a scoping filter refuses is skipped (https://learn.microsoft.com/graph/api/resources/
            # synchronization-filter: "objects that don't satisfy the filter is skipped"); one provisioned
            # before leaves the scope below (deprovisioned, as the filter resource says). Logged by initial
            # cycles, like a disabled user.
            if obj["id"] not in job.links and initial:
                changes.append((obj, SKIP_SCOPE))
        for obj in sorted(scope.values(), key=lambda o: (o["type"] != "User", o["displayName"].lower(), o["id"])):
            link = job.links.get(obj["id"])
            if link is None and _disabled_user(obj):
                # DOC: a disabled user is not provisioned; the log shows action Create, status Skipped,
                # SkipReason NotEffectivelyEntitled (learn.microsoft.com/entra/identity/app-provisioning/
                # application-provisioning-config-problem-no-users-provisioned). Logged by initial cycles
                # only: incremental cycles process changes, and a disabled user has none to export.
                if initial:
                    changes.append((obj, SKIP))
            elif link is None:
                changes.append((obj, "create"))
            elif link["hash"] != obj["hash"]:
                changes.append((obj, "update"))
            elif initial:
                changes.append((obj, "other"))
        deletes = []
        for oid in sorted(job.links):
            if oid not in scope:
                link = job.links[oid]
                obj = {"id": oid, "type": link["type"], "displayName": link["displayName"], "attrs": link.get("attrs", {}), "hash": link["hash"]}
                if "arn" in link:
                    obj["arn"] = link["arn"]
                roles = ctx.get("jobKind") == role_import.ROLE_IMPORT  # a role that stops qualifying is disabled
                deletes.append((obj, "disable" if link["type"] == "User" or roles else "delete"))
        held_deletes = 0
        if deletes and threshold is not None and len(deletes) > threshold and not job.force_deletes:
            held_deletes = len(deletes)
        else:
            changes.extend(deletes)
        if not changes and not held_deletes and scenario not in CONNECTION_FAILURES and self._steady(job):
            interval = self.settings.incremental_interval_seconds
            behind = now - at
            if behind > interval * self.settings.max_idle_cycles_replayed:
                at += math.floor(behind / interval) * interval
        outcomes = self._outcomes(job, changes, scenario, params, rng)
        # an export lacking a required target attribute is refused by the target (TARGET_ERRORS invalidValue)
        outcomes = [("failure", "invalidValue") if status == "success" and action in ("create", "update")
                    and obj.get("invalid") else (status, error)
                    for (obj, action), (status, error) in zip(changes, outcomes)]
        items = []
        clock = at
        for (obj, action), (status, error) in zip(changes, outcomes):
            seconds = self._duration(initial, scenario, params, rng)
            clock += seconds
            items.append({"at": clock, "ms": int(seconds * 1000), "obj": obj, "action": action, "status": status, "error": error})
        job.cycle = {
            "id": new_guid(rng),
            "initial": initial,
            "began": at,
            "items": items,
            "cursor": 0,
            "endsAt": max(clock, at + self.settings.minimum_cycle_seconds),
            "ctx": ctx,
            "failed": scenario in CONNECTION_FAILURES,
            "heldDeletes": held_deletes,
            "threshold": threshold,
            "entitled": len(scope),
            "exported": 0,
            "hardFailures": 0,
            "exports": sum(1 for _, action in changes if action not in ("other", *SKIPS)),
            "deletesApplied": any(action in ("disable", "delete") for _, action in changes),
        }
        self.schedule(job, items[0]["at"] if items else job.cycle["endsAt"])

    def _fail_cycle(self, job: Job, at: float, now: float, error: Exception) -> None:
        """End a cycle the emulator could not run (a bug or state it cannot use): the job records a
        failed execution and tries again one interval later, instead of being stranded (attempts a
        clock jump skipped over are not replayed)."""
        cycle = job.cycle or {}
        cycle_id = cycle.get("id") or str(uuid.uuid5(uuid.NAMESPACE_URL, f"failed:{job.id}:{job.cycle_count}"))
        detail = {
            "code": "InternalError",
            "message": f"The provisioning cycle could not run ({type(error).__name__}: {error}); it is retried at the next interval.",
            "tenantActionable": False,
        }
        job.last_execution = execution(cycle_id, cycle.get("began", at), at, {}, "Failed", detail)
        job.cycle = None
        job.cycle_count += 1
        job.successive_failures += 1
        job.next_cycle_at = None
        if job.running:
            interval = max(self.settings.incremental_interval_seconds, 1.0)
            job.next_cycle_at = at + interval * max(1, math.ceil((now - at) / interval))
            self.schedule(job, job.next_cycle_at)
        else:
            self.schedule(job, None)

    def _role_scope(self, job: Job, ctx: dict) -> dict[str, dict]:
        """A role-import cycle's source objects: the account's eligible roles. A role the SP already
        holds with the same value (imported before this job's links, or added by a person) is linked,
        not imported again: only a difference (or a disabled role) makes it an update."""
        cfg = ctx["roleImport"]
        scope = role_import.role_objects(ctx["awsAccount"], cfg)
        sp = self.directory.get_service_principal(job.sp_id) or {}
        for key, obj in scope.items():
            if key in job.links:
                continue
            existing = role_import.find_role(sp.get("appRoles") or [], key)
            if existing is not None:
                same = existing.get("isEnabled", True) and all(existing.get(k) == v for k, v in obj["attrs"].items())
                job.links[key] = {"type": obj["type"], "displayName": obj["displayName"], "arn": obj["arn"],
                                  "hash": obj["hash"] if same else "", "attrs": obj["attrs"], "targetId": existing["id"],
                                  "countKey": cfg["entryCountType"]}
        return scope

    def _steady(self, job: Job) -> bool:
        return job.watermark and job.quarantine is None and not job.escrows and job.code == "Active"

    def _duration(self, initial: bool, scenario: str, params: dict, rng: random.Random) -> float:
        s = self.settings
        if initial and scenario == "slowInitialCycle":
            return float(params.get("secondsPerObject", 60))
        if initial:
            return rng.uniform(s.initial_seconds_per_object_min, s.initial_seconds_per_object_max)
        return rng.uniform(s.incremental_seconds_per_object_min, s.incremental_seconds_per_object_max)

    def _outcomes(self, job: Job, changes: list, scenario: str, params: dict, rng: random.Random) -> list[tuple[str, str | None]]:
        """(status, target error kind) per change, from the scenario."""
        result: list[tuple[str, str | None]] = [("skipped" if a in ("other", *SKIPS) else "success", None) for _, a in changes]
        exports = [i for i, (_, action) in enumerate(changes) if action not in ("other", *SKIPS)]
        if scenario in CONNECTION_FAILURES:  # the connection itself fails: every entry the target sees fails
            # a disabled user's skip is decided from the source (scoping), before the target is called
            return [("skipped", None) if a in SKIPS else ("failure", CONNECTION_FAILURES[scenario]) for _, a in changes]
        if scenario not in ("escrowFailures", "neverSteady") or not exports:
            return result
        kind = "serverError" if scenario == "escrowFailures" else "throttled"
        default_rate = 0.6 if scenario == "escrowFailures" else 0.25
        rate = float(params.get("failureRate", default_rate))
        again = [i for i in exports if changes[i][0]["id"] in job.escrows]
        fresh = [i for i in exports if changes[i][0]["id"] not in job.escrows]
        count = min(len(fresh), max(1, math.ceil(rate * len(fresh)))) if fresh and rate > 0 else 0
        for i in again + rng.sample(fresh, count):
            result[i] = ("failure", kind)
        return result

    def _process_next(self, job: Job, at: float) -> None:
        cycle = job.cycle
        items = cycle["items"]
        if cycle["cursor"] < len(items):
            item = items[cycle["cursor"]]
            self._apply(job, cycle, item)
            cycle["cursor"] += 1
            if cycle["cursor"] < len(items):
                self.schedule(job, items[cycle["cursor"]]["at"])
                return
            if cycle["endsAt"] > at:
                self.schedule(job, cycle["endsAt"])
                return
        self._finish(job, max(at, cycle["endsAt"]))

    def _apply(self, job: Job, cycle: dict, item: dict) -> None:
        if cycle["ctx"].get("jobKind") == role_import.ROLE_IMPORT:
            self._apply_role(job, cycle, item)
            return
        obj, action, status = item["obj"], item["action"], item["status"]
        ctx = cycle["ctx"]
        rng = random.Random(f"{job.seed}:{cycle['id']}:{cycle['cursor']}")
        previous = job.links.get(obj["id"])
        error = None
        if status == "failure":
            code, http, text = TARGET_ERRORS[item["error"]]
            error = logrows.error_info(
                code,
                f"Failed to {action} {obj['type']} '{obj['displayName']}' in {ctx['app']}. The target answered HTTP {http} {text}.",
            )
            entry = job.escrows.setdefault(obj["id"], {"errorCode": code, "count": 0, "transient": item["error"] == "throttled"})
            entry["count"] += 1
            if item["error"] != "throttled":
                cycle["hardFailures"] += 1
        elif action in ("create", "update"):
            job.links[obj["id"]] = {
                "type": obj["type"],
                "displayName": obj["displayName"],
                "hash": obj["hash"],
                "attrs": obj["attrs"],
                "targetId": previous["targetId"] if previous else new_guid(rng),
            }
            job.escrows.pop(obj["id"], None)
            cycle["exported"] += 1
        elif action in ("disable", "delete"):
            job.links.pop(obj["id"], None)
            job.escrows.pop(obj["id"], None)
            cycle["exported"] += 1
        else:
            job.escrows.pop(obj["id"], None)
        target_type = ctx["userType"] if obj["type"] == "User" else ctx["groupType"]
        linked = job.links.get(obj["id"]) or previous
        target_id = linked["targetId"] if linked else ""
        self.logs.add(
            {
                "id": new_guid(rng),
                "activityDateTime": ts(item["at"]),
                "tenantId": ctx["tenantId"],
                "jobId": job.id,
                "cycleId": cycle["id"],
                "changeId": new_guid(rng),
                "provisioningAction": "create" if action in SKIPS else action,
                "durationInMilliseconds": item["ms"],
                "sourceSystem": dict(logrows.AAD_SYSTEM),
                "targetSystem": {
                    "id": ctx["targetSystemId"],
                    "displayName": ctx["app"],
                    "details": {"ApplicationId": ctx["appId"], "ServicePrincipalId": job.sp_id, "ServicePrincipalDisplayName": ctx["app"]},
                },
                "initiatedBy": dict(logrows.PROVISIONING_SERVICE),
                "servicePrincipal": {"id": job.sp_id, "displayName": ctx["app"]},
                "sourceIdentity": {"id": obj["id"], "displayName": obj["displayName"], "identityType": obj["type"], "details": {}},
                "targetIdentity": {
                    "id": target_id,
                    "displayName": obj["displayName"] if target_id else "",
                    "identityType": target_type,
                    "details": {},
                },
                "provisioningStatusInfo": {"status": status, "errorInformation": error},
                "provisioningSteps": (logrows.scoped_out_steps(obj["type"], obj["displayName"], obj.get("scopeReason", ""))
                                      if action == SKIP_SCOPE else
                                      logrows.steps_for(action, obj["type"], obj["displayName"], ctx["app"], status, action not in ("disable", "delete"))),
                "modifiedProperties": logrows.modified_properties(action, obj, previous),
            }
        )

    def _apply_role(self, job: Job, cycle: dict, item: dict) -> None:
        """One entry of a role-import cycle: write (or disable) the appRole on the SP, log the import."""
        obj, action, status = item["obj"], item["action"], item["status"]
        ctx = cycle["ctx"]
        cfg = ctx["roleImport"]
        rng = random.Random(f"{job.seed}:{cycle['id']}:{cycle['cursor']}")
        previous = job.links.get(obj["id"])
        error = None
        role_id = previous["targetId"] if previous else ""
        if status == "failure":
            code, http, text = TARGET_ERRORS[item["error"]]
            error = logrows.error_info(code, f"Failed to import {obj['type']} '{obj['displayName']}' from {ctx['app']}. "
                                             f"The target answered HTTP {http} {text}.")
            entry = job.escrows.setdefault(obj["id"], {"errorCode": code, "count": 0, "transient": item["error"] == "throttled"})
            entry["count"] += 1
            if item["error"] != "throttled":
                cycle["hardFailures"] += 1
        elif action in ("create", "update", "other"):
            sp = self.directory.get_service_principal(job.sp_id) or {}
            existing = role_import.find_role(sp.get("appRoles") or [], obj["id"])
            role_id = existing["id"] if existing else (role_id or new_guid(rng))
            wanted = role_import.app_role(role_id, obj["attrs"])
            if existing != wanted:  # idempotent: an imported role is never added twice
                self.directory.put_app_role(job.sp_id, wanted)
            job.links[obj["id"]] = {"type": obj["type"], "displayName": obj["displayName"], "arn": obj["arn"],
                                    "hash": obj["hash"], "attrs": obj["attrs"], "targetId": role_id,
                                    "countKey": cfg["entryCountType"]}
            job.escrows.pop(obj["id"], None)
            if action != "other":
                cycle["exported"] += 1
        else:  # disable: the role no longer qualifies (or left the account)
            sp = self.directory.get_service_principal(job.sp_id) or {}
            existing = role_import.find_role(sp.get("appRoles") or [], obj["id"])
            if existing is not None and existing.get("isEnabled", True):
                self.directory.put_app_role(job.sp_id, {**existing, "isEnabled": False})
            job.links.pop(obj["id"], None)
            job.escrows.pop(obj["id"], None)
            cycle["exported"] += 1
        app_system = {"id": ctx["targetSystemId"], "displayName": ctx["app"],
                      "details": {"ApplicationId": ctx["appId"], "ServicePrincipalId": job.sp_id,
                                  "ServicePrincipalDisplayName": ctx["app"]}}
        systems = (app_system, dict(logrows.AAD_SYSTEM))  # UNCONFIRMED direction: data (logDirection)
        if cfg["logDirection"] != "inbound":
            systems = systems[::-1]
        self.logs.add(role_import.log_row(
            row_id=new_guid(rng), change_id=new_guid(rng), at=ts(item["at"]), ms=item["ms"], job_id=job.id,
            cycle_id=cycle["id"], sp_id=job.sp_id, ctx=ctx, obj=obj, action=action, status=status, error=error,
            role_id=role_id, previous=previous, source_system=systems[0], target_system=systems[1],
            initiated_by=dict(logrows.PROVISIONING_SERVICE),
        ))

    def apply_single(self, job: Job, obj: dict, action: str, status: str, error_kind: str | None, ctx: dict, at: float) -> dict:
        """Provision one object now (provisionOnDemand); returns the log row it wrote."""
        rng = random.Random(f"{job.seed}:on-demand:{at}:{obj['id']}")
        cycle = {"id": new_guid(rng), "ctx": ctx, "cursor": 0, "hardFailures": 0, "exported": 0}
        item = {"at": at, "ms": int(rng.uniform(800, 2500)), "obj": obj, "action": action, "status": status, "error": error_kind}
        self._apply(job, cycle, item)
        return self.logs.last()

    def _finish(self, job: Job, at: float) -> None:
        cycle = job.cycle
        s = self.settings
        failed = cycle["failed"]
        hard = cycle["hardFailures"]
        exports = cycle["exports"]
        reason = None
        hard_escrows = sum(1 for entry in job.escrows.values() if not entry.get("transient"))
        if failed:
            reason = "EncounteredQuarantineException"
        elif hard and hard_escrows >= max(1, s.escrow_quarantine_min_failures) and hard / max(exports, 1) > s.escrow_quarantine_proportion:
            # DOC: evaluated only from escrowQuarantineMinFailures failures on (5,000); below it the
            # failures are only logged and the job goes on to steady state
            reason = "EncounteredEscrowProportionThreshold"
        elif cycle["heldDeletes"]:
            reason = "TooManyDeletes"
        state = "Failed" if failed else ("EntryLevelErrors" if job.escrows else "Succeeded")
        error = self._quarantine_error(reason, cycle) if reason else None
        counts = {
            "entitled": cycle["entitled"],
            "imported": cycle["entitled"],
            "exports": exports,
            "exported": cycle["exported"],
            "escrowed": len(job.escrows),
        }
        run = execution(cycle["id"], cycle["began"], at, counts, state, error)
        job.last_execution = run
        if state == "Succeeded":
            job.last_successful_execution = run
            if cycle["exported"]:
                job.last_successful_execution_with_exports = run
        by_type: dict[str, int] = {}
        for link in job.links.values():
            key = link.get("countKey") or f"{link['type']} to {link['type']}"
            by_type[key] = by_type.get(key, 0) + 1
        job.entry_counts = by_type
        if cycle["deletesApplied"]:
            job.force_deletes = False
        job.cycle = None
        job.cycle_count += 1
        job.successive_failures = job.successive_failures + 1 if failed else 0
        job.next_cycle_at = None
        if reason:
            if job.running:
                self._quarantine(job, reason, error, at)
            else:
                self.schedule(job, None)  # paused meanwhile: the next Start re-evaluates
            return
        job.watermark = True
        # entries that failed for good (escrowed below the quarantine threshold) do not hold back steady
        # state: a small job with half its users failing reaches it (DOC, quarantine article); entries
        # retried for a passing reason (throttling, neverSteady) do
        if not any(entry.get("transient") for entry in job.escrows.values()) and cycle["ctx"]["scenario"] != "neverSteady":
            job.steady_first = job.steady_first or at
            job.steady_last = at
        if not job.running:  # paused while the cycle ran: it completed, nothing more is scheduled
            self.schedule(job, None)
            return
        job.quarantine = None  # a successful cycle lifts a quarantine by itself (DOC)
        job.code = "Active"
        job.next_cycle_at = at + s.incremental_interval_seconds
        self.schedule(job, job.next_cycle_at)

    def _quarantine(self, job: Job, reason: str, error: dict, at: float) -> None:
        q = job.quarantine
        if q is None:
            q = {"seriesBegan": at, "seriesCount": 0}
        q.update({"currentBegan": at, "reason": reason, "error": error, "seriesCount": q["seriesCount"] + 1})
        q["nextAttempt"] = at + self.settings.quarantine_backoff(q["seriesCount"])
        job.quarantine = q
        job.code = "Quarantine"
        if at - q["seriesBegan"] >= self.settings.quarantine_disable_after_seconds:
            # DOC: quarantined for more than four weeks -> the job is disabled (stops running).
            job.disabled = True
            job.running = False
            job.schedule_state = "Disabled"
            job.interval = NEVER_INTERVAL
            self.schedule(job, None)
            return
        job.next_cycle_at = q["nextAttempt"]
        self.schedule(job, job.next_cycle_at)

    def _quarantine_error(self, reason: str, cycle: dict) -> dict:
        app = cycle["ctx"]["app"]
        if reason == "EncounteredQuarantineException" and cycle["ctx"].get("scenario") == "scimNonCompliant":
            # UNCONFIRMED: Graph's quarantineReason enum has no SCIM-compliance value; the credential
            # reason is the harder choice for a client (one reading only the reason would restart it),
            # the error code tells the two apart.
            return {
                "code": TARGET_ERRORS["notFound"][0],
                "message": f"An HTTP/404 Not Found response was returned rather than the expected HTTP/200 OK response "
                           f"from {app}. Check the tenant URL; if it is correct, the application is not SCIM-compliant "
                           "(RFC 7644 section 3.4.2).",
                "tenantActionable": True,
            }
        if reason == "EncounteredQuarantineException":
            return {
                "code": "SystemForCrossDomainIdentityManagementCredentialValidationUnavailable",
                "message": f"You appear to have entered invalid credentials for {app}. The target answered HTTP 401 Unauthorized. Update the credentials and restart the job.",
                "tenantActionable": True,
            }
        if reason == "EncounteredEscrowProportionThreshold":
            return {
                "code": "EscrowProportionThresholdExceeded",
                "message": f"{cycle['hardFailures']} of {cycle['exports']} exports to {app} failed in this cycle (more than {int(self.settings.escrow_quarantine_proportion * 100)}%).",
                "tenantActionable": True,
            }
        return {
            "code": "TooManyDeletes",
            "message": f"This cycle would delete or disable {cycle['heldDeletes']} accounts in {app}, more than the accidental deletion threshold of {cycle['threshold']}. Restart the job with resetScope ForceDeletes to allow them.",
            "tenantActionable": True,
        }
