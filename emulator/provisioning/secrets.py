"""Synchronization secrets (``PUT/GET /servicePrincipals/{id}/synchronization/secrets``).

Keys are members of Graph's ``synchronizationSecret`` enum and are case-sensitive: the real
service fails a wrong-case key such as ``baseAddress`` with 500 InternalError "Requested value
'baseAddress' was not found." (OBS, msgraph-beta-sdk-java#372). Secret values never leave this
module except to the simulated target: GET masks them as ``*`` and no error message repeats one.
"""

from __future__ import annotations

from emulator.errors import GraphError

SECRET_KEYS = (
    "None UserName Password SecretToken AppKey BaseAddress ClientIdentifier ClientSecret SingleSignOnType "
    "Sandbox Url Domain ConsumerKey ConsumerSecret TokenKey TokenExpiration Oauth2AccessToken "
    "Oauth2AccessTokenCreationTime Oauth2RefreshToken SyncAll InstanceName Oauth2ClientId Oauth2ClientSecret "
    "CompanyId UpdateKeyOnSoftDelete SynchronizationSchedule SystemOfRecord SandboxName EnforceDomain "
    "SyncNotificationSettings SkipOutOfScopeDeletions Oauth2AuthorizationCode Oauth2RedirectUri "
    "ApplicationTemplateIdentifier Oauth2TokenExchangeUri Oauth2AuthorizationUri AuthenticationType Server "
    "PerformInboundEntitlementGrants HardDeletesEnabled SyncAgentCompatibilityKey SyncAgentADContainer "
    "ValidateDomain TestReferences ConnectionString"
).split()
_KEY_SET = frozenset(SECRET_KEYS)

# Keys whose values GET returns as "*". Which keys are masked is OBS (Terraform reads "*" back for
# secrets; SyncNotificationSettings and Domain come back in clear); the list is the credential-like ones.
SENSITIVE_KEYS = frozenset(
    "Password SecretToken AppKey ClientSecret ConsumerSecret TokenKey Oauth2AccessToken Oauth2RefreshToken "
    "Oauth2ClientSecret Oauth2AuthorizationCode ConnectionString SyncAgentCompatibilityKey".split()
)


def parse_pairs(body: object, settings_status: int, field_names: tuple[str, ...] = ("value", "credentials")) -> list[tuple[str, str]]:
    """Validate a ``{"value": [{key, value}, ...]}`` body into (key, value) pairs.

    The docs' parameter table says ``credentials`` while every example sends ``value``; both are
    accepted (``value`` first). Bad shapes are 400; unknown or wrong-case keys are
    ``settings_status`` (500 InternalError by default, mirroring the real service).
    """
    if not isinstance(body, dict):
        raise GraphError(400, "BadRequest", "The request body must be a JSON object.")
    items = None
    for name in field_names:
        if name in body:
            items = body[name]
            break
    if not isinstance(items, list):
        raise GraphError(400, "BadRequest", f"The request body must have a '{field_names[0]}' array of {{key, value}} pairs.")
    pairs: list[tuple[str, str]] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise GraphError(400, "BadRequest", f"{field_names[0]}[{index}].key is required and must be a string.")
        value = item.get("value")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise GraphError(400, "BadRequest", f"{field_names[0]}[{index}].value must be a string.")
        check_key(item["key"], settings_status)
        pairs.append((item["key"], value))
    return pairs


def check_key(key: str, status: int) -> None:
    """Raise the real service's error for a key that is not an exact synchronizationSecret name."""
    if key in _KEY_SET:
        return
    if status >= 500:
        raise GraphError(500, "InternalError", f"Requested value '{key}' was not found.")
    hint = next((k for k in SECRET_KEYS if k.lower() == key.lower()), None)
    suffix = f" Did you mean '{hint}'? Keys are case-sensitive." if hint else ""
    raise GraphError(400, "BadRequest", f"Requested value '{key}' was not found.{suffix}")


def apply_put(stored: dict[str, str], pairs: list[tuple[str, str]], mode: str) -> dict[str, str]:
    """The stored secrets after a PUT: ``merge`` (the emulator's default) or ``replace``; an empty value removes the key.

    Merge keeps every saved key the PUT does not name, so a client that drops a credential must
    clear it with an empty value, as Terraform's azuread provider does
    (https://github.com/hashicorp/terraform-provider-azuread/blob/main/internal/services/synchronization/synchronization_secret_resource.go).
    """
    result = {} if mode == "replace" else dict(stored)
    for key, value in pairs:
        if value == "":
            result.pop(key, None)
        else:
            result[key] = value
    return result


def masked(stored: dict[str, str]) -> dict:
    """The GET body: every saved key, sensitive values replaced by ``*``."""
    return {"value": [{"key": k, "value": "*" if k in SENSITIVE_KEYS else v} for k, v in stored.items()]}
