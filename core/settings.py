"""Settings: read once from the environment, every problem reported at once.

Why one reader: Azure app settings, ``local.settings.json`` and the emulator's env file all arrive
as environment variables. Reading them in one place, once per process, means a typo fails the first
activity with *every* bad name listed (not one per deploy), and the README / Bicep tables can be
checked against :data:`SETTINGS` (the machine-readable table below) by tests.

Use :func:`get_settings` in running code (cached per process) and :meth:`Settings.from_env` in tests.
"""

from __future__ import annotations

import functools
import math
import os
import re
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from core.errors import ConfigurationError, Problem

REQUIRED = object()
"""Marker for a setting without a default."""


@dataclass(frozen=True)
class Setting:
    """One row of the settings table: environment name, type, default (or REQUIRED), meaning."""

    name: str
    type: str
    default: Any
    description: str

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def field(self) -> str:
        return self.name.lower()

    def default_text(self) -> str:
        """The default as it would be written in an app setting ('' when required)."""
        if self.required:
            return ""
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        return str(self.default)


# Graph allows 3,000 identity writes per 150 s per app+tenant = 20 writes/s (write quota table of
# https://learn.microsoft.com/graph/throttling-limits#identity-and-access-service-limits).
# One instance does about 6 writes spread over several seconds, so 20 instances in flight stay at
# or below ~20 writes/s even if every one of them writes once per second.
_GRAPH_WRITES_PER_SECOND = 20

# The seed article's example app. Its provisioning job only imports the AWS account's IAM roles into
# the service principal's appRoles; it provisions no users
# (https://learn.microsoft.com/entra/identity/saas-apps/amazon-web-service-tutorial).
AWS_SINGLE_ACCOUNT_ACCESS_TEMPLATE_ID = "8b1025e4-1dd2-430b-a150-2ef79cd700f5"

