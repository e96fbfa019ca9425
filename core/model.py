"""The provisioning request: parsing, validation with field paths, the per-instance key, JSON Schema.

A request (JSON, camelCase) names a batch and up to 10,000 app instances::

    {"requestId": "aws-prod-2026-11",
     "instances": [{"applicationTemplate": {"displayName": "AWS IAM Identity Center (successor to AWS Single Sign-On)"},
                    "displayName": "AWS Contoso Prod",
                    "credentials": {"BaseAddress": "https://scim.example.com/scim/v2",
                                    "SecretToken": {"keyVaultSecret": "aws-prod-scim-token"}},
                    "notificationEmail": "ops@contoso.com",
                    "assignments": {"groups": ["AWS Admins"]},
                    "labels": {"env": "prod"}}]}

Why validate everything up front and list every problem: a batch of 1,000 instances should fail
once, at the door, with a list the sender can fix in one go - not 1,000 times deep in Graph.
Secret values never appear in a request: secret keys must be Key Vault references
(``{"keyVaultSecret": name}``); only the short list :data:`LITERAL_KEYS` may carry plain values.

The same rules are published as JSON Schema (:func:`json_schema`, written to
``schemas/provisioning-request.schema.json``); a test keeps the two in agreement.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Mapping

from core.errors import InvalidRequest, Problem
from core.instance_ids import child_instance_id  # noqa: F401  (the rule lives in core.instance_ids)

#: What a template's provisioning job does (``jobKind`` of resolve_application_template and of the
#: report): provision users and groups into the app, or import the app's roles into the service
#: principal's appRoles (AWS Single-Account Access; settings ROLE_IMPORT_TEMPLATE_IDS).
USER_PROVISIONING = "userProvisioning"
ROLE_IMPORT = "roleImport"

MAX_INSTANCES = 10000
MAX_DISPLAY_NAME = 120
MAX_ASSIGNEES = 100
MAX_LABELS = 10

# Every key of Graph's synchronizationSecret enum, as listed for the `key` property on
# https://learn.microsoft.com/graph/api/resources/synchronization-synchronizationsecretkeystringvaluepair.
# Keys are case-sensitive: 'baseAddress' makes Graph answer 500 InternalError
# (https://github.com/microsoftgraph/msgraph-beta-sdk-java/issues/372).
SECRET_KEYS = (
    "UserName", "Password", "SecretToken", "AppKey", "BaseAddress", "ClientIdentifier", "ClientSecret",
    "SingleSignOnType", "Sandbox", "Url", "Domain", "ConsumerKey", "ConsumerSecret", "TokenKey",
    "TokenExpiration", "Oauth2AccessToken", "Oauth2AccessTokenCreationTime", "Oauth2RefreshToken",
    "InstanceName", "Oauth2ClientId", "Oauth2ClientSecret", "CompanyId", "UpdateKeyOnSoftDelete",
    "SynchronizationSchedule", "SystemOfRecord", "SandboxName", "EnforceDomain", "Oauth2AuthorizationCode",
    "Oauth2RedirectUri", "ApplicationTemplateIdentifier", "Oauth2TokenExchangeUri", "Oauth2AuthorizationUri",
    "AuthenticationType", "Server", "PerformInboundEntitlementGrants", "HardDeletesEnabled",
    "SyncAgentCompatibilityKey", "SyncAgentADContainer", "ValidateDomain", "TestReferences", "ConnectionString",
    "SkipOutOfScopeDeletions",
)
# Keys that are not secret and may be given as plain values (addresses, names, switches). Everything
# else must come from Key Vault, so a token can never be pasted into a request by mistake.
LITERAL_KEYS = (
    "BaseAddress", "Url", "Domain", "InstanceName", "CompanyId", "AuthenticationType", "Sandbox",
    "SandboxName", "Server", "UserName", "ClientIdentifier", "Oauth2ClientId", "SingleSignOnType",
    "EnforceDomain", "ValidateDomain", "SkipOutOfScopeDeletions", "Oauth2RedirectUri",
    "Oauth2TokenExchangeUri", "Oauth2AuthorizationUri",
)
# Managed by the core from syncAll / notificationEmail; a request must not set them directly.
MANAGED_KEYS = ("SyncAll", "SyncNotificationSettings")
URL_KEYS = ("BaseAddress", "Url", "Oauth2RedirectUri", "Oauth2TokenExchangeUri", "Oauth2AuthorizationUri")

REQUEST_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
GUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
# Any printable text without control characters, angle brackets or leading/trailing spaces.
DISPLAY_NAME_PATTERN = r"^[^\s<>\x00-\x1f\x7f](?:[^<>\x00-\x1f\x7f]*[^\s<>\x00-\x1f\x7f])?$"
KEY_VAULT_SECRET_PATTERN = r"^[0-9A-Za-z-]{1,127}$"
SYNC_TEMPLATE_PATTERN = r"^[A-Za-z0-9._-]{1,128}$"
EMAIL_PATTERN = r"^[^@\s<>\"',;]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$"
LABEL_KEY_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,31}$"
LABEL_VALUE_PATTERN = r"^[A-Za-z0-9 _.:/@-]{0,64}$"
PRINCIPAL_PATTERN = r"^[^\x00-\x1f\x7f<>]{1,256}$"
#: A user: object id, or userPrincipalName (local part may hold '#', as guests' "x_y.com#EXT#@..." do).
#: No '/', '\\', '?' or whitespace: the reference becomes a URL path segment (/users/{ref}).
USER_PATTERN = (r"^(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
                r"|[^\x00-\x20\x7f<>/\\?@]{1,113}@[A-Za-z0-9][A-Za-z0-9.-]{0,252})$")
#: An https URL without user information (``https://user:password@host``: a credential in a literal,
#: which is stored in clear in the notes, the registry and the stored request; put it in Key Vault).
HTTPS_URL_PATTERN = r"^https://[^\s/?#@]+(?:[/?#][^\s]*)?$"
#: Query parameters that carry a secret (a token pasted into a tenant URL): refused in a literal URL.
#: Entra's own flag ``?aadOptscim062020`` (https://learn.microsoft.com/entra/identity/app-provisioning/application-provisioning-config-problem-scim-compatibility)
#: and other flags pass.
SECRET_QUERY_PARAMS = frozenset({"token", "access_token", "api_key", "apikey", "key", "secret", "client_secret",
                                 "password", "pwd", "sig", "signature", "code", "auth", "authorization"})
MAX_LITERAL = 2048

def _secret_query(url: str) -> bool:
    """Whether ``url``'s query string names a parameter that carries a secret (:data:`SECRET_QUERY_PARAMS`)."""
    from urllib.parse import parse_qsl, urlsplit

    query = urlsplit(url).query
    return any(name.strip().lower() in SECRET_QUERY_PARAMS for name, _ in parse_qsl(query, keep_blank_values=True))


