"""``schema_rollout``: roll a schema profile out over many instances - canaries first, then waves,
stopping by itself on a regression.

Input: :class:`core.profile_contracts.RolloutInput`; with ``dryRun`` every selected instance is only
planned (validation and diff, per wave) and nothing is written. Waves: the canaries (if any), then the other
instances in waves of ``waveSize``. Per wave (each step over the wave's instances at most ``maxInFlight``
at a time):

1. each instance's job status is read (``get_job_status``: the last execution before the change);
2. the profile is applied (``apply_schema_profile``: PUT the whole schema, restart with Watermark,
   record the profile);
3. a durable timer waits ``pauseSeconds``; then each instance's job is read again until a cycle
   that began after the change has ended (at most ``maxChecks`` pauses);
4. what that cycle did is compared with the last cycle before the change (``summarize_cycle`` over
   each cycle's own begin/end times, the job's own clock): the objects that failed, and the objects
   it disabled or deleted or skipped as out of a scoping filter (a profile whose filter scopes
   everyone out fails nothing: it takes the accounts away).

In a canary wave, right after each canary's apply, ``provisionOnDemand`` of the canary's test user
(``canaryTestUsers`` of the request, else the subject recorded in the service principal's notes
under ``canary``; the ``fleet_instance_action`` step): its step-by-step result goes into the wave's
results, and a failed export is a regression at once.

A **regression**: the apply failed, the canary's test user failed on demand, the job is quarantined
or failed after the change, no cycle completed within ``maxChecks`` pauses, the cycle after the change
failed more objects than the one before, or it disabled, deleted or scoped out more than
``removalThreshold`` objects beyond the cycle before, or its provisioning logs could not be read. On a regression the rollout stops before the next wave (``stopped`` in the status
names the wave and why, per instance) and waits for the external event ``resume`` (the operator
accepts it; ``POST /api/rollouts/{id}/resume``); ``POST /api/rollouts/{id}/cancel`` terminates it.
Instances of later waves are never touched before that. The custom status holds every wave with
its per-instance results, so ``GET /api/rollouts/{id}`` shows progress; a crash resumes at the same
wave (Durable replays the history: applied instances are not applied again).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Generator

import azure.durable_functions as df

from core import names
from core.contracts import GetJobStatusInput, GetJobStatusOutput, failure
from core.fleet_contracts import FleetInstanceActionInput
from core.profile_contracts import (ApplySchemaProfileInput, CycleSummary, CycleSummaryOutput, PlanSchemaProfileInput,
                                    RolloutInput, SchemaPlanOutput, SummarizeCycleInput)
from core.times import iso
from core.workflow_options import WorkflowOptions
from orchestrators.activity_calls import call_step, chunks, failure_message, gather_settled
from orchestrators.blueprint import bp

RESUME_EVENT = "resume"
_BAD_STATES = {"Quarantined", "Failed", "Disabled"}


def plan_waves(instances: list[dict[str, Any]], canaries: list[str], wave_size: int) -> list[dict[str, Any]]:
    """``[{index, kind (canary|wave), instances: [key]}]``: canaries first, then waves of ``wave_size``."""
    keys = [str(i.get("key")) for i in instances]
    first = [k for k in canaries if k in keys]
    rest = [k for k in keys if k not in first]
    waves = [{"kind": "canary", "instances": first}] if first else []
    waves += [{"kind": "wave", "instances": chunk} for chunk in chunks(rest, max(1, wave_size))]
    return [{"index": n, **w} for n, w in enumerate(waves)]


def _summary(change: dict[str, Any]) -> str:
    """``<sourceObjectName>.<field>[.<target>]: <change>`` (a plan line small enough for every instance)."""
    target = f".{change['targetAttributeName']}" if change.get("targetAttributeName") else ""
    return f"{change.get('sourceObjectName')}.{change.get('field')}{target}: {change.get('change')}"


def _execution(result: dict[str, Any]) -> dict[str, Any]:
    status = GetJobStatusOutput.from_dict(result).status or {}
    return {"state": status.get("state"), "jobId": status.get("jobId"),
            "lastExecution": status.get("lastExecution") or None}


@bp.function_name(names.SCHEMA_ROLLOUT)
@bp.orchestration_trigger(context_name="context")
def schema_rollout(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    data = RolloutInput.from_dict(context.get_input() or {})
    options = WorkflowOptions.from_dict(data.options)
    sp_of = {str(i.get("key")): str(i.get("servicePrincipalId")) for i in data.instances}
    waves = plan_waves(data.instances, data.canaries, data.wave_size)
    report: dict[str, Any] = {"rolloutId": data.rollout_id, "profile": data.profile, "phase": "running",
                              "waves": [{**w, "status": "pending", "results": {}} for w in waves], "stopped": None}

    def show(current: dict[str, Any] | None = None) -> None:
        shown = current["index"] if current is not None else None
        # custom status is capped at 16 KB: waves as counts, per-instance results of the current wave only
        # (and every regression); the output holds every result
        context.set_custom_status({
            **{k: v for k, v in report.items() if k != "waves"},
            "waves": [{"index": w["index"], "kind": w["kind"], "status": w["status"], "instances": len(w["instances"]),
                       **({"results": w["results"]} if w["index"] == shown else {})} for w in report["waves"]]})

    if data.dry_run:  # the plan of every selected instance, in wave order; nothing is written
        for wave in report["waves"]:
            for key in wave["instances"]:
                planned = yield from call_step(context, names.PLAN_SCHEMA_PROFILE, PlanSchemaProfileInput(
                    service_principal_id=sp_of[key], profile=str(data.profile)), options)
                wave["results"][key] = ({"servicePrincipalId": sp_of[key], "changes": [_summary(c) for c in SchemaPlanOutput.from_dict(planned).changes]}
                                        if planned.get("ok") else {"servicePrincipalId": sp_of[key], "error": planned.get("error")})
            wave["status"] = "planned"
        report["phase"] = "planned"
        show()
        return report

    bound = max(1, data.max_in_flight)
    for wave in report["waves"]:
        wave["status"] = "applying"
        show(wave)
        keys = list(wave["instances"])
        reads = yield from _fan_out(context, options, names.GET_JOB_STATUS, [
            GetJobStatusInput(service_principal_id=sp_of[k], job_id=None, started_at=None) for k in keys], bound)
        before = {k: (_execution(r) if r.get("ok") else {}) for k, r in zip(keys, reads)}
        applied = yield from _fan_out(context, options, names.APPLY_SCHEMA_PROFILE, [
            ApplySchemaProfileInput(service_principal_id=sp_of[k], profile=str(data.profile)) for k in keys], bound)
        for key, done in zip(keys, applied):
            if done.get("ok"):
                plan = SchemaPlanOutput.from_dict(done)
                wave["results"][key] = {"servicePrincipalId": sp_of[key], "applied": plan.applied,
                                        "changes": len(plan.changes), "regression": None}
            else:
                wave["results"][key] = {"servicePrincipalId": sp_of[key], "applied": False,
                                        "regression": f"apply failed: {(done.get('error') or {}).get('message')}"}
        if wave["kind"] == "canary":
            for key in keys:
                if wave["results"][key]["regression"] is None:
                    finding = yield from _on_demand(context, options, key, sp_of[key], data.canary_test_users.get(key))
                    wave["results"][key].update(finding)
        wave["status"] = "watching"
        show(wave)
        pending = [k for k in keys if wave["results"][k]["regression"] is None]
        for _ in range(max(1, data.max_checks)):
            if not pending:
                break
            yield context.create_timer(context.current_utc_datetime + dt.timedelta(seconds=max(1, data.pause_seconds)))
            verdicts = yield from _check(context, options, [(sp_of[k], before[k]) for k in pending],
                                         data.removal_threshold, bound)
            still: list[str] = []
            for key, verdict in zip(pending, verdicts):
                if verdict is None:
                    still.append(key)
                else:
                    wave["results"][key].update(verdict)
            pending = still
        for key in pending:
            wave["results"][key]["regression"] = f"no provisioning cycle ended within {data.max_checks} pauses of " \
                                                 f"{data.pause_seconds} s after the change"
        regressed = {k: r["regression"] for k, r in wave["results"].items() if r.get("regression")}
        wave["status"] = "regressed" if regressed else "done"
        if regressed:
            report["phase"] = "stopped"
            report["stopped"] = {"wave": wave["index"], "kind": wave["kind"], "at": iso(context.current_utc_datetime),
                                 "reasons": regressed}
            show(wave)
            yield context.wait_for_external_event(RESUME_EVENT)
            report["phase"] = "running"
            report["stopped"] = {**report["stopped"], "resumedAt": iso(context.current_utc_datetime)}
        show()
    report["phase"] = "completed"
    show()
    return report


def _on_demand(context: df.DurableOrchestrationContext, options: WorkflowOptions, key: str, sp_id: str,
               subject: Any) -> Generator[Any, Any, dict[str, Any]]:
    """provisionOnDemand of a canary's test user after its apply (``onDemand`` + a regression when it failed)."""
    if not isinstance(subject, dict) or not subject.get("objectId"):
        return {"onDemand": {"skipped": "no test user: none named in canaryTestUsers, none recorded in the "
                                        "service principal's notes (canary)"}}
    found = yield from call_step(context, names.FLEET_INSTANCE_ACTION, FleetInstanceActionInput(
        action="provision-on-demand", instance_key=key, service_principal_id=sp_id,
        params={"subject": {"objectId": str(subject["objectId"]),
                            "objectTypeName": str(subject.get("objectTypeName") or "User")}}), options)
    if not found.get("ok"):
        message = (found.get("error") or {}).get("message")
        return {"onDemand": {"subject": subject, "outcome": "error", "detail": message},
                "regression": f"provisionOnDemand of test user {subject['objectId']} could not run: {message}"}
    view = {"subject": subject, **{k: found.get(k) for k in ("outcome", "detail", "status", "errorCode", "steps")}}
    finding: dict[str, Any] = {"onDemand": view}
    if found.get("outcome") in ("failed", "refused"):
        failed = [s.get("name") for s in found.get("steps") or [] if str(s.get("status")).lower() == "failure"]
        finding["regression"] = (f"provisionOnDemand of test user {subject['objectId']} {found.get('outcome')}"
                                 f"{' at ' + ', '.join(map(str, failed)) if failed else ''}: {found.get('detail')}")
    return finding


