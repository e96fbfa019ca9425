"""``ProvisioningService``: the synchronization API's behaviour behind the emulator's routes.

The server part of the emulator routes ``/{v1.0|beta}/servicePrincipals/{id}/synchronization/...``
and ``/auditLogs/provisioning`` to these methods (see emulator/provisioning/README.md); every
method takes and returns JSON-ready dicts and raises :class:`GraphError` with the status and code
Graph gives for each error (its error envelope: https://learn.microsoft.com/graph/errors). Time comes from the
shared :class:`Clock`; every public call first runs the simulation up to ``clock.now()``.
"""

from __future__ import annotations

import copy
import random
import threading
import uuid

from emulator.clock import Clock
from emulator.errors import GraphError, not_found
from emulator.provisioning import catalog as cat
from emulator.provisioning import expressions
from emulator.provisioning import mapping as schema_mapping
from emulator.provisioning import on_demand
from emulator.provisioning import role_import
from emulator.provisioning import secrets as sec
from emulator.provisioning.catalog import target_types
from emulator.provisioning.directory_view import DirectoryView
from emulator.provisioning.engine import Engine, new_guid
from emulator.provisioning.jobs import Job, delete_threshold, render_job, reset_scopes
from emulator.provisioning.logs import LogStore, render
from emulator.provisioning.scenarios import load_targets, resolve, target_identity
from emulator.provisioning.settings import EngineSettings
from emulator.rng import rng_from_state, rng_state

STATE_VERSION = 1


def _bad(message: str) -> GraphError:
    return GraphError(400, "BadRequest", message)


def _snake_name(key: str) -> str:
    return "".join("_" + ch.lower() if ch.isupper() else ch for ch in key).lstrip("_")


def _objects(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(x, dict) for x in value)


def _check_schema(body: dict) -> None:
    """400 for a synchronizationSchema the simulation could not use (checked before it is stored).

    The parts the engine reads must have their documented types: rules and their ``id``, object
    mappings with their source and target object names, attribute mappings, directories' objects.
    """
    for name in ("directories", "synchronizationRules"):
        if not _objects(body.get(name)):
            raise _bad(f"'{name}' is required and must be an array of objects.")
    for d, directory in enumerate(body["directories"]):
        if "objects" in directory and not _objects(directory["objects"]):
            raise _bad(f"directories[{d}].objects must be an array of objects.")
    for r, rule in enumerate(body["synchronizationRules"]):
        if not isinstance(rule.get("id", ""), str):
            raise _bad(f"synchronizationRules[{r}].id must be a string.")
        mappings = rule.get("objectMappings", [])
        if not _objects(mappings):
            raise _bad(f"synchronizationRules[{r}].objectMappings must be an array of objects.")
        for m, mapping in enumerate(mappings):
            where = f"synchronizationRules[{r}].objectMappings[{m}]"
            for key in ("sourceObjectName", "targetObjectName", "name"):
                if not isinstance(mapping.get(key), (str, type(None))):
                    raise _bad(f"{where}.{key} must be a string.")
            if "attributeMappings" in mapping and not _objects(mapping["attributeMappings"]):
                raise _bad(f"{where}.attributeMappings must be an array of objects.")
    # the mappings themselves: expressions parse, attributes exist, scoping filters are usable (mapping.py)
    problem = schema_mapping.check(body)
    if problem:
        raise _bad(f"Invalid synchronization schema: {problem}")