SETTINGS: tuple[Setting, ...] = (
    Setting("GRAPH_BASE_URL", "url", "https://graph.microsoft.com",
            "Microsoft Graph root, without the version (the emulator's origin locally)."),
    Setting("GRAPH_API_VERSION", "choice:v1.0,beta", "v1.0", "Graph API version: v1.0 or beta."),
    Setting("GRAPH_SCOPE", "str", "https://graph.microsoft.com/.default", "Token scope requested for Graph."),
    Setting("KEY_VAULT_URL", "url", REQUIRED,
            "Key Vault holding the target apps' credentials, e.g. https://myvault.vault.azure.net/."),
    Setting("KEY_VAULT_VERIFY_CHALLENGE_RESOURCE", "bool", True,
            "Check that Key Vault's auth challenge names the vault's domain; false only for the emulator."),
    Setting("AZURE_DISABLE_INSTANCE_DISCOVERY", "bool", False,
            "Skip Entra instance discovery; true only for a local authority (the emulator)."),
    Setting("PROVISIONING_CORRELATION_TAG", "tag", "entra-provisioning-fleet",
            "Tag put on every service principal this app creates; also prefixes the per-instance tags."),
    Setting("GRAPH_CONNECT_TIMEOUT_SECONDS", "float", 5.0, "TCP/TLS connect timeout per Graph request."),
    Setting("GRAPH_READ_TIMEOUT_SECONDS", "float", 30.0, "Read timeout per Graph request."),
    Setting("GRAPH_RETRY_BUDGET_SECONDS", "float", 15.0,
            "Most seconds one Graph call may sleep on 429/503/504 before handing the wait to the orchestrator."),
    Setting("GRAPH_MAX_ATTEMPTS", "int", 4, "Most attempts of one Graph call (first try included)."),
    Setting("GRAPH_WRITES_PER_SECOND", "count", _GRAPH_WRITES_PER_SECOND,
            "Graph writes (POST/PATCH/PUT/DELETE) the whole app sends to one tenant per second at most, across "
            "all worker processes and instances, evenly spaced: its share of Graph's identity write limit "
            "(20/s per app and tenant); 0 turns the pacing off."),
    Setting("GRAPH_WRITE_LIMIT_STORAGE", "str", "AzureWebJobsStorage",
            "Storage connection (as a binding's connection: a connection string, or identity-based with its __blobServiceUri) "
            "whose blob container graph-write-limit holds the app-wide write schedule; none: each process "
            "paces alone."),
    Setting("GRAPH_WRITE_LIMIT_BLOCK", "int", 10,
            "Most write slots a process reserves from the shared schedule per storage round trip."),
    Setting("GRAPH_COMBINED_LOOKUP", "bool", True,
            "Find an instance's service principal with one filter (tag or name+template, joined by 'or'); "
            "false, or a 400 from Graph, uses two look-ups."),
    Setting("VISIBILITY_WAIT_SECONDS", "float", 60.0,
            "Most seconds an activity waits for a new object to become readable (replication lag)."),
    Setting("VISIBILITY_POLL_SECONDS", "float", 5.0,
            "Pause between reads while waiting for a new object, also between the successful reads that confirm "
            "it (Graph suggests 5-10 s; Terraform at least 5 s)."),
    Setting("VISIBILITY_CONSECUTIVE_READS", "int", 5,
            "Successful reads in a row, VISIBILITY_POLL_SECONDS apart, before a new service principal counts as "
            "replicated: 5 as Terraform's consistency.WaitForUpdate (reads land on different directory replicas)."),
    Setting("MONITOR_FIRST_POLL_SECONDS", "int", 60, "First job-status poll after the job starts."),
    Setting("MONITOR_MAX_POLL_SECONDS", "int", 300, "Longest pause between job-status polls (backoff cap)."),
    Setting("MONITOR_DEADLINE_SECONDS", "int", 86400,
            "Give up waiting for steady state after this long (the first cycle can take hours)."),
    Setting("MONITOR_POLLS_PER_GENERATION", "int", 20,
            "Status polls per monitor generation before continue_as_new (keeps history small)."),
    Setting("ACTIVITY_RETRY_FIRST_INTERVAL_SECONDS", "int", 5,
            "First retry interval of call_activity_with_retry for transient failures."),
    Setting("ACTIVITY_RETRY_MAX_ATTEMPTS", "int", 5, "Attempts of call_activity_with_retry for transient failures."),
    Setting("THROTTLED_MAX_WAITS", "int", 10,
            "How many times an orchestrator waits out a 'throttled' result before failing the step."),
    Setting("BATCH_MAX_IN_FLIGHT", "int", _GRAPH_WRITES_PER_SECOND,
            "Instances of one batch provisioned at the same time (sized from Graph's 20 writes/s)."),
    Setting("BATCH_SUB_BATCH_SIZE", "int", 100,
            "Instances per sub-batch orchestration of a batch (bounds each history, so replay cost grows "
            "linearly with the batch)."),
    Setting("BATCH_SUB_BATCHES_IN_FLIGHT", "int", 4,
            "Sub-batches of one batch running at once; each gets BATCH_MAX_IN_FLIGHT divided by this (the "
            "batch as a whole never has more than BATCH_MAX_IN_FLIGHT instances in setup)."),
    Setting("BATCH_REPORT_CONTAINER", "str", "batch-reports",
            "Blob container (in the AzureWebJobsStorage account) for batch reports: <batchId>/report.json "
            "and one part per sub-batch."),
    Setting("BATCH_REPORT_INLINE_MAX", "int", 200,
            "Most instance outcomes in a batch's output; a larger batch lists the instances not in a clean "
            "steady state first (at most this many) and links the full report in blob storage."),
    Setting("PROVISIONING_LOG_PAGE_SIZE", "int", 500, "$top for provisioning-log reads (max 1000)."),
    Setting("PROVISIONING_LOG_MIN_INTERVAL_SECONDS", "float", 2.0,
            "Least seconds between provisioning-log requests (Graph allows 5 per 10 s)."),
    Setting("PROVISIONING_LOG_MAX_PAGES", "int", 20,
            "Most pages of one cycle's provisioning errors read back to the cycle's start (bounds one read)."),
    Setting("REQUEST_MAX_BODY_BYTES", "int", 8388608,
            "Largest provisioning request body accepted (8 MiB: 10,000 instances at about 400 bytes each, "
            "with room for assignments)."),
    Setting("REQUEST_MAX_INSTANCES", "int", 10000, "Most instances in one provisioning request."),
    Setting("HEALTH_SWEEP_SCHEDULE", "ncrontab", "0 0 * * * *",
            "NCRONTAB schedule of the health sweep (6 fields, seconds first); default hourly."),
    Setting("HEALTH_SWEEP_MAX_IN_FLIGHT", "int", 10, "Instances the health sweep checks at the same time."),
    Setting("HEALTH_SWEEP_RESTART_CREDENTIAL_QUARANTINE", "bool", False,
            "Let the sweep restart a job quarantined for bad credentials once its Key Vault secret validates "
            "(off: quarantined jobs are only reported)."),
    Setting("FLEET_REGISTRY_TABLE", "str", "fleetregistry",
            "Azure Table (on the AzureWebJobsStorage account) holding the fleet registry: per instance its ids, "
            "labels and Key Vault references and versions, never a value."),
    Setting("ROTATION_MAX_IN_FLIGHT", "int", _GRAPH_WRITES_PER_SECOND,
            "Instances one credential rotation validates and saves at the same time (sized from Graph's 20 writes/s)."),
    Setting("ROTATION_CANARY", "str", "none",
            "Post-rotation canary: User:<object id> or Group:<object id> provisioned on demand on each rotated "
            "instance (none: no canary)."),
    Setting("ROTATION_CANARY_BY_TEMPLATE", "str", "{}",
            "Post-rotation canary per application template, JSON: {\"<template id>\": \"User:<object id>\" or "
            "\"Group:<object id>\"}; used for an instance whose request named no canary, before ROTATION_CANARY."),
    Setting("CREDENTIAL_EXPIRY_WARNING_DAYS", "int", 30,
            "Days before a Key Vault secret's expiry from which the expiry calendar flags it as expiring (and each health sweep logs it once)."),
    Setting("HEALTH_SWEEP_PAGE_SIZE", "int", 200,
            "Service principals the health sweep lists and checks per page (one sub-orchestration each; at most 999)."),
    Setting("SWEEP_DRIFT_CHECK", "bool", False,
            "Let the paged health sweep compute each instance's drift (schema profile, secret keys, provisioning settings, assignments, schedule) and count it per part; costs about 6 Graph reads per instance (off: no drift in the sweep)."),
    Setting("HEALTH_SWEEP_MAX_REPORTED", "int", 500,
            "Most unhealthy instances, and most restart outcomes, listed in the sweep's output (all are in the blob report)."),
    Setting("HEALTH_SWEEP_REPORT_CONTAINER", "str", "health-sweep-reports",
            "Blob container (in the AzureWebJobsStorage account) for the sweep's full per-instance report."),
    Setting("HEALTH_SWEEP_ROTATION_SAFETY_NET", "bool", True,
            "Let the sweep compare each instance's saved Key Vault version with the current enabled one and start "
            "that version's rotation for any that lag (a missed Key Vault event)."),
    Setting("ROLE_IMPORT_TEMPLATE_IDS", "guids", AWS_SINGLE_ACCOUNT_ACCESS_TEMPLATE_ID,
            "Application template ids (comma-separated) whose provisioning job imports app roles from the app "
            "instead of provisioning users (default: AWS Single-Account Access; none: no template); their "
            "instances report rolesImported, and an assignments.appRole is assigned after the first cycle."),
)