def _fan_out(context: df.DurableOrchestrationContext, options: WorkflowOptions, activity: str,
            payloads: list[Any], bound: int) -> Generator[Any, Any, list[dict[str, Any]]]:
    """One result per payload (in order), at most ``bound`` activities at a time; a throttled one is
    called again through :func:`call_step` (durable timers), one whose retries ran out is a failure."""
    policy = options.retry_for(activity)
    retry = df.RetryOptions(policy.first_retry_interval_ms, policy.max_attempts)
    results: list[dict[str, Any]] = []
    for group in chunks([p.to_dict() for p in payloads], bound):
        settled = yield from gather_settled(context, [context.call_activity_with_retry(activity, retry, p) for p in group])
        for payload, (ok, value) in zip(group, settled):
            if not ok:
                value = failure(activity, "TransientErrorsExhausted", failure_message(value), kind="transient")
            elif not isinstance(value, dict):
                value = failure(activity, "InvalidActivityResult", f"{activity} returned {type(value).__name__}")
            elif not value.get("ok") and (value.get("error") or {}).get("kind") == "throttled":
                value = yield from call_step(context, activity, payload, options)
            results.append(value)
    return results


def _check(context: df.DurableOrchestrationContext, options: WorkflowOptions, watched: list[tuple[str, dict[str, Any]]],
           removal_threshold: int, bound: int) -> Generator[Any, Any, list[dict[str, Any] | None]]:
    """The verdict per ``(servicePrincipalId, execution before)`` once a cycle after the change has ended (None: not yet)."""
    reads = yield from _fan_out(context, options, names.GET_JOB_STATUS, [
        GetJobStatusInput(service_principal_id=sp_id, job_id=None, started_at=None) for sp_id, _ in watched], bound)
    verdicts: list[dict[str, Any] | None] = [None] * len(watched)
    ended: list[tuple[int, dict[str, Any], dict[str, Any], dict[str, Any]]] = []  # (index, after, prior, last)
    for n, ((sp_id, before), read) in enumerate(zip(watched, reads)):
        if not read.get("ok"):
            continue
        after = _execution(read)
        if after["state"] in _BAD_STATES:
            verdicts[n] = {"regression": f"the job is {after['state']} after the change", "after": after["state"]}
            continue
        last, prior = after.get("lastExecution") or {}, before.get("lastExecution") or {}
        if not last.get("timeEnded") or (prior.get("timeEnded") and not _newer(last, prior)):
            continue  # the cycle after the change has not ended yet
        ended.append((n, after, prior, last))
    wanted = [(n, [e for e in (prior, last) if e.get("timeBegan")], str(after["jobId"]))
              for n, after, prior, last in ended if after.get("jobId")]
    # one log read per instance covers the cycle before and the cycle after (the reporting API's 5 requests per 10 s)
    summaries = yield from _fan_out(context, options, names.SUMMARIZE_CYCLE, [
        SummarizeCycleInput(service_principal_id=watched[n][0], job_id=job_id, windows=[
            {"since": str(e["timeBegan"]), "until": e.get("timeEnded")} for e in executions])
        for n, executions, job_id in wanted], bound)
    found = {n: (executions, summary) for (n, executions, _), summary in zip(wanted, summaries)}
    for n, after, prior, last in ended:
        was, now, complete = _cycles(found.get(n), prior, last)
        verdict = _compare(was, now, last, removal_threshold, complete)
        read = (found.get(n) or ([], {"ok": True}))[1]
        if not read.get("ok"):  # no evidence is not a healthy cycle: the canary must not pass on it
            message = str((read.get("error") or {}).get("message") or "unknown error")[:300]
            verdict["regression"] = "; ".join(r for r in (verdict.get("regression"),
                                                          f"the provisioning logs of the cycles could not be read: {message}") if r)
        verdicts[n] = verdict
    return verdicts