_RE = {name: re.compile(value) for name, value in {
    "requestId": REQUEST_ID_PATTERN, "guid": GUID_PATTERN, "displayName": DISPLAY_NAME_PATTERN,
    "kv": KEY_VAULT_SECRET_PATTERN, "syncTemplate": SYNC_TEMPLATE_PATTERN, "email": EMAIL_PATTERN,
    "labelKey": LABEL_KEY_PATTERN, "labelValue": LABEL_VALUE_PATTERN, "principal": PRINCIPAL_PATTERN,
    "user": USER_PATTERN, "https": HTTPS_URL_PATTERN,
}.items()}

REQUEST_FIELDS = ("requestId", "instances")
INSTANCE_FIELDS = ("applicationTemplate", "displayName", "credentials", "synchronizationTemplateId",
                   "notificationEmail", "syncAll", "assignments", "labels", "schemaProfile", "canary",
                   "provisioningSettings")
#: the post-rotation canary's object types (``canary.objectType``)
CANARY_OBJECT_TYPES = ("user", "group")
PROVISIONING_SETTINGS_FIELDS = ("deletionThreshold", "notificationEmail")
DELETION_THRESHOLD_FIELDS = ("enabled", "count")
#: The accidental-deletion threshold when a request sets none: on, 500 - the value this service has
#: always saved, and the portal's default ("Prevent accidental deletions", 500:
#: https://learn.microsoft.com/entra/identity/app-provisioning/accidental-deletions).
DEFAULT_DELETION_THRESHOLD = 500
#: Our bound on ``deletionThreshold.count`` (Graph documents none; a count above any fleet's size is
#: the same as no threshold, which ``enabled: false`` says plainly).
MAX_DELETION_THRESHOLD = 1_000_000
REQUIRED_INSTANCE_FIELDS = ("applicationTemplate", "displayName", "credentials")


