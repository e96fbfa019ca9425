"""One Graph client per process: base URL, bearer tokens, timeouts, in-call retries, paging, errors.

Why here and nowhere else: every resource module calls :class:`GraphClient`, so token handling,
the retry budget, the error envelope and log redaction are written (and tested) once.

* Tokens come from an azure-identity credential (``DefaultAzureCredential`` built by
  :mod:`core.clients`): managed identity in Azure, the emulator's client secret locally, same code.
* 429 (and 503/504 when the request is safe to repeat) are retried with ``Retry-After`` or jittered
  backoff inside a small cumulative budget; beyond it :class:`~core.errors.GraphThrottled` carries
  the wait to the orchestrator.
* Writes (POST, PATCH, PUT, DELETE) are paced app-wide (:mod:`core.graph.write_limit`,
  ``GRAPH_WRITES_PER_SECOND``): every worker process and instance of the app takes its write slots
  from one schedule in the app's storage account, so together they stay under Graph's identity
  write limit per app and tenant instead of each sending the whole rate and collecting 429s. A 429
  on a write holds the later writes until its ``Retry-After``.
* Logs name the method, the path (no query values: filters carry user text) and the status; bodies
  are never logged. Callers pass ``secret_values`` for calls that carry credentials, and those
  values are scrubbed from any error message Graph echoes back.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import urlsplit

import requests

from core import errors
from core.identity import decode_claims, token_failure_is_transient
from core.graph import write_limit
from core.graph.retry import backoff_delay, parse_retry_after, should_retry
from core.settings import Settings

logger = logging.getLogger(__name__)

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_TOKEN_EARLY_REFRESH_SECONDS = 300
_MAX_MESSAGE = 600
USER_AGENT = "entra-provisioning-fleet/0.1"


def path_template(path: str) -> str:
    """``/servicePrincipals/5b3...`` -> ``/servicePrincipals/{id}``: for messages and metrics."""
    return _GUID.sub("{id}", urlsplit(path).path)


def scrub(text: str, secret_values: Iterable[str]) -> str:
    """Replace every secret value (longest first) with ``***``."""
    for value in sorted((v for v in secret_values if v and len(v) >= 3), key=len, reverse=True):
        text = text.replace(value, "***")
    return text


WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
#: requests' failures of a sent request whose answer is missing or broken (the body cut off while read).
_LOST = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
         requests.exceptions.ContentDecodingError)


class Pacer:
    """Keeps at least ``interval`` seconds between the starts of successive requests (thread-safe).

    Each caller reserves the next free slot under a lock and sleeps outside it, so concurrent
    callers queue up evenly spaced. Used for writes (:class:`WritePacer`) and for the provisioning
    logs' 5 requests per 10 s (:mod:`core.graph.provisioning_logs`).
    """

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = interval
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> float:
        """Block until the next request may go; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        delay = slot - now
        if delay > 0:
            self._sleep(delay)
        return delay

    def backoff(self, seconds: float) -> None:
        """Graph answered 429 with ``Retry-After: seconds``: no later request before then."""
        with self._lock:
            self._next = max(self._next, self._clock() + seconds)