def _newer(last: dict[str, Any], prior: dict[str, Any]) -> bool:
    """``last`` is another run than ``prior``, begun after it ended: a different ``activityIdentifier``
    (https://learn.microsoft.com/graph/api/resources/synchronization-synchronizationtaskexecution: the
    run's id; two short runs can share their second-resolution times), else a later ``timeBegan``."""
    ids = (last.get("activityIdentifier"), prior.get("activityIdentifier"))
    if all(ids):
        return ids[0] != ids[1] and str(last.get("timeBegan")) >= str(prior.get("timeEnded"))
    return str(last.get("timeBegan")) > str(prior.get("timeEnded"))


def _cycles(found: tuple[list[dict[str, Any]], dict[str, Any]] | None, prior: dict[str, Any],
            last: dict[str, Any]) -> tuple[CycleSummary, CycleSummary, bool]:
    """The summaries of the cycle before and the cycle after (an empty one for a cycle not read: none
    before the change, or no job id) and whether the read was complete (False: failed or cut short)."""
    if found is None:
        return CycleSummary(), CycleSummary(), True
    executions, result = found
    if not result.get("ok"):
        return CycleSummary(), CycleSummary(), False
    read = CycleSummaryOutput.from_dict(result)
    by_kind = dict(zip(["before", "after"] if len(executions) == 2 else ["after"], read.cycles))
    if last not in executions:
        by_kind = {"before": by_kind["after"]} if "after" in by_kind and prior in executions else {}
    return by_kind.get("before", CycleSummary()), by_kind.get("after", CycleSummary()), read.complete


