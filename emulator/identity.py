"""Entra ID (v2.0 endpoint) stand-in: OpenID configuration and the client-credentials token grant.

Only what ``azure-identity``'s ``ClientSecretCredential`` (through MSAL, with instance discovery
disabled) needs: ``GET /{tenant}/v2.0/.well-known/openid-configuration`` and
``POST /{tenant}/oauth2/v2.0/token`` (MSAL's ``Authority`` reads the first and posts to the
``token_endpoint`` it names:
https://github.com/AzureAD/microsoft-authentication-library-for-python/blob/dev/msal/authority.py).
Tokens are HS256 JWTs signed with the tenant's emulator key; the ``roles`` claim is read from the client's service
principal's Graph app role assignments at issue time, so grants made through Graph take effect in
the next token, as in Entra.

Token lifetimes use real wall-clock time (not the simulated clock): azure-identity caches tokens
by real time, and a sped-up clock must not make every cached token look expired.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlparse

import jwt

from emulator.directory import Directory
from emulator.permissions import GRAPH_APP_ID, GRAPH_AUDIENCE, VAULT_AUDIENCE

TOKEN_LIFETIME_SECONDS = 3600


class TokenRequestError(Exception):
    """An OAuth error answer in Entra's shape (``error``, ``error_description``, ``error_codes``)."""

    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.body = {
            "error": error,
            "error_description": f"AADSTS{code}: {description}",
            "error_codes": [code],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
        }


@dataclass(frozen=True)
class Caller:
    """The authenticated application behind a Graph or Key Vault request."""

    client_id: str
    sp_id: str
    roles: frozenset[str]
    audience: str


def openid_configuration(origin: str, tenant: str) -> dict:
    base = f"{origin}/{tenant}"
    return {
        "token_endpoint": f"{base}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "jwks_uri": f"{origin}/{tenant}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{base}/v2.0",
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": f"{origin}/oidc/userinfo",
        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "roles"],
        "tenant_region_scope": "EU",
        "cloud_instance_name": "emulator",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
    }


def audience_for_scope(scope: str, origin: str) -> str:
    """Map a requested ``.default`` scope to the token audience (Graph or Key Vault)."""
    scopes = [s for s in scope.split() if s not in ("openid", "profile", "offline_access")]
    if len(scopes) != 1 or not scopes[0].endswith("/.default"):
        raise TokenRequestError(
            400,
            "invalid_scope",
            1002012,
            f"The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
        )
    resource = scopes[0][: -len("/.default")].rstrip("/")
    parsed = urlparse(resource)
    own = urlparse(origin)
    if resource in (GRAPH_AUDIENCE, GRAPH_APP_ID, "https://graph.microsoft.com/v1.0", "https://graph.microsoft.com/beta"):
        return GRAPH_AUDIENCE
    if parsed.hostname and parsed.hostname.endswith("vault.azure.net"):
        return VAULT_AUDIENCE
    if parsed.hostname == own.hostname and parsed.port == own.port:
        # A scope built from the emulator's own URL (GRAPH_BASE_URL + "/.default").
        return VAULT_AUDIENCE if parsed.path.startswith("/secrets") else GRAPH_AUDIENCE
    raise TokenRequestError(
        400,
        "invalid_resource",
        500011,
        f"The resource principal named {resource} was not found in the tenant. This can happen if the application has not been installed by the administrator of the tenant.",
    )


def issue_token(directory: Directory, form: dict[str, str], tenant: str, origin: str) -> dict:
    """Handle a token request; return the JSON body MSAL expects."""
    if not directory.is_tenant(tenant):
        raise TokenRequestError(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
    grant = form.get("grant_type")
    if not grant:
        raise TokenRequestError(
            400, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'."
        )
    if grant != "client_credentials":
        raise TokenRequestError(
            400, "unsupported_grant_type", 70003, f"The app requested an unsupported grant type '{grant}'."
        )
    client_id = form.get("client_id", "")
    client = directory.clients.get(client_id)
    if client is None:
        raise TokenRequestError(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory '{directory.tenant_id}'.",
        )
    if form.get("client_secret") != client["secret"]:
        raise TokenRequestError(
            401,
            "invalid_client",
            7000215,
            f"Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'.",
        )
    if not form.get("scope"):
        raise TokenRequestError(
            400, "invalid_request", 900144, "The request body must contain the following parameter: 'scope'."
        )
    audience = audience_for_scope(form["scope"], origin)
    token = mint_token(directory, client, audience)
    return {"token_type": "Bearer", "expires_in": TOKEN_LIFETIME_SECONDS, "ext_expires_in": TOKEN_LIFETIME_SECONDS, "access_token": token}


def mint_token(directory: Directory, client: dict, audience: str, lifetime: int = TOKEN_LIFETIME_SECONDS, **overrides) -> str:
    """Sign an app-only access token for ``client`` (``overrides`` replace claims; for tests)."""
    now = int(time.time())
    sp_id = client["servicePrincipalId"]
    claims = {
        "aud": audience,
        "iss": f"https://sts.windows.net/{directory.tenant_id}/",
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "appid": client["clientId"],
        "azp": client["clientId"],
        "appidacr": "1",
        "idtyp": "app",
        "oid": sp_id,
        "sub": sp_id,
        "tid": directory.tenant_id,
        "roles": directory.roles_of(sp_id) if sp_id in directory.service_principals else [],
        "ver": "1.0",
    }
    claims.update(overrides)
    return jwt.encode(claims, directory.signing_key, algorithm="HS256")


def managed_identity_header(directory: Directory) -> str:
    """The ``IDENTITY_HEADER`` secret of the managed identity endpoint (stable per tenant)."""
    import hashlib

    return hashlib.sha256(f"msi:{directory.signing_key}".encode()).hexdigest()[:32]


class InvalidToken(Exception):
    """Why a bearer token was refused (the message is safe to show: it names no secret)."""


def verify_bearer(directory: Directory, header: str | None, audience: str) -> Caller:
    """Validate an ``Authorization`` header for ``audience``; raise ``InvalidToken`` with a reason."""
    if not header:
        raise InvalidToken("Access token is empty.")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("Access token is empty.")
    try:
        claims = jwt.decode(
            token.strip(),
            directory.signing_key,
            algorithms=["HS256"],
            options={"verify_aud": False, "verify_exp": False, "verify_nbf": False},
        )
    except jwt.InvalidSignatureError:
        raise InvalidToken("Access token validation failure. Invalid signature.") from None
    except jwt.PyJWTError:
        raise InvalidToken("IDX14100: JWT is not well formed, there are no dots (.).") from None
    now = time.time()
    if claims.get("exp", 0) <= now or claims.get("nbf", 0) > now + 300:
        raise InvalidToken("Access token has expired or is not yet valid.")
    valid_audiences = {audience, f"{audience}/"}
    if audience == GRAPH_AUDIENCE:
        valid_audiences.add(GRAPH_APP_ID)
    if claims.get("aud") not in valid_audiences:
        raise InvalidToken("Access token validation failure. Invalid audience.")
    if claims.get("tid") != directory.tenant_id:
        raise InvalidToken("Access token validation failure. Invalid issuer or tenant.")
    return Caller(
        client_id=str(claims.get("appid", "")),
        sp_id=str(claims.get("oid", "")),
        roles=frozenset(claims.get("roles", [])),
        audience=claims["aud"],
    )
