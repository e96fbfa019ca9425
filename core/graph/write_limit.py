"""Graph's write limit held app-wide: one schedule of write slots shared by every process and instance.

Why: Graph meters identity writes per app *and tenant*: 3,000 per 2 min 30 s (20 per second)
(https://learn.microsoft.com/graph/throttling-limits#identity-and-access-service-limits, the
"write quota" row of the application+tenant pair; the same table gives 18,000 per 5 min for the
tenant across all apps). Azure runs several Python worker processes per instance
(``FUNCTIONS_WORKER_PROCESS_COUNT``) and Flex Consumption scales out to many instances, so a pacer
held in one process lets the app as a whole send N times the limit: two processes on one tenant
drew 1,285 429s for 1,400 accepted writes (measured before this module, with
``benchmarks/write_limit_scale.py --compare``).

How: the schedule is one small blob per app and tenant in the app's storage account
(``AzureWebJobsStorage``; Azurite locally, the managed identity in Azure), holding only the time
of the next free slot (``{"next": <epoch seconds>}``; never a token, id or secret). A process that
needs slots reserves a *block* of them in one conditional write: it reads ``next``, takes
``[max(now, next), +count / rate)`` and writes the new ``next`` back with ``If-Match`` on the
blob's ETag (optimistic concurrency, https://learn.microsoft.com/azure/storage/blobs/concurrency-manage);
a 412 means another process reserved first, so it reads again and retries. The process then hands
those slots to its waiting threads, each sleeping until its slot. The block is as large as the
number of threads waiting, and grows (doubling up to ``GRAPH_WRITE_LIMIT_BLOCK``) while the
process uses up every slot it leased, and halves when a leased slot passes unused; so a busy
process spends one or two storage calls per block, not per write, and a quiet one leases few
slots it will not use (an unused slot is lost capacity, never an excess). The process remembers
the ETag of its own last write, so an uncontended reservation is a single PUT; after it lost a
race it reads first (a GET and a PUT, instead of a 412 and then both).

Feedback: a 429 on a write (``backoff``) holds every later write of the process until its
``Retry-After`` has passed, and the next reservation carries that hold into the shared schedule
(``next`` moves past it), so the other processes wait too.

Fail-safe: when the store cannot be reached (or keeps losing races), the process paces alone at
the same rate (plus the 429 feedback), logs one warning, and tries the store again after
``retry_store_after`` seconds. A write step never fails because of the limiter.

Clock: slots are wall-clock times, so hosts must agree on the time (Azure hosts are NTP-synced to
milliseconds; a skew of ``d`` seconds lets two hosts overlap by ``d * rate`` writes, which the
429 feedback absorbs); a ``next`` more than 300 s ahead of the reader's clock is ignored.
"""

from __future__ import annotations

import binascii
import json
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from core.identity import decode_claims

logger = logging.getLogger(__name__)

CONTAINER = "graph-write-limit"
#: storage calls give up quickly: a slow store must not slow Graph writes more than pacing alone would
_STORAGE_TIMEOUT_SECONDS = 3  # and no SDK retry (its storage backoff starts at 15 s): the fallback is the retry
_RETRY_STORE_AFTER_SECONDS = 30.0
_MAX_RACES = 8
_MAX_AHEAD_SECONDS = 300.0


class SlotStore(Protocol):
    """Where the app-wide schedule lives: reserve ``count`` slots ``interval`` apart for ``key``."""

    def reserve(self, key: str, count: int, interval: float, not_before: float) -> float:
        """Return the first slot's time (epoch seconds); raise on any storage failure."""
        ...


@dataclass
class _Known:
    etag: str | None
    next: float


class StoreContended(RuntimeError):
    """Lost the race for the schedule too many times in a row."""