def _compare(was: CycleSummary, now: CycleSummary, last: dict[str, Any], removal_threshold: int,
             complete: bool = True) -> dict[str, Any]:
    """The verdict of one instance: the cycle after the change against the cycle before."""
    removed_before = was.removed_objects + was.scoped_out_objects
    removed_after = now.removed_objects + now.scoped_out_objects
    verdict: dict[str, Any] = {"failedBefore": was.failed_objects, "failedAfter": now.failed_objects,
                               "removedBefore": was.removed_objects, "removedAfter": now.removed_objects,
                               "scopedOutBefore": was.scoped_out_objects, "scopedOutAfter": now.scoped_out_objects,
                               "cycleState": last.get("state")}
    if not complete:
        verdict["logsComplete"] = False  # the page bound cut a read short: the counts are lower bounds
    reasons = []
    if now.failed_objects > was.failed_objects:
        reasons.append(f"{now.failed_objects} objects failed in the cycle after the change, {was.failed_objects} before")
    if removed_after - removed_before > removal_threshold:
        reasons.append(f"{removed_after} objects disabled, deleted or skipped as out of scope in the cycle after the "
                       f"change ({now.removed_objects} removed, {now.scoped_out_objects} scoped out), {removed_before} "
                       f"before (removalThreshold {removal_threshold})")
    if reasons:
        verdict["regression"] = "; ".join(reasons)
    return verdict