@dataclass(frozen=True)
class SecretRef:
    """A credential value kept in Key Vault, named by secret name (never the value)."""

    key_vault_secret: str

    def to_dict(self) -> dict:
        return {"keyVaultSecret": self.key_vault_secret}


Credentials = Mapping[str, "str | SecretRef"]


@dataclass(frozen=True)
class TemplateRef:
    """An application template named by id or by exact display name (exactly one of the two)."""

    id: str | None = None
    display_name: str | None = None

    def to_dict(self) -> dict:
        return {"id": self.id} if self.id else {"displayName": self.display_name}


@dataclass(frozen=True)
class InstanceSpec:
    """One app instance to provision."""

    display_name: str
    application_template: TemplateRef
    credentials: dict = field(default_factory=dict)
    synchronization_template_id: str | None = None
    notification_email: str | None = None
    sync_all: bool = False
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    labels: dict = field(default_factory=dict)
    #: the app role the users and groups get (its value or displayName); None = the default role
    app_role: str | None = None
    #: the schema profile (``<name>.v<version>``, profiles/) applied before the job starts
    schema_profile: str | None = None
    #: the post-rotation canary ``{"objectId", "objectType": "user"|"group"}``, kept in the notes
    canary: dict | None = None
    #: ``provisioningSettings.deletionThreshold`` as given: ``{"enabled": bool, "count"?: int}``;
    #: None = the default (:func:`effective_deletion_threshold`)
    deletion_threshold: dict | None = None

    @property
    def key(self) -> str:
        return instance_key(self.display_name)

    def to_dict(self) -> dict:
        """Back to request JSON (credentials stay references)."""
        result: dict[str, Any] = {
            "applicationTemplate": self.application_template.to_dict(),
            "displayName": self.display_name,
            "credentials": credentials_to_json(self.credentials),
        }
        if self.synchronization_template_id:
            result["synchronizationTemplateId"] = self.synchronization_template_id
        if self.notification_email:
            result["notificationEmail"] = self.notification_email
        if self.sync_all:
            result["syncAll"] = True
        if self.schema_profile:
            result["schemaProfile"] = self.schema_profile
        if self.deletion_threshold is not None:
            result["provisioningSettings"] = {"deletionThreshold": dict(self.deletion_threshold)}
        if self.users or self.groups:
            result["assignments"] = {"users": list(self.users), "groups": list(self.groups)}
            if self.app_role:
                result["assignments"]["appRole"] = self.app_role
        if self.labels:
            result["labels"] = dict(self.labels)
        if self.canary:
            result["canary"] = dict(self.canary)
        return result


@dataclass(frozen=True)
class ProvisioningRequest:
    """A validated request: the batch id and its instances."""

    request_id: str
    instances: tuple[InstanceSpec, ...]

    def to_dict(self) -> dict:
        return {"requestId": self.request_id, "instances": [i.to_dict() for i in self.instances]}


def normalize_name(display_name: str) -> str:
    """The form two display names are compared in: NFC, case-folded."""
    return unicodedata.normalize("NFC", display_name).casefold()


def instance_key(display_name: str) -> str:
    """Deterministic key of an app instance in the fleet: 20 hex chars of SHA-256 of the normalised name.

    Why the display name alone: a request describes desired state, so submitting the same
    displayName again (even in a new batch) must reach the same app, not create a second one. The key
    goes into the service principal's correlation tag (``<tag>:key:<key>``) and, combined with the
    request id (:func:`child_instance_id`), into child orchestration ids.
    """
    return hashlib.sha256(("v1|" + normalize_name(display_name)).encode("utf-8")).hexdigest()[:20]


def effective_deletion_threshold(threshold: Mapping[str, Any] | None) -> dict:
    """What is saved for a request's ``deletionThreshold``: ``{"enabled": bool, "count": int | None}``.

    None (not set) is on with :data:`DEFAULT_DELETION_THRESHOLD`; on without a count is on with the
    default; off has no count.
    """
    if threshold is None:
        return {"enabled": True, "count": DEFAULT_DELETION_THRESHOLD}
    if not threshold.get("enabled"):
        return {"enabled": False, "count": None}
    count = threshold.get("count")
    return {"enabled": True, "count": int(count) if isinstance(count, int) else DEFAULT_DELETION_THRESHOLD}


def instance_tag(correlation_tag: str, key: str) -> str:
    """The per-instance tag put on the service principal."""
    return f"{correlation_tag}:key:{key}"