class ProvisioningService:
    """Templates, jobs, secrets, schema, on-demand provisioning and logs of every service principal."""

    def __init__(
        self,
        clock: Clock,
        rng: random.Random,
        directory: DirectoryView,
        catalog: dict,
        settings: dict | None = None,
        targets: dict | None = None,
    ) -> None:
        self.clock = clock
        self.rng = rng
        self.directory = directory
        self.catalog = catalog
        self.settings = EngineSettings.from_dict(settings)
        self._start_settings = dict(settings or {})  # the start values (--settings), which win on load_state
        self.targets = targets if targets is not None else load_targets(self.settings.extra.get("targetsPath"))
        self.logs = LogStore(self.settings.log_capacity)
        self.engine = Engine(self.settings, directory, self.logs, self._context)
        self._sps: dict[str, dict] = {}  # sp id -> {"templateId", "secrets", "jobs": [job ids in creation order]}
        self._lock = threading.RLock()

    # ----- hooks from the directory side -----------------------------------------------
    def on_instantiate(self, template_id: str, sp_id: str) -> None:
        """Register a service principal created from an application template."""
        with self._lock:
            self._sps.setdefault(sp_id, {"templateId": template_id, "secrets": {}, "jobs": []})

    def on_service_principal_deleted(self, sp_id: str) -> None:
        """Forget the SP's jobs, secrets and target (its log rows stay, as audit logs do)."""
        with self._lock:
            record = self._sps.pop(sp_id, None)
            for job_id in (record or {}).get("jobs", []):
                job = self.engine.jobs.pop(job_id, None)
                if job is not None:
                    self.engine.schedule(job, None)

    # ----- templates ------------------------------------------------------------------
    def list_templates(self, sp_id: str) -> list[dict]:
        """GET .../synchronization/templates (empty for an SP that cannot provision)."""
        with self._lock:
            self._advance()
            record, sp = self._sp(sp_id)
            return [cat.public_sync_template(t, sp.get("appId", "")) for t in self._sync_templates(record)]

    def get_template(self, sp_id: str, template_id: str) -> dict:
        """GET .../synchronization/templates/{templateId}."""
        for template in self.list_templates(sp_id):
            if template["id"] == template_id:
                return template
        raise not_found(template_id)

    # ----- jobs -----------------------------------------------------------------------
    def list_jobs(self, sp_id: str) -> list[dict]:
        """GET .../synchronization/jobs."""
        with self._lock:
            self._advance()
            record, _ = self._sp(sp_id)
            now = self._now()
            return [copy.deepcopy(render_job(self.engine.jobs[j], now)) for j in record["jobs"] if j in self.engine.jobs]

    def create_job(self, sp_id: str, body: dict) -> dict:
        """POST .../synchronization/jobs ``{"templateId"}`` -> the new job (NotConfigured, Disabled)."""
        with self._lock:
            self._advance()
            record, sp = self._sp(sp_id)
            if not isinstance(body, dict) or not isinstance(body.get("templateId"), str) or not body["templateId"].strip():
                raise _bad("The request body must be a JSON object with a non-empty string 'templateId'.")
            sync = self._find_sync(record, body["templateId"])
            if sync is None:
                available = ", ".join(t["id"] for t in self._sync_templates(record)) or "none"
                raise _bad(f"The synchronization template '{body['templateId']}' is not available for this application (available: {available}).")
            existing = [j for j in record["jobs"] if j in self.engine.jobs and self.engine.jobs[j].template_id == sync["id"]]
            if existing and self.settings.duplicate_job_status == 409:
                # UNCONFIRMED (the create-job page documents no limit): the real service may well create a
                # second job (the default).
                raise GraphError(409, "Conflict", f"A synchronization job for template '{sync['id']}' already exists "
                                 f"on this service principal: {existing[0]}.")
            tenant = self._tenant(sp).replace("-", "")
            job_id = f"{sync['id']}.{tenant}.{new_guid(self.rng)}"
            while job_id in self.engine.jobs:  # one id, one job (the generator state is also persisted)
                job_id = f"{sync['id']}.{tenant}.{new_guid(self.rng)}"
            job = Job(id=job_id, template_id=sync["id"], sp_id=sp_id, seed=self.rng.getrandbits(63))
            self.engine.jobs[job.id] = job
            record["jobs"].append(job.id)
            return copy.deepcopy(render_job(job, self._now()))

    def get_job(self, sp_id: str, job_id: str) -> dict:
        """GET .../synchronization/jobs/{jobId}."""
        with self._lock:
            self._advance()
            return copy.deepcopy(render_job(self._job(sp_id, job_id), self._now()))

    def delete_job(self, sp_id: str, job_id: str) -> None:
        """DELETE .../jobs/{jobId}: job state goes, the SP's secrets and the target's accounts stay (DOC)."""
        with self._lock:
            self._advance()
            job = self._job(sp_id, job_id)
            self.engine.schedule(job, None)
            del self.engine.jobs[job.id]
            self._sps[sp_id]["jobs"].remove(job.id)

    def start_job(self, sp_id: str, job_id: str) -> None:
        """POST .../start: NotConfigured/Paused/Quarantine -> running; a running job is left alone."""
        with self._lock:
            self._advance()
            job = self._job(sp_id, job_id)
            if job.running and job.code in ("NotRun", "Active"):
                return  # the docs warn against repeated Start; the service just keeps running
            self._require_credentials(job)
            self.engine.start(job, self._now())

    def pause_job(self, sp_id: str, job_id: str) -> None:
        """POST .../pause: state kept; the cycle in flight completes."""
        with self._lock:
            self._advance()
            self.engine.pause(self._job(sp_id, job_id))

    def restart_job(self, sp_id: str, job_id: str, body: dict | None) -> None:
        """POST .../restart ``{"criteria": {"resetScope": "..."}}``: clear the named state, then run."""
        with self._lock:
            self._advance()
            job = self._job(sp_id, job_id)
            scopes = reset_scopes(body)
            self._require_credentials(job)
            if scopes & {"Full", "Watermark"}:
                job.watermark = False
            if scopes & {"Full", "Escrows"}:
                job.escrows.clear()
            if scopes & {"Full", "ConnectorDataStore"}:
                job.links.clear()
                job.watermark = False
            if scopes & {"Full", "ForceDeletes"}:
                job.force_deletes = True
            self.engine.abort_cycle(job)
            lifts = bool(scopes & {"Full", "QuarantineState", "None"}) or self.settings.restart_lifts_quarantine == "always"
            if job.quarantine is not None and not lifts and not job.disabled:
                # resetScope without QuarantineState: the named state is cleared, the job stays quarantined
                # and its next attempt (quarantine.nextAttempt) runs with it (setting restartLiftsQuarantine)
                job.running = True
                job.next_cycle_at = max(job.quarantine["nextAttempt"], self._now())
                self.engine.schedule(job, job.next_cycle_at)
                return
            self.engine.start(job, self._now())  # also lifts the quarantine (QuarantineState / start semantics)

    # ----- credentials ----------------------------------------------------------------
    def validate_credentials(self, sp_id: str, job_id: str | None, body: dict | None) -> None:
        """POST .../jobs/{jobId}/validateCredentials or .../jobs/validateCredentials: None = 204."""
        with self._lock:
            self._advance()
            record, _ = self._sp(sp_id)
            body = body if body is not None else {}
            if not isinstance(body, dict):
                raise _bad("The request body must be a JSON object.")
            if job_id is not None:
                sync = self._find_sync(record, self._job(sp_id, job_id).template_id)
            else:
                template_id = body.get("templateId")
                if not isinstance(template_id, str) or not template_id:
                    raise _bad("'templateId' is required when validating credentials before a job exists.")
                sync = self._find_sync(record, template_id)
                if sync is None:
                    raise _bad(f"The synchronization template '{template_id}' is not available for this application.")
            if body.get("useSavedCredentials") is True:
                values = dict(record["secrets"])
            else:
                values = dict(sec.parse_pairs(body, self.settings.secret_key_error_status, ("credentials",)))
            missing = [c["key"] for c in sync.get("credentials", []) if c.get("required") and not values.get(c["key"])]
            if missing:
                raise GraphError(400, self.settings.validate_error_code, f"Missing required credentials: {', '.join(missing)}.")
            address, token = target_identity(sync, values)
            scenario = resolve(self.targets, address, token, sync["id"])
            if not scenario.accepts_credentials:
                raise GraphError(
                    400,
                    self.settings.validate_error_code,
                    "You appear to have entered invalid credentials. Please confirm you are using the correct "
                    "information for an administrative account. The target answered HTTP 401 Unauthorized.",
                )

    def put_secrets(self, sp_id: str, body: dict) -> None:
        """PUT .../synchronization/secrets ``{"value": [{key, value}]}`` (stored on the SP)."""
        with self._lock:
            self._advance()
            record, _ = self._sp(sp_id)
            pairs = sec.parse_pairs(body, self.settings.secret_key_error_status)
            record["secrets"] = sec.apply_put(record["secrets"], pairs, self.settings.secrets_put_mode)

    def get_secrets(self, sp_id: str) -> dict:
        """GET .../synchronization/secrets: keys with sensitive values masked as ``*``."""
        with self._lock:
            self._advance()
            record, _ = self._sp(sp_id)
            return sec.masked(record["secrets"])

    # ----- schema and on-demand ---------------------------------------------------------
    def get_schema(self, sp_id: str, job_id: str) -> dict:
        """GET .../jobs/{jobId}/schema."""
        with self._lock:
            self._advance()
            job = self._job(sp_id, job_id)
            return {"id": job.id, **copy.deepcopy(self._schema(job))}

    def put_schema(self, sp_id: str, job_id: str, body: dict) -> None:
        """PUT .../jobs/{jobId}/schema: replace it; a running job starts a new initial cycle (DOC)."""
        with self._lock:
            self._advance()
            job = self._job(sp_id, job_id)
            if not isinstance(body, dict):
                raise _bad("The request body must be a synchronizationSchema object.")
            _check_schema(body)
            job.schema = {
                "version": body.get("version") or self._schema(job).get("version"),
                "directories": copy.deepcopy(body["directories"]),
                "synchronizationRules": copy.deepcopy(body["synchronizationRules"]),
            }
            job.watermark = False
            if job.running and job.cycle is None and job.quarantine is None:
                job.code = "NotRun"
                self.engine.start(job, self._now())

    def parse_expression(self, sp_id: str, job_id: str | None, template_id: str | None, body: dict) -> dict:
        """POST .../schema/parseExpression -> parseExpressionResponse
        (https://learn.microsoft.com/graph/api/synchronization-synchronizationschema-parseexpression).

        A request without ``expression`` is a 400; an expression that does not parse is a 200 with
        ``parsingSucceeded`` false and ``error`` set (the response resource carries both,
        https://learn.microsoft.com/graph/api/resources/synchronization-parseexpressionresponse);
        with ``testInputObject`` the expression is evaluated against its ``properties``.
        """
        with self._lock:
            self._advance()
            if job_id is not None:
                self._job(sp_id, job_id)
            else:
                record, _ = self._sp(sp_id)
                if self._find_sync(record, template_id or "") is None:
                    raise not_found(template_id or "")
            if not isinstance(body, dict) or not isinstance(body.get("expression"), str):
                raise _bad("'expression' is required and must be a string.")
            answer: dict = {"error": None, "evaluationSucceeded": False, "evaluationResult": None,
                            "parsedExpression": None, "parsingSucceeded": False}
            try:
                node = expressions.parse(body["expression"])
            except expressions.ExpressionError as error:
                answer["error"] = {"code": "InvalidExpression", "message": str(error), "details": [], "target": "expression"}
                return answer
            answer["parsingSucceeded"] = True
            answer["parsedExpression"] = expressions.to_source(node)
            test = body.get("testInputObject")
            if isinstance(test, dict):
                props = {str(p.get("key")): (None if p.get("value") is None else str(p.get("value")))
                         for p in test.get("properties") or [] if isinstance(p, dict)}
                value = expressions.evaluate(node, props)
                answer["evaluationSucceeded"] = True
                answer["evaluationResult"] = [] if value is None else [value]
            return answer

    def provision_on_demand(self, sp_id: str, job_id: str, body: dict) -> dict:
        """POST .../provisionOnDemand -> 200 stringKeyStringValuePair (one subject: shape 1; several: shape 2)."""
        with self._lock:
            self._advance()
            job = self._job(sp_id, job_id)
            if role_import.is_role_import(self._find_sync(self._sps[sp_id], job.template_id)):
                # UNCONFIRMED what the real service answers; a role-import job provisions no users (DOC)
                raise _bad("This job imports roles from the application into the service principal's appRoles; "
                           "it does not provision users or groups, so there is nothing to provision on demand.")
            subjects = on_demand.parse_subjects(body, self._schema(job), self.directory)
            self._require_credentials(job)
            ctx = self._context(job)
            now = self._now()
            return on_demand.response([on_demand.provision_one(self.engine, self.directory, job, ctx, obj, now) for obj in subjects])

    # ----- logs, time, persistence ------------------------------------------------------
    def provisioning_logs(self, api_version: str) -> list[dict]:
        """Every kept provisioningObjectSummary row, newest first, in the version's shape."""
        return self.provisioning_log_snapshot(api_version)[0]

    def provisioning_log_snapshot(self, api_version: str) -> tuple[list[dict], int]:
        """(every kept row newest first, rows ever written): the count lets paging hold a snapshot."""
        with self._lock:
            self._advance()
            version = "beta" if api_version == "beta" else "v1.0"
            return [render(row, version) for row in self.logs.rows()], self.logs.added

    def update_settings(self, changes: dict) -> dict:
        """Change knobs at runtime (``PATCH /_emulator/settings``); returns all of them.

        Raises ValueError for an unknown key or a value of the wrong type. Timings apply to the
        cycles scheduled from now on.
        """
        with self._lock:
            self._advance()
            self.settings = self.settings.with_changes(changes)
            self.engine.settings = self.settings
            return self.settings.public()

    def advance(self) -> None:
        """Run the simulation up to ``clock.now()`` (the server calls this before every request)."""
        with self._lock:
            self._advance()

    def to_state(self) -> dict:
        """Everything needed to continue after a restart (JSON-serialisable)."""
        with self._lock:
            self._advance()
            return {
                "version": STATE_VERSION,
                "servicePrincipals": copy.deepcopy(self._sps),
                "jobs": [job.to_state() for job in self.engine.jobs.values()],
                "logs": self.logs.to_state(),
                "logsAdded": self.logs.added,
                # Knobs changed at runtime (PATCH /_emulator/settings) survive a restart.
                "settings": {k: v for k, v in self.settings.public().items() if k != "logCapacity"},
                # Job ids and seeds continue from here after a restart instead of being drawn again.
                "rng": rng_state(self.rng),
            }

    def load_state(self, state: dict) -> None:
        """Replace the current state with a saved one (pending events are rebuilt from it)."""
        with self._lock:
            if state.get("version") != STATE_VERSION:
                raise ValueError(f"unsupported provisioning state version {state.get('version')!r}")
            self._sps = copy.deepcopy(state.get("servicePrincipals", {}))
            self.engine.jobs = {data["id"]: Job.from_state(copy.deepcopy(data)) for data in state.get("jobs", [])}
            self.logs.load_state(copy.deepcopy(state.get("logs", [])), state.get("logsAdded"))
            if state.get("rng") is not None:
                self.rng.setstate(rng_from_state(state["rng"]))
            else:  # saved before the generator was persisted: fresh draws rather than repeats
                self.rng.seed(uuid.uuid4().int)
            saved = state.get("settings")
            if isinstance(saved, dict):
                self._restore_settings(saved)
            self.engine.rebuild_heap()

    def _restore_settings(self, saved: dict) -> None:
        """Saved runtime knobs, except those this start's settings name (like a --faults file, they win)."""
        runtime = set(self.settings.public()) - {"logCapacity"}
        given = {_snake_name(k) for k in self._start_settings}
        for key, value in saved.items():
            if key in runtime and _snake_name(key) not in given:
                try:
                    self.settings = self.settings.with_changes({key: value})
                except ValueError:  # a value this version no longer accepts: the start value stays
                    continue
        self.engine.settings = self.settings

    # ----- helpers --------------------------------------------------------------------
    def _advance(self) -> None:
        self.engine.advance(self._now())

    def _now(self) -> float:
        return self.clock.now().timestamp()

    def _sp(self, sp_id: str) -> tuple[dict, dict]:
        sp = self.directory.get_service_principal(sp_id)
        if sp is None:
            raise not_found(sp_id)
        record = self._sps.get(sp_id)
        if record is None:
            record = self._sps[sp_id] = {"templateId": sp.get("applicationTemplateId"), "secrets": {}, "jobs": []}
        return record, sp

    def _job(self, sp_id: str, job_id: str) -> Job:
        record, _ = self._sp(sp_id)
        job = self.engine.jobs.get(job_id)
        if job is None or job.id not in record["jobs"]:
            raise not_found(job_id)
        return job

    def _sync_templates(self, record: dict) -> list[dict]:
        return cat.sync_templates(self.catalog, record.get("templateId"))

    def _find_sync(self, record: dict, template_id: str) -> dict | None:
        return next((t for t in self._sync_templates(record) if t["id"] == template_id), None)

    def _schema(self, job: Job) -> dict:
        if job.schema is not None:
            return job.schema
        sync = self._find_sync(self._sps[job.sp_id], job.template_id) or {}
        return sync.get("schema") or {"directories": [], "synchronizationRules": []}

    def _tenant(self, sp: dict) -> str:
        return sp.get("appOwnerOrganizationId") or self.settings.extra.get("tenantId") or "00000000-0000-0000-0000-000000000000"

    def _require_credentials(self, job: Job) -> None:
        record = self._sps[job.sp_id]
        sync = self._find_sync(record, job.template_id) or {}
        missing = [c["key"] for c in sync.get("credentials", []) if c.get("required") and not record["secrets"].get(c["key"])]
        if missing and self.settings.start_without_secrets == "error":
            # UNCONFIRMED: what the real service answers; a 400 naming the missing keys is the choice (setting).
            raise _bad(
                f"The job cannot run without credentials: missing {', '.join(missing)}. "
                "Save them with PUT /servicePrincipals/{id}/synchronization/secrets first."
            )

    def _context(self, job: Job) -> dict:
        """Facts a cycle needs, read at its start (scenario from the saved credentials)."""
        record = self._sps[job.sp_id]
        sp = self.directory.get_service_principal(job.sp_id) or {}
        sync = self._find_sync(record, job.template_id) or {}
        creds = record["secrets"]
        address, token = target_identity(sync, creds)
        scenario = resolve(self.targets, address, token, job.template_id)
        sync_all = creds.get("SyncAll", str(self.settings.default_sync_all)).strip().lower() == "true"
        user_type, group_type = target_types(self._schema(job))
        roles: dict = {}
        if role_import.is_role_import(sync):  # the job imports the account's roles (catalog jobKind)
            roles = {"jobKind": role_import.ROLE_IMPORT, "roleImport": role_import.config(sync),
                     "awsAccount": role_import.account_for(self.targets, address, job.template_id)}
        return {
            **roles,
            "scenario": scenario.name,
            "params": dict(scenario.params),
            "app": sp.get("displayName") or "application",
            "appId": sp.get("appId", ""),
            "tenantId": self._tenant(sp),
            "syncAll": sync_all,
            "deleteThreshold": delete_threshold(job, creds),
            "userType": user_type,
            "groupType": group_type,
            "mappings": schema_mapping.compile_schema(self._schema(job)),
            "targetSystemId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"target:{job.id}")),
        }