class BlobSlotStore:
    """The schedule in Azure Blob storage, one blob per key, updated with ETag optimistic concurrency.

    ``container`` is an azure-storage-blob ``ContainerClient``. Counts its storage calls
    (``calls``) and lost races (``conflicts``) for the benchmark.
    """

    def __init__(self, container: Any, clock: Callable[[], float] = time.time, max_races: int = _MAX_RACES) -> None:
        self._container = container
        self._clock = clock
        self._max_races = max_races
        self._known: dict[str, _Known] = {}
        self._contended: set[str] = set()
        self._created = False
        self.calls = 0
        self.conflicts = 0

    def _read(self, key: str) -> _Known:
        from azure.core.exceptions import ResourceNotFoundError

        self.calls += 1
        try:
            downloaded = self._container.download_blob(key, timeout=_STORAGE_TIMEOUT_SECONDS)
            body = downloaded.readall()
        except ResourceNotFoundError:
            return _Known(etag=None, next=0.0)
        try:
            value = float(json.loads(body)["next"])
        except (ValueError, KeyError, TypeError):
            value = 0.0  # unreadable (hand-edited?): start afresh, the ETag still guards the write
        return _Known(etag=downloaded.properties.etag, next=value)

    def _write(self, key: str, known: _Known, value: float) -> str:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceNotFoundError

        data = json.dumps({"next": value})
        blob = self._container.get_blob_client(key)
        for _ in range(2):
            self.calls += 1
            try:
                if known.etag is None:  # first reservation ever: create it, unless someone just did
                    result = blob.upload_blob(data, overwrite=False, timeout=_STORAGE_TIMEOUT_SECONDS)
                else:
                    result = blob.upload_blob(data, overwrite=True, etag=known.etag,
                                              match_condition=MatchConditions.IfNotModified,
                                              timeout=_STORAGE_TIMEOUT_SECONDS)
                return str(result["etag"])
            except ResourceNotFoundError:  # the container is missing (first use of the account)
                if self._created:
                    raise
                self._create_container()
        raise StoreContended("the write-limit container could not be created")

    def _create_container(self) -> None:
        from azure.core.exceptions import ResourceExistsError

        self.calls += 1
        try:
            self._container.create_container(timeout=_STORAGE_TIMEOUT_SECONDS)
        except ResourceExistsError:
            pass
        self._created = True

    def reserve(self, key: str, count: int, interval: float, not_before: float) -> float:
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError

        # The ETag of our own last write saves the read when nobody else reserved since; when the last
        # reservation lost a race, others are busy too: read first (2 calls, not a 412 and then 2).
        known = None if key in self._contended else self._known.get(key)
        self._contended.discard(key)
        for _ in range(self._max_races):
            if known is None:
                known = self._read(key)
            now = self._clock()
            # a schedule booked further ahead than any real queue (a host whose clock runs ahead, a
            # hand edit) must not stall the app: start afresh from now
            booked = known.next if known.next <= now + _MAX_AHEAD_SECONDS else now
            start = max(now, booked, not_before)
            end = start + count * interval
            try:
                etag = self._write(key, known, end)
            except (ResourceModifiedError, ResourceExistsError):  # 412 / 409: another process reserved first
                self.conflicts += 1
                self._contended.add(key)
                known = None
                continue
            self._known[key] = _Known(etag=etag, next=end)
            return start
        self._known.pop(key, None)
        raise StoreContended(f"lost the race for the write schedule {self._max_races} times")


