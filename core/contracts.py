"""Typed contracts between the orchestrators and the activities (docs/architecture.md section 3).

Every payload that crosses a Durable boundary is a frozen dataclass here: one input and one output
per activity, the :class:`StepError` of a failed step, the inputs of the ``provision_instance`` and
``monitor_job`` orchestrations, and the reports (:class:`InstanceOutcome`, :class:`BatchReport`,
:class:`SweepReport`). Orchestrators build inputs and read outputs with them; activities parse
their input with them, so a bad field gets a field-level ``InvalidRequest``.

Why the JSON is kept exactly (``to_dict``/``from_dict``, camelCase): Durable replays the history
of a running orchestration with the code deployed *now*; activity inputs and results recorded by an
older version must read the same (tests/workflow/test_history_replay.py replays histories recorded
before these types existed). Rules of the mapping:

* the JSON key is the field name in camelCase (``metadata={"key": ...}`` where it is not);
* a field whose default is ``None`` is left out of the JSON when it is ``None``; a field marked
  :func:`always` is written even when ``None``;
* a field whose default is :data:`UNSET` is left out only when unset: ``None`` is written (a
  report that says "no status was read" is not the same JSON as one without the key);
* a field marked ``omit_false`` is left out when false (e.g. ``countImportedRoles``);
* inputs (:class:`Input`) are strict: a missing required field or a value of the wrong type is an
  ``InvalidRequest`` naming the field; outputs and reports are lenient (unknown keys ignored,
  missing ones default), as an orchestrator reading a result recorded by an older activity must be.

Nothing here holds a secret: credentials are Key Vault references (``{"keyVaultSecret": name}``)
or non-secret literals, and errors carry codes and messages the activities keep secret-free.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, ClassVar, TypeVar, Union

from core import model
from core.errors import InvalidRequest, Problem

C = TypeVar("C", bound="Contract")


class _Unset:
    """A field the JSON did not have (falsy, so ``if outcome.status:`` reads naturally)."""

    _instance: ClassVar["_Unset | None"] = None

    def __new__(cls) -> "_Unset":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
"""Default of a field whose absence and ``None`` are different JSON."""


def always(default: Any = None, **metadata: Any) -> Any:
    """A field written to JSON even when ``None``."""
    return dataclasses.field(default=default, metadata={"always": True, **metadata})


def key(name: str, default: Any = dataclasses.MISSING, **metadata: Any) -> Any:
    """A field whose JSON key is not its camelCase name."""
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata={"key": name, **metadata})
    return dataclasses.field(default=default, metadata={"key": name, **metadata})


def listed() -> Any:
    return dataclasses.field(default_factory=list)


def mapped() -> Any:
    return dataclasses.field(default_factory=dict)


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _json_key(f: dataclasses.Field) -> str:
    return f.metadata.get("key") or camel(f.name)


def _dump(value: Any) -> Any:
    if isinstance(value, Contract):
        return value.to_dict()
    if isinstance(value, list):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    return value


_SCALARS = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _convert(tp: Any, value: Any, path: str, strict: bool, problems: list[Problem]) -> Any:
    """``value`` as type ``tp``; a mismatch is a problem (strict) or the value as it is (lenient)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None) and a is not _Unset]
        if value is None:
            return None
        tp = args[0] if len(args) == 1 else Any
        origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if isinstance(tp, type) and issubclass(tp, Contract):
        if isinstance(value, dict):
            return tp._build(value, path, strict, problems)
        if strict:
            problems.append(Problem(path, "must be an object"))
        return None if strict else value
    if origin is list or tp is list:
        if not isinstance(value, list):
            if strict:
                problems.append(Problem(path, "must be a list"))
            return [] if strict else value
        (inner,) = typing.get_args(tp) or (Any,)
        return [_convert(inner, v, f"{path}[{i}]", strict, problems) for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            if strict:
                problems.append(Problem(path, "must be an object"))
            return {} if strict else value
        return value
    if tp in _SCALARS:
        ok = isinstance(value, tp) and not (tp is int and isinstance(value, bool))
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            ok, value = True, float(value)
        if not ok and strict:
            problems.append(Problem(path, f"must be {_SCALARS[tp]}"))
        return value
    return value


class Contract:
    """Base of every contract: ``to_dict`` / ``from_dict`` over the dataclass fields (rules above)."""

    strict: ClassVar[bool] = False

    def to_dict(self) -> dict[str, Any]:
        """The camelCase JSON form (the form recorded in orchestration histories)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is UNSET:
                continue
            if value is None and f.default is None and not f.metadata.get("always"):
                continue
            if value is False and f.metadata.get("omit_false"):
                continue
            out[_json_key(f)] = _dump(value)
        return out

    @classmethod
    def from_dict(cls: type[C], data: Any) -> C:
        """Parse the JSON form; an :class:`Input` raises ``InvalidRequest`` naming every bad field."""
        problems: list[Problem] = []
        if not isinstance(data, dict):
            if cls.strict:
                raise InvalidRequest([Problem("$", "activity input must be a JSON object")])
            data = {}
        built = cls._build(data, "", cls.strict, problems)
        if problems:
            raise InvalidRequest(problems)
        return built

    @classmethod
    def _build(cls: type[C], data: dict[str, Any], prefix: str, strict: bool, problems: list[Problem]) -> C:
        hints = _hints(cls)
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            name = _json_key(f)
            path = f"{prefix}.{name}" if prefix else name
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if name not in data:
                if required:
                    if strict:
                        problems.append(Problem(path, "is required"))
                    kwargs[f.name] = None
                continue
            value = data[name]
            if required and strict and (value is None or value == ""):
                problems.append(Problem(path, "is required"))
                kwargs[f.name] = value
                continue
            if strict and value == "" and not required:
                value = None
            if value is None and f.default is not UNSET and f.default is not None and not required:
                continue  # null for a field with a real default: the default (as ``x or default`` did)
            value = _convert(hints[f.name], value, path, strict, problems)
            check = f.metadata.get("check")
            if strict and check is not None and value is not None:
                problems.extend(check(value, path))
            kwargs[f.name] = value
        return cls(**kwargs)


class Input(Contract):
    """An activity input: parsed strictly by the activity."""

    strict: ClassVar[bool] = True

    def credential_refs(self) -> dict[str, Any]:
        """The ``credentials`` field parsed (``{key: str | SecretRef}``); ``{}`` when the input has none."""
        raw = getattr(self, "credentials", None)
        return {} if raw is None else model.parse_credentials(raw, "credentials")


# -- field checks (strict inputs) ---------------------------------------------------------------------

def _credentials(value: Any, path: str) -> list[Problem]:
    try:
        model.parse_credentials(value, path)
    except InvalidRequest as exc:
        return list(exc.problems)
    return []


def _template(value: Any, path: str) -> list[Problem]:
    try:
        model.parse_template_ref(value, path)
    except InvalidRequest as exc:
        return list(exc.problems)
    return []


def _versions(value: Any, path: str) -> list[Problem]:
    if all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return []
    return [Problem(path, "must be an object of secret name -> version strings")]


def _positive(value: Any, path: str) -> list[Problem]:
    return [] if isinstance(value, int) and value >= 1 else [Problem(path, "must be a positive integer")]


CREDENTIALS = {"check": _credentials}


# -- errors --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, kw_only=True)
class StepError(Contract):
    """The ``error`` of a failed step result: ``{kind, code, message, step?, ...}``.

    ``kind``: ``permanent`` (fail now), ``throttled`` (wait ``retryAfterSeconds`` and call again),
    ``transient`` (retries used up), ``deadline`` (still throttled when the caller's time was up).
    """

    kind: str = "permanent"
    code: str | None = None
    message: str | None = None
    step: str | None = None
    status: int | None = None
    request_id: str | None = None
    retry_after_seconds: float | None = None
    missing_permissions: list[str] | None = None
    problems: list[dict[str, Any]] | None = None

    @property
    def throttled(self) -> bool:
        return self.kind == "throttled"

    def reason(self, default_step: str = "setup") -> str:
        """``"<step>: <message or code>"``, the reason line of a report."""
        return f"{self.step or default_step}: {self.message or self.code or 'failed'}"


#: the largest error text kept in outputs and custom status
MAX_MESSAGE = 300


def failure(step: str, code: str, message: str, kind: str = "permanent") -> dict[str, Any]:
    """A failed step result in the activity contract's shape (``{"ok": false, "error": ...}``)."""
    return {"ok": False, "error": {"kind": kind, "code": code, "message": message[:MAX_MESSAGE], "step": step}}


# -- activity inputs and outputs ------------------------------------------------------------------------
# (the table of docs/architecture.md section 3; field order = the JSON order the orchestrators write)

@dataclasses.dataclass(frozen=True, kw_only=True)
class ResolveTemplateInput(Input):
    application_template: dict[str, Any] = dataclasses.field(metadata={"check": _template})

    @property
    def template_ref(self) -> model.TemplateRef:
        return model.parse_template_ref(self.application_template)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ResolveTemplateOutput(Contract):
    template_id: str | None = None
    display_name: str | None = always()
    job_kind: str | None = always()


@dataclasses.dataclass(frozen=True, kw_only=True)
class EnsureApplicationInput(Input):
    batch_id: str | None = always()
    instance_key: str
    display_name: str
    template_id: str
    labels: dict[str, Any] | None = always()  # None keeps the label tags there are, {} removes them


@dataclasses.dataclass(frozen=True, kw_only=True)
class EnsureApplicationOutput(Contract):
    application_id: str | None = None
    app_id: str | None = None
    service_principal_id: str | None = None
    created: bool = False
    created_here: bool = key("createdHere", False, omit_false=True)
    tagged: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class WaitUntilVisibleInput(Input):
    service_principal_id: str
    application_id: str | None = always()
    instance_key: str | None = always()
    labels: dict[str, Any] | None = always()
    credentials: dict[str, Any] | None = dataclasses.field(default=None, metadata={"always": True, **CREDENTIALS})
    sync_all: bool = False
    display_name: str | None = always()
    template_id: str | None = always()
    created: bool = False
    notification_email: str | None = None
    #: the instance's post-rotation canary ``{"objectId", "objectType"}`` (kept in the notes)
    canary: dict[str, str] | None = None
    #: the request's provisioningSettings.deletionThreshold (kept in the notes for rotations and the sweep)
    deletion_threshold: dict[str, Any] | None = None
    #: the request's assignments ``{"users": [...], "groups": [...], "appRole"?: "..."}`` (kept in the notes:
    #: drift compares them, enforce assigns them again)
    assignments: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServicePrincipalRef(Contract):
    service_principal_id: str | None = None
    app_id: str | None = None
    application_id: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class WaitUntilVisibleOutput(Contract):
    visible: bool = True
    reads: int | None = None
    tagged: bool = False
    recorded_versions: dict[str, str] | None = None
    tags: list[str] | None = None
    yielded: bool = key("yielded", False, omit_false=True)
    kept: ServicePrincipalRef | None = None
    discard: ServicePrincipalRef | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class DiscardApplicationInput(Input):
    application_id: str
    service_principal_id: str
    instance_key: str | None = always()


@dataclasses.dataclass(frozen=True, kw_only=True)
class DiscardApplicationOutput(Contract):
    deleted: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class EnsureJobInput(Input):
    service_principal_id: str
    application_template_id: str | None = None
    synchronization_template_id: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class EnsureJobOutput(Contract):
    job_id: str | None = None
    template_id: str | None = None
    created: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class ValidateCredentialsInput(Input):
    service_principal_id: str
    job_id: str
    credentials: dict[str, Any] = dataclasses.field(metadata=CREDENTIALS)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ValidateCredentialsOutput(Contract):
    secret_versions: dict[str, str] = mapped()


@dataclasses.dataclass(frozen=True, kw_only=True)
class SaveSecretsInput(Input):
    service_principal_id: str
    credentials: dict[str, Any] = dataclasses.field(metadata=CREDENTIALS)
    sync_all: bool = False
    notification_email: str | None = None
    recorded_versions: dict[str, str] | None = dataclasses.field(default=None, metadata={"check": _versions})
    #: the tags wait_until_visible left on the service principal (the base of a new version record)
    current_tags: list[str] | None = None
    #: the request's provisioningSettings.deletionThreshold (None: on, 500), saved in SyncNotificationSettings
    deletion_threshold: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class SaveSecretsOutput(Contract):
    keys: list[str] = listed()
    cleared: list[str] = listed()
    secret_versions: dict[str, str] = mapped()
    saved_versions: dict[str, str] = mapped()


@dataclasses.dataclass(frozen=True, kw_only=True)
class AssignPrincipalsInput(Input):
    service_principal_id: str
    count_imported_roles: bool = key("countImportedRoles", False, omit_false=True)
    users: list[str] = listed()
    groups: list[str] = listed()
    app_role: str | None = None

    @property
    def has_principals(self) -> bool:
        return bool(self.users or self.groups)


@dataclasses.dataclass(frozen=True, kw_only=True)
class AssignPrincipalsOutput(Contract):
    assigned: int = 0
    already_assigned: int = 0
    roles_imported: int | None = UNSET


@dataclasses.dataclass(frozen=True, kw_only=True)
class StartJobInput(Input):
    service_principal_id: str
    job_id: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class StartJobOutput(Contract):
    started: bool = False
    already_running: bool = False
    started_at: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class GetJobStatusInput(Input):
    service_principal_id: str
    job_id: str | None = always()
    started_at: str | None = always()


@dataclasses.dataclass(frozen=True, kw_only=True)
class GetJobStatusOutput(Contract):
    job_id: str | None = always()
    status: dict[str, Any] = mapped()


@dataclasses.dataclass(frozen=True, kw_only=True)
class GetProvisioningErrorsInput(Input):
    service_principal_id: str
    job_id: str
    since: str
    top: int = dataclasses.field(default=20, metadata={"check": _positive})
    until: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class ErrorCodeCount(Contract):
    code: str | None = always()
    count: int = 0
    reason: str | None = always()


@dataclasses.dataclass(frozen=True, kw_only=True)
class GetProvisioningErrorsOutput(Contract):
    errors: list[dict[str, Any]] = listed()
    failed_objects: int = 0
    failures: int = 0
    top_error_codes: list[ErrorCodeCount] = listed()
    since: str | None = None
    pages: int | None = None
    complete: bool = True


@dataclasses.dataclass(frozen=True, kw_only=True)
class ListManagedInstancesInput(Input):
    """No cursor and no page size: the whole fleet (a sweep recorded before the paged sweep); else one
    page of ``pageSize`` (the first without ``cursor``, the next with the previous ``nextCursor``)."""

    cursor: str | None = None
    page_size: int | None = dataclasses.field(default=None, metadata={"check": _positive})


@dataclasses.dataclass(frozen=True, kw_only=True)
class ManagedInstance(Contract):
    """One instance found by the sweep: its ids, labels and (from the notes) credential references."""

    service_principal_id: str | None = always()
    display_name: str | None = always()
    application_template_id: str | None = always()
    instance_key: str | None = always()
    job_id: str | None = None
    labels: dict[str, Any] = mapped()
    credentials: dict[str, Any] | None = None
    sync_all: bool | None = None
    notification_email: str | None = None
    deletion_threshold: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class ListManagedInstancesOutput(Contract):
    instances: list[dict[str, Any]] = listed()
    next_cursor: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class RestartQuarantinedJobInput(Input):
    service_principal_id: str
    job_id: str | None = always()
    credentials: dict[str, Any] | None = dataclasses.field(default=None, metadata=CREDENTIALS)
    sync_all: bool | None = None
    notification_email: str | None = None
    deletion_threshold: dict[str, Any] | None = None

    @classmethod
    def of(cls, instance: dict[str, Any], service_principal_id: str, job_id: str | None) -> "RestartQuarantinedJobInput":
        """The restart's input: the instance's Key Vault references (names, never values) from its notes."""
        threshold = instance.get("deletionThreshold")
        return cls(service_principal_id=service_principal_id, job_id=job_id, credentials=instance.get("credentials"),
                   sync_all=instance.get("syncAll"), notification_email=instance.get("notificationEmail"),
                   deletion_threshold=threshold if isinstance(threshold, dict) else None)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RestartQuarantinedJobOutput(Contract):
    job_id: str | None = always()
    restarted: bool = False
    reason: str | None = always()
    cause: str | None = None
    restarted_at: str | None = None
    secret_versions: dict[str, str] | None = None


#: activity name -> (input type, output type)
ACTIVITY_CONTRACTS: dict[str, tuple[type[Input], type[Contract]]] = {}


def _register() -> None:
    from core import names

    ACTIVITY_CONTRACTS.update({
        names.RESOLVE_APPLICATION_TEMPLATE: (ResolveTemplateInput, ResolveTemplateOutput),
        names.ENSURE_APPLICATION: (EnsureApplicationInput, EnsureApplicationOutput),
        names.WAIT_UNTIL_VISIBLE: (WaitUntilVisibleInput, WaitUntilVisibleOutput),
        names.DISCARD_APPLICATION: (DiscardApplicationInput, DiscardApplicationOutput),
        names.ENSURE_JOB: (EnsureJobInput, EnsureJobOutput),
        names.VALIDATE_CREDENTIALS: (ValidateCredentialsInput, ValidateCredentialsOutput),
        names.SAVE_SECRETS: (SaveSecretsInput, SaveSecretsOutput),
        names.ASSIGN_PRINCIPALS: (AssignPrincipalsInput, AssignPrincipalsOutput),
        names.START_JOB: (StartJobInput, StartJobOutput),
        names.GET_JOB_STATUS: (GetJobStatusInput, GetJobStatusOutput),
        names.GET_PROVISIONING_ERRORS: (GetProvisioningErrorsInput, GetProvisioningErrorsOutput),
        names.LIST_MANAGED_INSTANCES: (ListManagedInstancesInput, ListManagedInstancesOutput),
        names.RESTART_QUARANTINED_JOB: (RestartQuarantinedJobInput, RestartQuarantinedJobOutput),
    })


_register()


# -- orchestration inputs --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, kw_only=True)
class ProvisionInstanceInput(Contract):
    """``provision_instance``'s input: the validated, secret-free instance of ``core.model`` plus ``key``
    (and ``templateId``/``jobKind`` when the batch resolved the template); ``monitor: false`` stops after setup."""

    batch_id: str | None = None
    instance: dict[str, Any] = mapped()
    options: dict[str, Any] = mapped()
    monitor: bool | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class MonitorJobInput(Contract):
    """``monitor_job``'s input; ``state`` only in a continued-as-new execution, ``roleImport`` (the
    assignments naming an imported role, possibly empty) only for a role-import job."""

    service_principal_id: str | None = always()
    job_id: str | None = always()
    started_at: str | None = always()
    deadline: str | None = always()
    options: dict[str, Any] = mapped()
    role_import: dict[str, Any] | None = None
    state: dict[str, Any] | None = None


# -- reports ---------------------------------------------------------------------------------------------

#: final outcomes of an instance
OUTCOMES = ("steadyState", "quarantined", "failed", "timedOut")
#: the intermediate outcome of ``provision_instance`` with ``monitor: false`` (setup done)
CONFIGURED = "configured"
#: the count of steady instances whose cycle failed objects (``counts.steadyState`` holds the clean ones)
STEADY_WITH_FAILURES = "steadyWithFailures"


@dataclasses.dataclass(frozen=True, kw_only=True)
class InstanceOutcome(Contract):
    """One instance in the batch report (the output of ``provision_instance``).

    ``ids`` (``applicationId``, ``appId``, ``servicePrincipalId``, ``jobId``) and ``timings``
    (``startedAt``, ``configuredAt``, ``finishedAt``, ``setupSeconds``, ``totalSeconds``) fill in as
    the steps run, so they stay maps; ``jobStartedAt`` and ``roleImport`` only travel from a
    ``configured`` setup to the batch's monitor and are not part of a final outcome.
    """

    instance_key: str | None = always()
    display_name: str | None = always()
    orchestration_id: str | None = always()
    outcome: str | None = always()
    reason: str | None = always()
    ids: dict[str, Any] = mapped()
    timings: dict[str, Any] = mapped()
    polls: int | None = UNSET
    provisioning_errors: list[dict[str, Any]] = listed()
    job_kind: str | None = None
    role_import: dict[str, Any] | None = None
    job_started_at: str | None = None
    error: StepError | None = None
    status: dict[str, Any] | None = UNSET
    steady_state_at: str | None = UNSET
    failed_objects: int | None = UNSET
    top_error_codes: list[ErrorCodeCount] | None = UNSET
    errors_read: dict[str, Any] | None = UNSET
    roles_imported: int | None = UNSET


@dataclasses.dataclass(frozen=True, kw_only=True)
class BatchReport(Contract):
    """The output of ``provision_batch``."""

    batch_id: str | None = always()
    request_id: str | None = always()
    started_at: str | None = always()
    finished_at: str | None = always()
    duration_seconds: float | None = always()
    counts: dict[str, int] = mapped()
    succeeded: bool = False
    instances: list[InstanceOutcome] = listed()
    top_errors: list[dict[str, Any]] = listed()


@dataclasses.dataclass(frozen=True, kw_only=True)
class SweepReport(Contract):
    """The output of ``health_sweep``: counts per category and the unhealthy instances."""

    swept_at: str | None = always()
    total: int = 0
    counts: dict[str, int] = mapped()
    quarantined_by_reason: dict[str, int] = mapped()
    unhealthy: list[dict[str, Any]] = listed()
    restarted: list[dict[str, Any]] = listed()
    # the paged sweep's (absent from a sweep recorded before it): pages, what the bounds left out, the blob link
    pages: int | None = UNSET
    unhealthy_omitted: int | None = UNSET
    restarted_omitted: int | None = UNSET
    report: dict[str, Any] | None = UNSET
    # the paged sweep's duties (orchestrators/health_sweep_page.py; absent from a sweep recorded before them)
    rotations_started: int | None = UNSET
    rotations: list[dict[str, Any]] | None = UNSET
    lagging: list[dict[str, Any]] | None = UNSET
    lagging_omitted: int | None = UNSET
    classification_changes: int | None = UNSET
    credentials_expiring: list[dict[str, Any]] | None = UNSET
    #: with SWEEP_DRIFT_CHECK: ``checked``, ``drifted`` and drifted instances per part
    drift_counts: dict[str, int] | None = None


def decode_json(value: Any) -> Any:
    """A Durable status field (input or output): JSON text, JSON-encoded twice for client-started
    instances, or already decoded; ``None`` when it is text that is not JSON."""
    import json

    for _ in range(2):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                return None
    return value


# Each feature family's contracts live in their own module (core/<family>_contracts.py), which adds its
# activities to ACTIVITY_CONTRACTS when imported; imported here so the registry names every activity
# whichever module is imported first.
from core import (batch_contracts, fleet_contracts, profile_contracts, rotation_contracts,  # noqa: E402,F401
                  sweep_contracts)