def label_tag(correlation_tag: str, name: str, value: str) -> str:
    """A label stored as a service principal tag."""
    return f"{correlation_tag}:label:{name}={value}"


# -- validation ---------------------------------------------------------------------------------

class _Collector:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def unknown_fields(self, obj: dict, allowed: tuple[str, ...], path: str) -> None:
        for name in obj:
            if name not in allowed:
                self.add(f"{path}.{name}" if path else str(name), "unknown field")

    def string(self, value: Any, path: str, pattern: str, what: str, max_len: int | None = None) -> str | None:
        if not isinstance(value, str):
            self.add(path, f"must be a string ({what})")
            return None
        if max_len is not None and len(value) > max_len:
            self.add(path, f"must be at most {max_len} characters")
            return None
        if not _RE[pattern].fullmatch(value):
            self.add(path, f"invalid value: {what}")
            return None
        return value


def _close_key(key: str) -> str | None:
    for known in SECRET_KEYS + MANAGED_KEYS:
        if known.casefold() == str(key).casefold():
            return known
    return None


def parse_credentials(obj: Any, path: str = "credentials", c: _Collector | None = None) -> dict:
    """Credential references -> ``{key: str | SecretRef}``; problems go to ``c`` or raise InvalidRequest."""
    own = c is None
    c = c or _Collector()
    result: dict[str, str | SecretRef] = {}
    if not isinstance(obj, dict):
        c.add(path, "must be an object mapping secret keys (e.g. SecretToken) to values or Key Vault references")
    elif not obj:
        c.add(path, "must name at least one credential (e.g. BaseAddress and SecretToken)")
    else:
        for key, value in obj.items():
            where = f"{path}.{key}"
            if key in MANAGED_KEYS:
                c.add(where, "is set by the service: use 'syncAll' / 'notificationEmail' / 'provisioningSettings' instead")
                continue
            if key not in SECRET_KEYS:
                close = _close_key(key)
                hint = f" (keys are case-sensitive: did you mean '{close}'?)" if close else ""
                c.add(where, "unknown synchronization secret key" + hint)
                continue
            if isinstance(value, dict):
                extra = [k for k in value if k != "keyVaultSecret"]
                if extra or "keyVaultSecret" not in value:
                    c.add(where, "a reference must be exactly {\"keyVaultSecret\": \"<secret name>\"}")
                    continue
                name = c.string(value["keyVaultSecret"], where + ".keyVaultSecret", "kv",
                                "a Key Vault secret name (1-127 letters, digits or '-')")
                if name:
                    result[key] = SecretRef(name)
            elif isinstance(value, str):
                if key not in LITERAL_KEYS:
                    # The value itself is never echoed: it may be a pasted secret.
                    c.add(where, "is secret: give a Key Vault reference {\"keyVaultSecret\": \"<name>\"}, not a value")
                    continue
                if not value or len(value) > MAX_LITERAL or any(ord(ch) < 32 for ch in value):
                    c.add(where, f"must be 1-{MAX_LITERAL} printable characters")
                    continue
                if key in URL_KEYS and not _RE["https"].fullmatch(value):
                    c.add(where, "must be an https:// URL without user:password@ (a credential goes to Key Vault)")
                    continue
                if key in URL_KEYS and _secret_query(value):
                    c.add(where, "carries a secret in its query string: put the URL in Key Vault and give "
                                 "{\"keyVaultSecret\": \"<name>\"}")
                    continue
                result[key] = value
            else:
                c.add(where, "must be a string or {\"keyVaultSecret\": \"<secret name>\"}")
    if own and c.problems:
        raise InvalidRequest(c.problems)
    return result


def credentials_to_json(credentials: Credentials) -> dict:
    """``{key: str | SecretRef}`` -> request JSON."""
    return {k: (v.to_dict() if isinstance(v, SecretRef) else v) for k, v in credentials.items()}


def _parse_template(obj: Any, path: str, c: _Collector) -> TemplateRef | None:
    if not isinstance(obj, dict):
        c.add(path, "must be an object with 'id' or 'displayName'")
        return None
    c.unknown_fields(obj, ("id", "displayName"), path)
    if ("id" in obj) == ("displayName" in obj):
        c.add(path, "give exactly one of 'id' or 'displayName'")
        return None
    if "id" in obj:
        value = c.string(obj["id"], path + ".id", "guid", "an application template id (GUID)")
        return TemplateRef(id=value) if value else None
    value = c.string(obj["displayName"], path + ".displayName", "displayName", "a gallery template name", 256)
    return TemplateRef(display_name=value) if value else None