class AppWriteLimiter:
    """At most ``rate`` writes per second for one app+tenant ``key``, across every process sharing ``store``.

    ``store=None``: this process paces alone (the fallback, and the mode without storage).
    Thread-safe; ``acquire`` blocks until the caller's slot. ``clock`` is wall time (slots are
    compared across hosts).
    """

    def __init__(self, rate: float, store: SlotStore | None, key: str, *, max_block: int = 10,
                 retry_store_after: float = _RETRY_STORE_AFTER_SECONDS, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0:
            raise ValueError("rate must be greater than 0")
        self.rate = rate
        self.interval = 1.0 / rate
        self.key = key
        self.max_block = max(1, max_block)
        self.retry_store_after = retry_store_after
        self._store = store
        self._clock = clock
        self._sleep = sleep
        self._cond = threading.Condition()
        self._slots: deque[float] = deque()
        self._waiting = 0
        self._reserving = False
        self._local_next = 0.0
        self._hold_until = 0.0
        self._store_down_until = 0.0
        self._store_down = False
        # A slot may be used up to this late (the storage round trip, a busy thread): the writes in any
        # window stay within rate * (window + grace), which Graph's 150-s window absorbs.
        self._grace = max(self.interval, 0.5)
        self._block = 1  # slots to lease next: doubles while blocks are used up, halves when slots go unused
        self._last_count = 0
        self._skipped_at_last = 0
        # figures for tests and the benchmark
        self.reservations = 0
        self.shared_reservations = 0
        self.local_reservations = 0
        self.skipped_slots = 0

    @property
    def shared(self) -> bool:
        """True while the app-wide store is in use (False: pacing alone)."""
        return self._store is not None and not self._store_down

    def acquire(self) -> float:
        """Wait for this write's slot; return the seconds waited."""
        with self._cond:
            self._waiting += 1
            try:
                slot = self._take_slot()
            finally:
                self._waiting -= 1
        delay = slot - self._clock()
        if delay > 0:
            self._sleep(delay)
            return delay
        return 0.0

    def _take_slot(self) -> float:  # called with the lock held
        while True:
            now = self._clock()
            while self._slots and (self._slots[0] < now - self._grace or self._slots[0] < self._hold_until):
                self._slots.popleft()  # missed (nobody took it in time) or inside a 429 hold
                self.skipped_slots += 1
                self._block = max(1, self._block // 2)  # leased more than this process uses: lease less
            if self._slots:
                return self._slots.popleft()
            if self._reserving:
                self._cond.wait(1.0)
                continue
            self._reserving = True
            if self._last_count and self.skipped_slots == self._skipped_at_last:
                self._block = min(self.max_block, self._block * 2)  # the last block was used up: lease more
            count = max(1, min(self.max_block, max(self._waiting, self._block)))
            self._last_count, self._skipped_at_last = count, self.skipped_slots
            hold = self._hold_until
            self._cond.release()
            try:
                start = self._reserve(count, hold)
            finally:
                self._cond.acquire()
                self._reserving = False
            self._slots.extend(start + i * self.interval for i in range(count))
            self._local_next = max(self._local_next, start + count * self.interval)
            self._cond.notify_all()
            return self._slots.popleft()  # the reserving caller takes the first slot (progress even if it is late)

    def _reserve(self, count: int, hold: float) -> float:  # called without the lock
        self.reservations += 1
        now = self._clock()
        if self._store is not None and now >= self._store_down_until:
            try:
                start = self._store.reserve(self.key, count, self.interval, max(now, hold))
            except Exception as exc:  # any storage failure: pace alone for a while, never fail the write
                self._store_down_until = self._clock() + self.retry_store_after
                if not self._store_down:
                    self._store_down = True
                    code = getattr(exc, "error_code", None) or ""
                    logger.warning("Graph write limit: the shared schedule is unreachable (%s%s); this process "
                                   "paces its writes alone at %.3g/s and on 429s, retrying the store in %.0f s",
                                   type(exc).__name__, f" {code}" if code else "", self.rate, self.retry_store_after)
            else:
                if self._store_down:
                    self._store_down = False
                    logger.info("Graph write limit: the shared schedule is reachable again")
                self.shared_reservations += 1
                return start
        self.local_reservations += 1
        with self._cond:
            start = max(now, self._local_next, hold)
            self._local_next = start + count * self.interval
        return start

    def backoff(self, seconds: float) -> None:
        """A write drew a 429 with ``Retry-After: seconds``: hold every later write (here and, via the
        next reservation, in every process) until then."""
        if seconds <= 0:
            return
        with self._cond:
            self._hold_until = max(self._hold_until, self._clock() + seconds)
            self._local_next = max(self._local_next, self._hold_until)


# -- the process's limiters ---------------------------------------------------------------------

_limiters: dict[tuple, AppWriteLimiter] = {}
_stores: dict[str, SlotStore | None] = {}
_lock = threading.Lock()


def limit_key(access_token: str) -> str:
    """``<tenant id>/<app id>`` from a Graph access token's claims (what Graph meters), else ``default``.

    The token is only decoded, not verified (it is our own token, and the key only groups writes).
    """
    try:
        claims = decode_claims(access_token)
    except (ValueError, binascii.Error, UnicodeError):
        return "default"
    tenant = str(claims.get("tid") or "")
    app = str(claims.get("appid") or claims.get("azp") or "")
    safe = [part for part in (tenant, app) if part and all(c.isalnum() or c in "-." for c in part)]
    return "/".join(safe) if len(safe) == 2 else "default"


def blob_store_from_connection(name: str, environ: Any = None) -> SlotStore | None:
    """The schedule's store from the storage connection ``name`` (as a binding's ``connection``).

    A connection string (``UseDevelopmentStorage=true`` = Azurite's defaults) or identity-based
    ``<name>__blobServiceUri`` / ``<name>__accountName`` (the app's managed identity, which needs
    Storage Blob Data Contributor or Owner on the account). None when the connection is not set.
    """
    env = os.environ if environ is None else environ
    options: dict[str, Any] = {"retry_total": 0, "connection_timeout": _STORAGE_TIMEOUT_SECONDS, "read_timeout": _STORAGE_TIMEOUT_SECONDS}
    value = env.get(name) or env.get(f"AzureWebJobs{name}")
    from azure.storage.blob import BlobServiceClient

    if value:
        if value.strip().lower().replace(" ", "") == "usedevelopmentstorage=true":
            value = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
                     "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
                     "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;")
        service = BlobServiceClient.from_connection_string(value, **options)
    else:
        uri = env.get(f"{name}__blobServiceUri") or (
            f"https://{env[f'{name}__accountName']}.blob.core.windows.net" if env.get(f"{name}__accountName") else None)
        if not uri:
            return None
        from core import clients

        service = BlobServiceClient(uri, credential=clients.get_credential(), **options)
    return BlobSlotStore(service.get_container_client(CONTAINER))


def app_write_limiter(rate: float, key: str, connection: str, max_block: int) -> AppWriteLimiter:
    """The process's limiter for ``key`` (one per app+tenant), shared by every Graph client of the process.

    ``connection``: the storage connection holding the schedule, or ``none`` to pace per process.
    """
    with _lock:
        found = _limiters.get((rate, key, connection, max_block))
        if found is not None:
            return found
        if connection not in _stores:
            store: SlotStore | None = None
            if connection.lower() != "none":
                try:
                    store = blob_store_from_connection(connection)
                except Exception as exc:  # a malformed connection string: pace alone, say why once
                    logger.warning("Graph write limit: storage connection %s is unusable (%s); each process "
                                   "paces its writes alone", connection, type(exc).__name__)
                else:
                    if store is None:
                        logger.warning("Graph write limit: storage connection %s is not set; each process "
                                       "paces its writes alone, so several processes can exceed Graph's limit",
                                       connection)
            _stores[connection] = store
        limiter = AppWriteLimiter(rate, _stores[connection], key, max_block=max_block)
        _limiters[(rate, key, connection, max_block)] = limiter
        return limiter


def reset() -> None:
    """Forget the process's limiters and stores (tests)."""
    with _lock:
        _limiters.clear()
        _stores.clear()