_SETTING_BY_NAME = {s.name: s for s in SETTINGS}

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_CONTAINER_RE = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$")
_NCRONTAB_FIELD = re.compile(r"^[0-9*/,\-A-Za-z]+$")


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("expected true or false")


def _parse_text(text: str) -> str:
    return text.strip()


def _parse_url(text: str) -> str:
    value = text.strip()
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.netloc:
        raise ValueError("expected an https:// URL")
    return value.rstrip("/")


def _parse_positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text.strip())
        except ValueError:
            raise ValueError(f"expected {'an integer' if kind is int else 'a number'}") from None
        if not math.isfinite(value):  # nan/inf parse as floats, and nan compares False to everything
            raise ValueError("expected a finite number")
        if value <= 0:
            raise ValueError("must be greater than 0")
        return value

    return parse


def _parse_count(text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError("expected an integer") from None
    if value < 0:
        raise ValueError("must be 0 or greater")
    return value


def _parse_tag(text: str) -> str:
    value = text.strip()
    if not _TAG_RE.match(value):
        raise ValueError("1-64 characters: letters, digits, '.', '_', ':' or '-'")
    return value


def _parse_ncrontab(text: str) -> str:
    value = " ".join(text.split())
    items = value.split(" ")
    if len(items) != 6 or not all(_NCRONTAB_FIELD.match(i) for i in items):
        raise ValueError("expected an NCRONTAB expression with 6 fields, e.g. '0 0 * * * *'")
    return value


_GUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _parse_guids(text: str) -> str:
    """Comma-separated GUIDs, returned lower-case and comma-joined; ``none`` (or only commas) = none."""
    if text.strip().lower() == "none":
        return ""
    items = [item.strip().lower() for item in text.split(",") if item.strip()]
    if not all(_GUID_RE.match(item) for item in items):
        raise ValueError("expected comma-separated GUIDs")
    return ",".join(dict.fromkeys(items))


def _parser(setting: Setting) -> Callable[[str], Any]:
    if setting.type.startswith("choice:"):
        choices = setting.type.split(":", 1)[1].split(",")

        def parse_choice(text: str) -> str:
            if text.strip() not in choices:
                raise ValueError("expected one of " + ", ".join(choices))
            return text.strip()

        return parse_choice
    return {
        "str": _parse_text,
        "url": _parse_url,
        "bool": _parse_bool,
        "int": _parse_positive(int),
        "count": _parse_count,
        "float": _parse_positive(float),
        "tag": _parse_tag,
        "ncrontab": _parse_ncrontab,
        "guids": _parse_guids,
    }[setting.type]


@dataclass(frozen=True)
class Settings:
    """Every setting of :data:`SETTINGS`, parsed; field name = environment name in lower case."""

    graph_base_url: str
    graph_api_version: str
    graph_scope: str
    key_vault_url: str
    key_vault_verify_challenge_resource: bool
    azure_disable_instance_discovery: bool
    provisioning_correlation_tag: str
    graph_connect_timeout_seconds: float
    graph_read_timeout_seconds: float
    graph_retry_budget_seconds: float
    graph_max_attempts: int
    graph_writes_per_second: int
    graph_write_limit_storage: str
    graph_write_limit_block: int
    graph_combined_lookup: bool
    visibility_wait_seconds: float
    visibility_poll_seconds: float
    visibility_consecutive_reads: int
    monitor_first_poll_seconds: int
    monitor_max_poll_seconds: int
    monitor_deadline_seconds: int
    monitor_polls_per_generation: int
    activity_retry_first_interval_seconds: int
    activity_retry_max_attempts: int
    throttled_max_waits: int
    batch_max_in_flight: int
    batch_sub_batch_size: int
    batch_sub_batches_in_flight: int
    batch_report_container: str
    batch_report_inline_max: int
    provisioning_log_page_size: int
    provisioning_log_min_interval_seconds: float
    provisioning_log_max_pages: int
    request_max_body_bytes: int
    request_max_instances: int
    health_sweep_schedule: str
    health_sweep_max_in_flight: int
    health_sweep_restart_credential_quarantine: bool
    health_sweep_page_size: int
    sweep_drift_check: bool
    health_sweep_max_reported: int
    health_sweep_report_container: str
    health_sweep_rotation_safety_net: bool
    role_import_template_ids: str
    fleet_registry_table: str
    rotation_max_in_flight: int
    rotation_canary: str
    rotation_canary_by_template: str
    credential_expiry_warning_days: int

    @property
    def role_import_templates(self) -> frozenset[str]:
        """The application template ids of :data:`ROLE_IMPORT_TEMPLATE_IDS`, lower case."""
        return frozenset(item for item in self.role_import_template_ids.split(",") if item)

    @property
    def graph_root(self) -> str:
        """Graph base URL with the version, e.g. ``https://graph.microsoft.com/v1.0``."""
        return f"{self.graph_base_url}/{self.graph_api_version}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Parse every setting from ``environ``; raise ConfigurationError naming every bad one.

        ``overrides`` (field names) replace parsed values; tests use them for small timeouts.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[Problem] = []
        for setting in SETTINGS:
            raw = env.get(setting.name)
            if raw is None or raw.strip() == "":
                if setting.required:
                    problems.append(Problem(setting.name, "is required: " + setting.description))
                else:
                    values[setting.field] = setting.default
                continue
            try:
                values[setting.field] = _parser(setting)(raw)
            except (ValueError, TypeError) as exc:
                # The raw value is not echoed: a mistyped secret could land in a setting.
                problems.append(Problem(setting.name, f"invalid value ({exc})"))
        if values.get("monitor_first_poll_seconds", 0) > values.get("monitor_max_poll_seconds", 1e18):
            problems.append(Problem("MONITOR_FIRST_POLL_SECONDS", "must not exceed MONITOR_MAX_POLL_SECONDS"))
        if str(values.get("graph_base_url", "")).rstrip("/").endswith(("/v1.0", "/beta")):
            problems.append(Problem("GRAPH_BASE_URL", "give the Graph root without the version (set GRAPH_API_VERSION)"))
        if not _CONTAINER_RE.match(str(values.get("batch_report_container", "batch-reports"))):
            # https://learn.microsoft.com/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata
            problems.append(Problem("BATCH_REPORT_CONTAINER", "must be a blob container name: 3-63 lowercase letters, "
                                    "digits and single hyphens"))
        if values.get("provisioning_log_page_size", 0) > 1000:
            problems.append(Problem("PROVISIONING_LOG_PAGE_SIZE", "must be at most 1000"))
        if values.get("health_sweep_page_size", 0) > 999:
            problems.append(Problem("HEALTH_SWEEP_PAGE_SIZE", "must be at most 999 (Graph's $top on servicePrincipals)"))
        container = values.get("health_sweep_report_container")
        # https://learn.microsoft.com/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata
        if container is not None and not re.fullmatch(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}", container):
            problems.append(Problem("HEALTH_SWEEP_REPORT_CONTAINER", "a blob container name: 3-63 lowercase letters, "
                                    "digits and single hyphens, starting and ending with a letter or digit"))
        problems += _canary_problems(values)
        if problems:
            raise ConfigurationError(problems)
        values.update(overrides)
        return cls(**values)


def _canary_problems(values: Mapping[str, Any]) -> list[Problem]:
    """ROTATION_CANARY_BY_TEMPLATE's field-level problems (checked at start, not at the first rotation)."""
    from core.errors import InvalidRequest
    from core.rotation_contracts import parse_canary_by_template

    try:
        parse_canary_by_template(str(values.get("rotation_canary_by_template") or ""))
    except InvalidRequest as exc:
        return list(exc.problems)
    return []


assert {f.name for f in fields(Settings)} == {s.field for s in SETTINGS}, "Settings and SETTINGS disagree"


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, parsed from ``os.environ`` on first use and then cached."""
    return Settings.from_env(os.environ)


def markdown_table() -> str:
    """The README settings table (kept in sync by tests/core/test_settings.py)."""
    lines = ["| Name | Default | Type | Meaning |", "|---|---|---|---|"]
    for s in SETTINGS:
        default = "**required**" if s.required else f"`{s.default_text()}`"
        lines.append(f"| `{s.name}` | {default} | {s.type} | {s.description} |")
    return "\n".join(lines)