def parse_template_ref(obj: Any, path: str = "applicationTemplate") -> TemplateRef:
    """An application template reference ``{id}`` or ``{displayName}``; raise InvalidRequest naming the field."""
    c = _Collector()
    ref = _parse_template(obj, path, c)
    if c.problems or ref is None:
        raise InvalidRequest(c.problems or [Problem(path, "is required")])
    return ref


def _parse_assignments(obj: Any, path: str, c: _Collector) -> tuple[tuple[str, ...], tuple[str, ...], str | None]:
    if not isinstance(obj, dict):
        c.add(path, "must be an object with 'users' and/or 'groups'")
        return (), (), None
    c.unknown_fields(obj, ("users", "groups", "appRole"), path)
    out: dict[str, tuple[str, ...]] = {}
    for kind, pattern, what in (("users", "user", "a user id or userPrincipalName"),
                                ("groups", "principal", "a group id or display name")):
        items = obj.get(kind, [])
        if not isinstance(items, list):
            c.add(f"{path}.{kind}", "must be a list")
            out[kind] = ()
            continue
        if len(items) > MAX_ASSIGNEES:
            c.add(f"{path}.{kind}", f"at most {MAX_ASSIGNEES} entries")
        values = [c.string(v, f"{path}.{kind}[{i}]", pattern, what) for i, v in enumerate(items)]
        out[kind] = tuple(v for v in values if v)
    app_role = None
    if obj.get("appRole") is not None:
        # an app role of the service principal by value or displayName; for a role-import template
        # (AWS Single-Account Access) the role exists only after the job's first cycle, so the
        # workflow assigns it then (docs/request-format.md)
        app_role = c.string(obj["appRole"], f"{path}.appRole", "principal",
                            "an app role's value or displayName (1-256 characters)")
        if app_role and not (obj.get("users") or obj.get("groups")):
            c.add(f"{path}.appRole", "names the role the listed users and groups get: list at least one user or group")
    return out["users"], out["groups"], app_role


def _parse_labels(obj: Any, path: str, c: _Collector) -> dict:
    if not isinstance(obj, dict):
        c.add(path, "must be an object of name: value strings")
        return {}
    if len(obj) > MAX_LABELS:
        c.add(path, f"at most {MAX_LABELS} labels")
    labels = {}
    for name, value in obj.items():
        if not _RE["labelKey"].fullmatch(str(name)):
            c.add(f"{path}.{name}", "label names are 1-32 lower-case letters, digits, '_', '.' or '-'")
            continue
        text = c.string(value, f"{path}.{name}", "labelValue",
                        "up to 64 letters, digits, spaces or _ . : / @ -")
        if text is not None:
            labels[name] = text
    return labels


def _parse_canary(obj: Any, path: str, c: _Collector) -> dict | None:
    """``{"objectId": <GUID>, "objectType": "user" | "group"}``: whom a rotation provisions on demand."""
    if not isinstance(obj, dict):
        c.add(path, 'must be an object {"objectId": <object id>, "objectType": "user" or "group"}')
        return None
    before = len(c.problems)
    c.unknown_fields(obj, ("objectId", "objectType"), path)
    if "objectId" not in obj:
        c.add(path + ".objectId", "is required")
    object_id = c.string(obj["objectId"], path + ".objectId", "guid", "an object id (GUID)") if "objectId" in obj else None
    kind = obj.get("objectType")
    if kind not in CANARY_OBJECT_TYPES:
        c.add(path + ".objectType", "is required: 'user' or 'group'" if "objectType" not in obj else "must be 'user' or 'group'")
    if len(c.problems) > before or object_id is None:
        return None
    return {"objectId": object_id, "objectType": kind}


def _parse_threshold(obj: Any, path: str, c: _Collector) -> dict | None:
    if not isinstance(obj, dict):
        c.add(path, "must be an object {\"enabled\": true|false, \"count\"?: <deletions>}")
        return None
    c.unknown_fields(obj, DELETION_THRESHOLD_FIELDS, path)
    enabled, count = obj.get("enabled"), obj.get("count")
    ok = True
    if not isinstance(enabled, bool):
        c.add(f"{path}.enabled", "is required: true or false (prevent accidental deletions on or off)")
        ok = False
    if count is not None:
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_DELETION_THRESHOLD:
            c.add(f"{path}.count", f"must be an integer from 1 to {MAX_DELETION_THRESHOLD} (deletions per cycle)")
            ok = False
        elif enabled is False:
            c.add(f"{path}.count", "applies only when enabled is true")
            ok = False
    if not ok:
        return None
    return {"enabled": enabled, **({"count": count} if count is not None else {})}


