"""The request and reply objects Graph route handlers work with.

``GraphRequest`` is one authenticated Graph call as a handler sees it: parsed query, raw body
(``json()`` gives Graph's 400 for malformed JSON), the caller and its roles (``require()`` applies
the permission table, including ``Application.ReadWrite.OwnedBy`` ownership, and answers a refusal
the way the route's API does), collection paging
(``collection()``) and the replication-lag fault (``visible()``).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from emulator import odata, permissions, replication
from emulator.errors import GraphError, not_found
from emulator.identity import Caller
from emulator.state import EmulatorState

@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict = field(default_factory=dict)


@dataclass
class GraphRequest:
    """One Graph call after authentication, as the handlers see it."""

    method: str
    version: str
    path: str
    query: dict[str, str]
    raw_body: bytes
    origin: str
    caller: Caller
    state: EmulatorState
    headers: dict[str, str] = field(default_factory=dict)
    #: the read replica this request landed on, (index, lag seconds); None: replicas are off
    replica: tuple[int, float] | None = None

    @property
    def directory(self):
        return self.state.directory

    @property
    def service(self):
        if self.state.provisioning is None:
            raise GraphError(501, "NotImplemented", "The provisioning simulation is not available in this build.")
        return self.state.provisioning

    def json(self, required: bool = True) -> dict:
        """The body as a JSON object; 400 for malformed JSON or a non-object."""
        if not self.raw_body.strip():
            if required:
                raise GraphError(400, "BadRequest", "Empty Payload. JSON content expected.")
            return {}
        try:
            body = json.loads(self.raw_body)
        except (ValueError, UnicodeDecodeError):
            raise GraphError(
                400,
                "BadRequest",
                "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
            ) from None
        if not isinstance(body, dict):
            raise GraphError(400, "BadRequest", "The request payload must be a JSON object.")
        return body

    def require(self, action: str, owned_object: str | None = None) -> None:
        """Graph's refusal unless the caller's roles allow ``action`` (on ``owned_object``, for
        ``Application.ReadWrite.OwnedBy``); synchronization refusals per ``synchronizationDeniedStatus``."""
        owns = self.directory.owns(self.caller.sp_id, owned_object) if owned_object else None
        permissions.check(action, set(self.caller.roles), owns,
                          sync_status=int(self.directory.settings.get("synchronizationDeniedStatus", 401)))

    def context(self, fragment: str) -> str:
        return f"{self.origin}/{self.version}/$metadata#{fragment}"

    def collection(self, items: list[dict], path: str, fragment: str, max_top: int = 999, default_top: int = 100,
                   ignore_case: bool = True, directory: bool = False,
                   entity: tuple[str, frozenset[str]] | None = None, snapshot: int | None = None,
                   filterable: frozenset[str] | None = None) -> Reply:
        """One page of ``items`` per the query options.

        ``entity`` = (type name, every property of the type) turns on the unknown-property check
        of ``$filter``; give it where the full property list is known (the resource's Learn page).
        ``snapshot``: see ``odata.apply_query`` (paging of a collection that grows at the front);
        ``filterable``: the only properties ``$filter`` may read (with ``entity``).
        """
        eventual = False
        if directory:
            eventual = self._advanced_query_allowed()
            ignore_case = bool(self.directory.settings.get("filtersIgnoreCase", True))
        body = odata.apply_query(
            items,
            self.query,
            f"{self.origin}/{self.version}/{path}",
            max_top=max_top,
            default_top=default_top,
            context=self.context(fragment),
            ignore_case=ignore_case,
            allow_search=eventual,
            entity=entity,
            snapshot=snapshot,
            filterable=filterable,
        )
        return Reply(200, body)

    def _advanced_query_allowed(self) -> bool:
        """Directory "advanced queries" need ``ConsistencyLevel: eventual``.

        Source: https://learn.microsoft.com/graph/aad-advanced-queries.

        ``$count`` and ``$search`` are refused without the header, ``$filter`` combined with
        ``$orderby`` without the header and ``$count=true`` (400 Request_UnsupportedQuery; exact
        messages UNCONFIRMED). With it they are served
        from the same in-memory data (the real index may lag recent writes; the emulator's
        replication-lag fault covers that).
        """
        options = odata.normalize_query(self.query)
        eventual = self.headers.get("consistencylevel", "").lower() == "eventual"
        count = str(options.get("$count", "")).lower() == "true"
        if "$filter" in options and "$orderby" in options and not (eventual and count):
            # https://learn.microsoft.com/graph/aad-advanced-queries: this combination needs the header
            # *and* $count=true.
            raise GraphError(400, "Request_UnsupportedQuery", "Sorting not supported for current query. "
                             "$filter with $orderby needs the ConsistencyLevel: eventual header and $count=true.")
        if eventual:
            return True
        if count:
            raise GraphError(400, "Request_UnsupportedQuery", "$count requires the ConsistencyLevel: eventual header.")
        if "$search" in options:
            raise GraphError(400, "Request_UnsupportedQuery", "$search requires the ConsistencyLevel: eventual header.")
        return False

    def entity(self, item: dict, fragment: str) -> Reply:
        options = odata.normalize_query(self.query)
        body = copy.deepcopy(item)
        if options.get("$select"):
            body = odata.select_fields(body, options["$select"])
        return Reply(200, {"@odata.context": self.context(fragment + "/$entity"), **body})

    # -- replication lag ----------------------------------------------------------------------
    def visible(self, object_id: str, synchronization: bool = False) -> None:
        """404 while a newly created object is still "replicating" (fault setting).

        On synchronization calls the answer is ``replicationLag.syncStatus``: 404, or the 403 /
        409 that Terraform retries every synchronization call on right after instantiate
        (``synchronizationRetryFunc`` in
        https://github.com/hashicorp/terraform-provider-azuread/blob/main/internal/services/synchronization/synchronization.go).
        """
        created = self.directory.created_at.get(object_id)
        if self.state.faults.hidden(object_id, created) or self._not_on_replica(created):
            self._lagging(object_id, synchronization)

    def _not_on_replica(self, created: float | None) -> bool:
        """Whether this request's replica has not seen the object's creation yet (replicas fault)."""
        return (self.replica is not None and created is not None
                and self.state.clock.monotonic() - created < self.replica[1])

    def _lagging(self, object_id: str, synchronization: bool) -> None:
        status = self.state.faults.config["replicationLag"]["syncStatus"] if synchronization else 404
        if status == 403:
            raise permissions.denied()
        if status == 409:
            raise GraphError(409, "Conflict", "The object is being updated by another operation; retry later.")
        raise not_found(object_id)

    def recently_created(self, object_id: str) -> bool:
        lag = self.state.faults.config["replicationLag"]["seconds"]
        created = self.directory.created_at.get(object_id)
        return bool(lag and created is not None and self.state.clock.monotonic() - created < lag)

    # -- read replicas (emulator/replication.py) ------------------------------------------------
    def seen(self, collection: str, object_id: str) -> dict:
        """An application or service principal as a GET on this request's replica sees it, else 404.

        Without replicas: the live object (the lag-by-time/reads fault still applies). With them:
        not yet created there (404), as it was before a recent PATCH, or still there after a
        recent DELETE.
        """
        live = getattr(self.directory, collection).get(object_id)
        if self.replica is None:
            if live is None:
                raise not_found(object_id)
            self.visible(object_id)
            return live
        obj = replication.as_seen(self.directory, object_id, live, self.replica[1], self.state.clock.monotonic())
        if obj is None:
            raise not_found(object_id)
        if self.state.faults.hidden(object_id, self.directory.created_at.get(object_id)):
            raise not_found(object_id)
        return obj

    def listed(self, collection: str) -> list[dict]:
        """The applications or service principals a list on this request's replica shows."""
        if self.replica is None:
            items = list(getattr(self.directory, collection).values())
        else:
            items = replication.listed(self.directory, collection, self.replica[1], self.state.clock.monotonic())
        return [item for item in items if not self.recently_created(item["id"])]

    def before_write(self, collection: str, obj: dict) -> None:
        """Record ``obj`` as it is before this PATCH or DELETE, for replicas that lag behind.

        A DELETE of an application removes its service principal too, so that one is recorded
        as well. Nothing is recorded while replicas are off.
        """
        lags = self.state.faults.config["replicationLag"]["replicas"]
        # only a write to the object itself (not to its owners or app role assignments)
        if not lags or self.method not in ("PATCH", "DELETE") or not self.path.rstrip("/").endswith(obj["id"]):
            return
        now, keep = self.state.clock.monotonic(), float(max(lags))
        replication.record_change(self.directory, collection, obj["id"], obj, now, keep)
        if collection == "applications" and self.method == "DELETE":
            sp = self.directory.sp_for_application(obj)
            if sp is not None:
                replication.record_change(self.directory, "service_principals", sp["id"], sp, now, keep)