class WritePacer(Pacer):
    """At most ``rate`` Graph writes per second from this process, evenly spaced (a token bucket of one).

    Why: Graph allows 3,000 identity writes per 150 s per app and tenant (20 per second; the write
    quota table of https://learn.microsoft.com/graph/throttling-limits#identity-and-access-service-limits), and one worker runs many activities at once. Without pacing they
    write in bursts, collect 429s, sleep on Retry-After and retry in bursts again; spacing the
    writes ``1 / rate`` seconds apart keeps the process under the limit, so the writes go through
    the first time. No burst allowance: Graph's window is not documented finely enough to spend one
    safely (UNCONFIRMED), and the spacing costs a single write at most ``1 / rate`` seconds. Only
    this process is paced: the app's clients use :mod:`core.graph.write_limit` instead, which holds
    the rate across processes; this class is for callers that give their own pacer.
    """

    def __init__(self, rate: float, monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0:
            raise ValueError("rate must be greater than 0")
        super().__init__(1.0 / rate, monotonic, sleep)

    def acquire(self) -> float:
        """Wait for this write's slot; return the seconds waited."""
        return self.wait()


_pacers: dict[float, WritePacer] = {}
_pacers_lock = threading.Lock()


def shared_write_pacer(rate: float) -> WritePacer | None:
    """The process's pacer for ``rate`` writes per second (every client of the process shares it); 0: none."""
    if rate <= 0:
        return None
    with _pacers_lock:
        return _pacers.setdefault(rate, WritePacer(rate))


class GraphClient:
    """Synchronous Graph client over one ``requests.Session``.

    ``credential`` is any azure-core ``TokenCredential``. ``sleep``/``monotonic``/``rng`` are
    parameters so tests can observe waits; production uses the defaults.
    """

    def __init__(
        self,
        settings: Settings,
        credential: Any,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: Any = None,
        write_pacer: Any = True,
    ) -> None:
        self.settings = settings
        self.root = settings.graph_root
        self._origin = "{0.scheme}://{0.netloc}".format(urlsplit(settings.graph_base_url))
        self._credential = credential
        self._session = session or requests.Session()
        self._sleep = sleep
        self._rng = rng
        self._timeout = (settings.graph_connect_timeout_seconds, settings.graph_read_timeout_seconds)
        self._token: Any = None
        self._token_lock = threading.Lock()
        # True: the app-wide limiter for GRAPH_WRITES_PER_SECOND (core.graph.write_limit, per app+tenant
        # of the token); None/False: no pacing; or a given pacer (anything with acquire() and backoff())
        self._app_write_limit = write_pacer is True and settings.graph_writes_per_second > 0
        self._write_pacer = None if write_pacer is True else (write_pacer or None)
        self._limit_keys: tuple[str, str] | None = None  # (token, key) of the last token decoded

    # -- tokens ---------------------------------------------------------------------------------
    def _bearer(self, refresh: bool = False) -> str:
        with self._token_lock:
            if refresh or self._token is None or self._token.expires_on - _TOKEN_EARLY_REFRESH_SECONDS < time.time():
                try:
                    self._token = self._credential.get_token(self.settings.graph_scope)
                except Exception as exc:  # azure-identity raises ClientAuthenticationError and others
                    # The credential's message can be long; it never holds the client secret.
                    text = f"could not get a Graph token for {self.settings.graph_scope}: " \
                           f"{type(exc).__name__}: {str(exc)[:300]}"
                    if token_failure_is_transient(exc):  # the token endpoint is unreachable or busy
                        raise errors.GraphTransient(text, code="TokenUnavailable") from None
                    raise errors.PermissionDenied(text, code="AuthenticationFailed") from None
            return self._token.token

    def _pacer_for_writes(self) -> Any:
        """The pacer of this client's writes: a given one, or the app-wide limiter of the token's app+tenant."""
        if self._write_pacer is not None or not self._app_write_limit:
            return self._write_pacer
        token = self._bearer()
        if self._limit_keys is None or self._limit_keys[0] != token:
            self._limit_keys = (token, write_limit.limit_key(token))
        return write_limit.app_write_limiter(self.settings.graph_writes_per_second, self._limit_keys[1],
                                             self.settings.graph_write_limit_storage,
                                             self.settings.graph_write_limit_block)

    # -- core request ---------------------------------------------------------------------------
    def _url(self, path: str) -> str:
        if path.startswith("https://"):
            # nextLink: only follow links on the Graph origin, so the token never leaves it.
            if not path.startswith(self._origin + "/"):
                raise errors.GraphPermanent(f"refusing to follow a link off the Graph origin: {urlsplit(path).netloc}",
                                            code="UnexpectedLink")
            return path
        return self.root + path

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict | None = None,
        json: Any = None,
        idempotent: bool | None = None,
        secret_values: Iterable[str] = (),
    ) -> Any:
        """Send one Graph request with retries; return the JSON body (``None`` for 204).

        ``idempotent`` defaults to True for every method except POST. ``secret_values`` are scrubbed
        from error messages. Raises a :mod:`core.errors` ``GraphError`` subclass on failure.
        """
        method = method.upper()
        safe = (method != "POST") if idempotent is None else idempotent
        url = self._url(path)
        shown = path_template(path)
        budget = self.settings.graph_retry_budget_seconds
        max_attempts = self.settings.graph_max_attempts
        slept = 0.0
        attempt = 0
        refreshed = False
        secrets = tuple(secret_values)
        pacer = self._pacer_for_writes() if method in WRITE_METHODS else None
        while True:
            attempt += 1
            headers = {
                "Authorization": "Bearer " + self._bearer(),
                "Accept": "application/json",
                "client-request-id": str(uuid.uuid4()),
                "User-Agent": USER_AGENT,
            }
            if attempt > 1:
                headers["Retry-Attempt"] = str(attempt - 1)
            if pacer is not None:
                pacer.acquire()
            started = time.monotonic()
            try:
                response = self._session.request(
                    method, url, params=params, json=json, headers=headers, timeout=self._timeout
                )
            except _LOST as exc:
                elapsed = time.monotonic() - started
                # A connect failure never reached Graph; a read timeout, a dropped connection or a
                # broken body on a POST may hide a success (the caller looks before it repeats).
                repeatable = safe or isinstance(exc, requests.ConnectTimeout)
                kind = "Timeout" if isinstance(exc, requests.Timeout) else \
                    "ConnectionError" if isinstance(exc, requests.ConnectionError) else "BrokenResponse"
                logger.warning("Graph %s %s failed after %.0f ms: %s (attempt %d)", method, shown,
                               elapsed * 1000, kind, attempt)
                delay = backoff_delay(attempt, self._rng)
                if repeatable and attempt < max_attempts and slept + delay <= budget:
                    self._sleep(delay)
                    slept += delay
                    continue
                code = kind if repeatable else "OutcomeUnknown"
                raise errors.GraphTransient(f"{method} {shown} failed: {kind}", code=code) from None
            elapsed = time.monotonic() - started
            request_id = response.headers.get("request-id")
            logger.info("Graph %s %s -> %d in %.0f ms (request-id %s, attempt %d)", method, shown,
                        response.status_code, elapsed * 1000, request_id, attempt)
            status = response.status_code
            if status < 400:
                return self._body(response)
            if status == 401 and not refreshed:
                refreshed = True  # an expired or revoked token: get a fresh one once
                self._bearer(refresh=True)
                attempt -= 1
                continue
            if should_retry(status, safe):
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                delay = retry_after if retry_after is not None else backoff_delay(attempt, self._rng)
                if status == 429 and pacer is not None:
                    # the app is over Graph's write limit: every later write waits too (at most the budget:
                    # a longer wait is the orchestrator's, which hands it back on a durable timer)
                    pacer.backoff(min(delay, budget))
                if attempt < max_attempts and slept + delay <= budget:
                    self._sleep(delay)
                    slept += delay
                    continue
                raise self._error(method, shown, response, secrets, retry_after=delay if
                                  (status == 429 or retry_after is not None) else None)
            raise self._error(method, shown, response, secrets,
                              granted_roles=self.granted_roles() if status in (401, 403) else None)

    def granted_roles(self) -> tuple[str, ...] | None:
        """The Graph application permissions (``roles`` claim) of the current token, or None.

        Read from the token's payload without verifying it (Graph verifies it; this only names
        what the identity holds when Graph refuses a call). None when there is no token yet or
        it is not a JWT with a ``roles`` list. Roles are permission names, never secrets.
        """
        token = getattr(self._token, "token", None)
        if not isinstance(token, str) or token.count(".") != 2:
            return None
        try:
            claims = decode_claims(token)  # core.identity: the decoder the preflight uses too
        except (ValueError, TypeError):
            return None
        roles = claims.get("roles")
        if not isinstance(roles, list):
            return ()  # a token without roles holds none
        return tuple(sorted(str(r) for r in roles))

    @staticmethod
    def _body(response: requests.Response) -> Any:
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise errors.GraphTransient(
                f"Graph answered {response.status_code} with a body that is not JSON", code="InvalidResponse",
                status=response.status_code, request_id=response.headers.get("request-id"),
            ) from None

    @staticmethod
    def _error(method: str, shown: str, response: requests.Response, secrets: tuple[str, ...],
               retry_after: float | None = None, granted_roles: tuple[str, ...] | None = None) -> errors.GraphError:
        status = response.status_code
        code, message, request_id = "UnknownError", "", response.headers.get("request-id")
        try:
            envelope = response.json().get("error") or {}
            code = str(envelope.get("code") or code)
            message = str(envelope.get("message") or "")
            inner = envelope.get("innerError") or envelope.get("innererror") or {}
            request_id = request_id or inner.get("request-id")
        except (ValueError, AttributeError):
            message = response.reason or ""
        message = scrub(message, secrets)[:_MAX_MESSAGE]
        text = f"{method} {shown}: {message}".rstrip(": ")
        if retry_after is not None:
            return errors.GraphThrottled(text, retry_after=retry_after, code=code, status=status, request_id=request_id)
        if status in (401, 403):
            return GraphClient._refused(method, shown, status, code, message, request_id, granted_roles)
        cls: type[errors.GraphError] = {
            400: errors.BadRequest, 401: errors.PermissionDenied, 403: errors.PermissionDenied,
            404: errors.NotFound, 409: errors.Conflict, 412: errors.Conflict,
        }.get(status) or (errors.GraphTransient if status >= 500 or status in (408, 429) else errors.GraphPermanent)
        return cls(text, code=code, status=status, request_id=request_id)

    @staticmethod
    def _refused(method: str, shown: str, status: int, code: str, message: str, request_id: str | None,
                 granted_roles: tuple[str, ...] | None) -> errors.PermissionDenied:
        """A 401/403 (after one token refresh): a refused token, or a refused call.

        401 ``InvalidAuthenticationToken`` means Graph did not accept the token itself (expired,
        wrong audience or tenant): that is reported as such, never as a missing permission. Any
        other 401 or 403 is an authorization refusal: the synchronization API answers 401
        ``UnknownError`` with an empty message where other APIs answer 403
        ``Authorization_RequestDenied`` (https://github.com/microsoftgraph/microsoft-graph-docs-contrib/issues/8800).
        The activity that made the call names the permissions its step needs
        (:meth:`core.errors.PermissionDenied.for_step`).
        """
        said = f"{status} {code}" + (f" '{message}'" if message else " with an empty message")
        if status == 401 and code == "InvalidAuthenticationToken":
            return errors.PermissionDenied(
                f"{method} {shown}: Graph refused the function app's access token ({said}), also after "
                "getting a new one - check the identity's tenant (AZURE_TENANT_ID) and GRAPH_SCOPE",
                code=code, status=status, request_id=request_id, token_refused=True)
        return errors.PermissionDenied(
            f"{method} {shown}: Graph refused the call ({said}) - the function app's identity lacks a Graph "
            "permission for it (see README, 'Graph permissions and why')",
            code=code, status=status, request_id=request_id, granted_roles=granted_roles)

    # -- conveniences ---------------------------------------------------------------------------
    def get(self, path: str, params: dict | None = None) -> dict:
        """GET one object or one page."""
        return self.request("GET", path, params=params) or {}

    def iter_pages(self, path: str, params: dict | None = None) -> Iterator[list[dict]]:
        """Yield each page's ``value`` list, following ``@odata.nextLink`` until it is absent."""
        body = self.get(path, params)
        while True:
            yield list(body.get("value") or [])
            link = body.get("@odata.nextLink")
            if not link:
                return
            body = self.get(link)

    def get_all(self, path: str, params: dict | None = None, limit: int | None = None) -> list[dict]:
        """Every item of a collection (all pages), or the first ``limit`` items."""
        items: list[dict] = []
        for page in self.iter_pages(path, params):
            items.extend(page)
            if limit is not None and len(items) >= limit:
                return items[:limit]
        return items

    def post(self, path: str, json: Any = None, **kwargs: Any) -> Any:
        """POST (not repeated on 503/504 unless ``idempotent=True``)."""
        return self.request("POST", path, json=json, **kwargs)

    def patch(self, path: str, json: Any, **kwargs: Any) -> Any:
        """PATCH (idempotent)."""
        return self.request("PATCH", path, json=json, **kwargs)

    def put(self, path: str, json: Any, **kwargs: Any) -> Any:
        """PUT (idempotent)."""
        return self.request("PUT", path, json=json, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        """DELETE (idempotent)."""
        return self.request("DELETE", path, **kwargs)