def _parse_provisioning_settings(obj: Any, path: str, c: _Collector) -> tuple[dict | None, str | None]:
    """``provisioningSettings``: the deletion threshold and the notification email (both optional)."""
    if not isinstance(obj, dict):
        c.add(path, "must be an object with 'deletionThreshold' and/or 'notificationEmail'")
        return None, None
    c.unknown_fields(obj, PROVISIONING_SETTINGS_FIELDS, path)
    threshold = _parse_threshold(obj["deletionThreshold"], path + ".deletionThreshold", c) \
        if obj.get("deletionThreshold") is not None else None
    email = None
    if obj.get("notificationEmail") is not None:
        email = c.string(obj["notificationEmail"], path + ".notificationEmail", "email", "an email address", 254)
    return threshold, email


def _parse_instance(obj: Any, path: str, c: _Collector) -> InstanceSpec | None:
    if not isinstance(obj, dict):
        c.add(path, "must be an object")
        return None
    before = len(c.problems)
    c.unknown_fields(obj, INSTANCE_FIELDS, path)
    for required in REQUIRED_INSTANCE_FIELDS:
        if required not in obj:
            c.add(f"{path}.{required}", "is required")
    template = _parse_template(obj["applicationTemplate"], path + ".applicationTemplate", c) \
        if "applicationTemplate" in obj else None
    name = c.string(obj["displayName"], path + ".displayName", "displayName",
                    f"1-{MAX_DISPLAY_NAME} characters, no control characters, '<', '>' or edge spaces",
                    MAX_DISPLAY_NAME) if "displayName" in obj else None
    credentials = parse_credentials(obj["credentials"], path + ".credentials", c) if "credentials" in obj else {}
    sync_template = None
    if obj.get("synchronizationTemplateId") is not None:
        sync_template = c.string(obj["synchronizationTemplateId"], path + ".synchronizationTemplateId",
                                 "syncTemplate", "a synchronization template id such as 'aws' or 'scim'")
    email = None
    if obj.get("notificationEmail") is not None:
        email = c.string(obj["notificationEmail"], path + ".notificationEmail", "email", "an email address", 254)
    threshold = None
    if obj.get("provisioningSettings") is not None:
        threshold, settings_email = _parse_provisioning_settings(obj["provisioningSettings"],
                                                                 path + ".provisioningSettings", c)
        if settings_email is not None:
            if email is not None and email != settings_email:
                c.add(path + ".provisioningSettings.notificationEmail",
                      "differs from notificationEmail: give the address once")
            email = settings_email
    sync_all = obj.get("syncAll", False)
    if not isinstance(sync_all, bool):
        c.add(path + ".syncAll", "must be true or false")
    users, groups, app_role = _parse_assignments(obj["assignments"], path + ".assignments", c) \
        if "assignments" in obj else ((), (), None)
    labels = _parse_labels(obj["labels"], path + ".labels", c) if "labels" in obj else {}
    profile = None
    if obj.get("schemaProfile") is not None:
        from core import schema_profiles  # the profile must exist and be well-formed (profiles/)

        try:
            profile = schema_profiles.ref(schema_profiles.load(obj["schemaProfile"], path=path + ".schemaProfile"))
        except InvalidRequest as exc:
            for problem in exc.problems:
                c.add(problem.path if problem.path.startswith(path) else f"{path}.schemaProfile.{problem.path}",
                      problem.message)
    canary = _parse_canary(obj["canary"], path + ".canary", c) if obj.get("canary") is not None else None
    if len(c.problems) > before or template is None or name is None:
        return None
    return InstanceSpec(display_name=name, application_template=template, credentials=credentials,
                        synchronization_template_id=sync_template, notification_email=email,
                        sync_all=bool(sync_all), users=users, groups=groups, labels=labels, app_role=app_role,
                        schema_profile=profile, canary=canary, deletion_threshold=threshold)


def validate_request(doc: Any, max_instances: int = MAX_INSTANCES) -> list[Problem]:
    """Every problem of a request document (empty list = valid)."""
    try:
        parse_request(doc, max_instances)
    except InvalidRequest as exc:
        return exc.problems
    return []


_MAX_SCAN_DEPTH = 32


def _unencodable(node: Any, path: str, out: list[Problem], depth: int = 0) -> None:
    """Strings that are not Unicode text: JSON's ``\\ud800`` escapes decode to lone surrogates, which
    pass the patterns but cannot be encoded (the instance key hashes the UTF-8 display name)."""
    if depth > _MAX_SCAN_DEPTH:
        return  # deeper than any valid request; its shape is reported by the checks below
    if isinstance(node, str):
        try:
            node.encode("utf-8")
        except UnicodeEncodeError:
            out.append(Problem(path or "$", "contains a lone surrogate escape (\\ud800-\\udfff); send Unicode text"))
    elif isinstance(node, dict):
        for key, value in node.items():
            child = f"{path}.{key}" if path else str(key)
            try:
                str(key).encode("utf-8")
            except UnicodeEncodeError:
                out.append(Problem(path or "$", "a field name contains a lone surrogate escape"))
                continue
            _unencodable(value, child, out, depth + 1)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _unencodable(value, f"{path}[{index}]", out, depth + 1)


def parse_request(doc: Any, max_instances: int = MAX_INSTANCES) -> ProvisioningRequest:
    """Validate a request document; raise :class:`InvalidRequest` listing every problem with its path."""
    c = _Collector()
    if not isinstance(doc, dict):
        raise InvalidRequest([Problem("$", "the request must be a JSON object")])
    text_problems: list[Problem] = []
    _unencodable(doc, "", text_problems)
    if text_problems:
        raise InvalidRequest(text_problems)
    c.unknown_fields(doc, REQUEST_FIELDS, "")
    request_id = None
    if "requestId" not in doc:
        c.add("requestId", "is required")
    else:
        request_id = c.string(doc["requestId"], "requestId", "requestId",
                              "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    instances: list[InstanceSpec] = []
    raw = doc.get("instances")
    if "instances" not in doc:
        c.add("instances", "is required")
    elif not isinstance(raw, list):
        c.add("instances", "must be a list")
    elif not raw:
        c.add("instances", "must contain at least one instance")
    elif len(raw) > max_instances:
        c.add("instances", f"at most {max_instances} instances per request (got {len(raw)}); split the batch")
    else:
        seen: dict[str, int] = {}
        for index, item in enumerate(raw):
            path = f"instances[{index}]"
            spec = _parse_instance(item, path, c)
            if isinstance(item, dict) and isinstance(item.get("displayName"), str):
                norm = normalize_name(item["displayName"])
                if norm in seen:
                    c.add(path + ".displayName", f"duplicate of instances[{seen[norm]}].displayName")
                    spec = None
                else:
                    seen[norm] = index
            if spec:
                instances.append(spec)
    if c.problems:
        raise InvalidRequest(c.problems)
    return ProvisioningRequest(request_id=str(request_id), instances=tuple(instances))


# -- JSON Schema ----------------------------------------------------------------------------------

def json_schema(max_instances: int = MAX_INSTANCES) -> dict:
    """The request's JSON Schema (draft 2020-12), generated from the same constants as the parser.

    Three rules cannot be written in JSON Schema and are checked only by :func:`parse_request`:
    duplicate display names (compared case-insensitively), the 'did you mean' key-case hint, and an
    ``assignments.appRole`` without any user or group.
    """
    ref = {"type": "object", "additionalProperties": False, "required": ["keyVaultSecret"],
           "properties": {"keyVaultSecret": {"type": "string", "pattern": KEY_VAULT_SECRET_PATTERN}}}
    literal = {"type": "string", "minLength": 1, "maxLength": MAX_LITERAL, "pattern": r"^[^\x00-\x1f]*$"}
    url_literal = {"type": "string", "maxLength": MAX_LITERAL, "pattern": HTTPS_URL_PATTERN}
    cred_props: dict[str, Any] = {}
    for key in SECRET_KEYS:
        if key in LITERAL_KEYS:
            cred_props[key] = {"oneOf": [url_literal if key in URL_KEYS else literal, {"$ref": "#/$defs/secretRef"}]}
        else:
            cred_props[key] = {"$ref": "#/$defs/secretRef"}
    principal = {"type": "string", "pattern": PRINCIPAL_PATTERN}
    instance = {
        "type": "object",
        "additionalProperties": False,
        "required": list(REQUIRED_INSTANCE_FIELDS),
        "properties": {
            "applicationTemplate": {
                "type": "object", "additionalProperties": False,
                "description": "Gallery template by id or by exact display name (exactly one).",
                "properties": {
                    "id": {"type": "string", "pattern": GUID_PATTERN},
                    "displayName": {"type": "string", "maxLength": 256, "pattern": DISPLAY_NAME_PATTERN},
                },
                "oneOf": [{"required": ["id"]}, {"required": ["displayName"]}],
            },
            "displayName": {"type": "string", "maxLength": MAX_DISPLAY_NAME, "pattern": DISPLAY_NAME_PATTERN,
                            "description": "Name of the new enterprise app; unique within the request."},
            "credentials": {"type": "object", "minProperties": 1, "additionalProperties": False,
                            "properties": cred_props,
                            "description": "Synchronization secrets; secret keys must be Key Vault references."},
            "synchronizationTemplateId": {"type": ["string", "null"], "pattern": SYNC_TEMPLATE_PATTERN},
            "notificationEmail": {"type": ["string", "null"], "maxLength": 254, "pattern": EMAIL_PATTERN},
            "syncAll": {"type": "boolean", "default": False},
            "provisioningSettings": {
                "type": ["object", "null"], "additionalProperties": False,
                "description": "Saved in the SyncNotificationSettings synchronization secret, as Graph stores it.",
                "properties": {
                    "deletionThreshold": {
                        "type": ["object", "null"], "additionalProperties": False, "required": ["enabled"],
                        "description": "Prevent accidental deletions: on/off and the most deletions a cycle may "
                                       f"make before the job is quarantined (default on, {DEFAULT_DELETION_THRESHOLD}).",
                        "properties": {"enabled": {"type": "boolean"},
                                       "count": {"type": "integer", "minimum": 1, "maximum": MAX_DELETION_THRESHOLD}},
                        "if": {"type": "object", "properties": {"enabled": {"const": False}}},
                        "then": {"not": {"required": ["count"]}},
                    },
                    "notificationEmail": {"type": ["string", "null"], "maxLength": 254, "pattern": EMAIL_PATTERN},
                },
            },
            "assignments": {
                "type": "object", "additionalProperties": False,
                "properties": {
                    "users": {"type": "array", "maxItems": MAX_ASSIGNEES,
                              "items": {"type": "string", "pattern": USER_PATTERN}},
                    "groups": {"type": "array", "maxItems": MAX_ASSIGNEES, "items": principal},
                    "appRole": {"type": "string", "pattern": PRINCIPAL_PATTERN,
                                "description": "App role (value or displayName) the users and groups get; "
                                               "for a role-import template it is assigned after the first cycle."},
                },
            },
            "labels": {"type": "object", "maxProperties": MAX_LABELS,
                       "propertyNames": {"pattern": LABEL_KEY_PATTERN},
                       "additionalProperties": {"type": "string", "pattern": LABEL_VALUE_PATTERN}},
            "schemaProfile": {"type": ["string", "null"], "pattern": r"^[a-z0-9][a-z0-9-]{0,62}\.v[0-9]{1,6}$",
                              "description": "Schema profile <name>.v<version> (profiles/, docs/configuration-as-code.md) "
                                             "applied before the job starts."},
            "canary": {"type": ["object", "null"], "additionalProperties": False, "required": ["objectId", "objectType"],
                       "properties": {"objectId": {"type": "string", "pattern": GUID_PATTERN},
                                      "objectType": {"type": "string", "pattern": "^(user|group)$"}},
                       "description": "Post-rotation canary: the user or group provisioned on demand right after a "
                                      "credential rotation saves this instance's new Key Vault version."},
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/entra-provisioning-fleet/schemas/provisioning-request.schema.json",
        "title": "Provisioning request",
        "description": "A batch of Entra ID gallery app instances to create and provision (see docs/request-format.md).",
        "type": "object",
        "additionalProperties": False,
        "required": list(REQUEST_FIELDS),
        "properties": {
            "requestId": {"type": "string", "pattern": REQUEST_ID_PATTERN},
            "instances": {"type": "array", "minItems": 1, "maxItems": max_instances, "items": {"$ref": "#/$defs/instance"}},
        },
        "$defs": {"instance": instance, "secretRef": ref},
    }
