"""Azure Storage queue triggers and queue output bindings, as the Functions host's queue extension.

Per queue-triggered function one listener polls with ``azure-storage-queue`` (async client):

* fetches up to ``batchSize`` messages at a time (visibility 10 minutes, renewed every 5 minutes
  while the function runs) and fetches again once no more than ``newBatchThreshold`` are in flight;
* polls again at once after a non-empty fetch, else backs off exponentially from 100 ms up to
  ``maxPollingInterval``; a message written by this host's own output binding wakes the listener
  (the host's "new message" fast path);
* ``messageEncoding: base64`` (default): the body is base64-decoded before the call; a message that
  is not valid base64 goes to ``<queue>-poison`` at once, without calling the function (Storage SDK
  PR #18326); output bindings are written base64-encoded;
* success deletes the message; failure makes it visible again after ``visibilityTimeout``, and once
  its dequeue count has reached ``maxDequeueCount`` it is copied to ``<queue>-poison`` and deleted.
  A message fetched with a dequeue count already above the maximum (e.g. the host crashed while
  running it) is poisoned without a call.
* a queue whose name ends in ``-poison``, or whose ``<name>-poison`` would not be a valid queue name
  (over 63 characters), has **no** poison queue (WebJobs ``QueueListenerFactory.CreatePoisonQueueReference``):
  a failed message is not released but left invisible until its lease ends, then retried; one
  above ``maxDequeueCount`` is not run and is left the same way (``QueueProcessor``), and an invalid
  base64 message too. Nothing is ever moved to ``<queue>-poison-poison``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
from typing import Any

from azure.functions import meta
from azure.functions.queue import QueueMessage

from devhost.app_loader import FunctionSpec, InvocationResult, LoadedApp
from devhost.azurite import StorageConnection, resolve_connection
from devhost.config import QueuesConfig, resolve_setting_refs, timespan_text

log = logging.getLogger("devhost.queue")

RECEIVE_VISIBILITY = 600  # seconds, the host's default lease on a fetched message
RENEW_EVERY = 300
MIN_POLL = 0.1


def queue_name_of(binding: dict) -> str:
    """The binding's queue name with ``%SETTING%`` resolved; queue names are lower case."""
    name = binding.get("queueName") or binding.get("queue_name") or ""
    return resolve_setting_refs(name, what=f"queue binding '{binding.get('name')}'").lower()


POISON_SUFFIX = "-poison"
_QUEUE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")


def is_valid_queue_name(name: str) -> bool:
    """Azure queue naming rules: 3-63 of a-z 0-9 and single hyphens, starting and ending alphanumeric."""
    return bool(_QUEUE_NAME.match(name))


def poison_queue_name(queue_name: str) -> str | None:
    """``<queue>-poison``, or None where the host uses no poison queue (``CreatePoisonQueueReference``)."""
    if queue_name.endswith(POISON_SUFFIX):
        return None
    candidate = queue_name + POISON_SUFFIX
    return candidate if is_valid_queue_name(candidate) else None


def connection_of(binding: dict) -> str:
    return binding.get("connection") or "AzureWebJobsStorage"


def decode_body(text: str, encoding: str) -> str | bytes | None:
    """The message body the function sees: base64-decoded under ``base64`` (None if invalid).

    UTF-8 text is passed as ``str``, other bytes as ``bytes`` (``QueueMessage.get_body()`` is bytes
    either way).
    """
    if encoding != "base64":
        return text
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


class QueueClients:
    """One async QueueServiceClient per connection setting; queues are created on first use."""

    def __init__(self, config: QueuesConfig) -> None:
        self.config = config
        self._services: dict[str, Any] = {}
        self._created: set[tuple[str, str]] = set()
        self._wakers: dict[tuple[str, str], asyncio.Event] = {}

    def connection(self, setting: str) -> StorageConnection:
        return resolve_connection(setting)

    def _service(self, setting: str):
        if setting not in self._services:
            self._services[setting] = self.connection(setting).queue_service_client()
        return self._services[setting]

    async def queue(self, setting: str, name: str):
        """The QueueClient for ``name`` (raw text, no encode/decode policy), creating the queue if missing."""
        client = self._service(setting).get_queue_client(name)
        if (setting, name) not in self._created:
            from azure.core.exceptions import ResourceExistsError

            try:
                await client.create_queue()
            except ResourceExistsError:
                pass
            self._created.add((setting, name))
        return client

    def waker(self, setting: str, name: str) -> asyncio.Event:
        return self._wakers.setdefault((setting, name), asyncio.Event())

    def encode(self, body: str | bytes) -> str:
        """Message text as written to the queue under the configured ``messageEncoding``."""
        if self.config.message_encoding == "base64":
            raw = body.encode("utf-8") if isinstance(body, str) else body
            return base64.b64encode(raw).decode("ascii")
        return body if isinstance(body, str) else body.decode("utf-8")

    async def send(self, setting: str, name: str, body: str | bytes) -> None:
        client = await self.queue(setting, name)
        await client.send_message(self.encode(body))
        self.waker(setting, name).set()

    async def close(self) -> None:
        for svc in self._services.values():
            try:
                await svc.close()
            except Exception:  # closing is best effort at shutdown
                pass
        self._services.clear()


def _queue_output_messages(value: Any) -> list[str | bytes]:
    """Messages for a queue output value, validated by the library's ``queue`` converter (as the worker)."""
    datum = meta._ConverterMeta.get("queue").encode(value, expected_type=None)
    if datum.type in ("string", "bytes"):
        return [datum.value]
    items = json.loads(datum.value)
    if isinstance(items, dict):
        items = [items]
    return [i["body"] if isinstance(i, dict) else i for i in items]


class OutputWriter:
    """Writes a successful invocation's output bindings (queue outputs; others are reported unsupported)."""

    SUPPORTED = {"queue"}

    def __init__(self, clients: QueueClients) -> None:
        self.clients = clients

    async def write(self, spec: FunctionSpec, result: InvocationResult) -> None:
        for b in spec.output_bindings:
            name = b.get("name")
            value = result.return_value if name == "$return" else result.outputs.get(name)
            if value is None or b.get("type") not in self.SUPPORTED:
                continue
            queue = queue_name_of(b)
            for body in _queue_output_messages(value):
                await self.clients.send(connection_of(b), queue, body)


class QueueListener:
    """Polls one queue for one function (see module docstring for the rules)."""

    def __init__(self, app: LoadedApp, spec: FunctionSpec, clients: QueueClients, writer: OutputWriter,
                 function_timeout: float | None = None) -> None:
        self.app, self.spec, self.clients, self.writer = app, spec, clients, writer
        self.config = clients.config
        trigger = spec.trigger
        self.queue_name = queue_name_of(trigger)
        self.setting = connection_of(trigger)
        self.function_timeout = function_timeout
        self.poison_name = poison_queue_name(self.queue_name)
        self._inflight: set[asyncio.Task] = set()
        self._task: asyncio.Task | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"queue:{self.spec.name}")

    async def stop(self) -> None:
        self._stopping = True
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self._inflight:
            # let running invocations finish briefly; unfinished messages reappear after their lease
            await asyncio.wait(self._inflight, timeout=5)
            for t in self._inflight:
                t.cancel()

    async def _connect(self):
        """The queue client, retrying while storage is unreachable (the host keeps retrying too)."""
        delay = MIN_POLL
        while True:
            try:
                return await self.clients.queue(self.setting, self.queue_name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("Queue '%s' for 'Functions.%s' is not reachable (%s); retrying", self.queue_name,
                            self.spec.name, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, max(self.config.max_polling_interval, 1.0))

    async def _run(self) -> None:
        client = await self._connect()
        waker = self.clients.waker(self.setting, self.queue_name)
        threshold = self.config.effective_new_batch_threshold()
        delay = MIN_POLL
        log.info("Queue listener for 'Functions.%s' on queue '%s' started", self.spec.name, self.queue_name)
        while not self._stopping:
            if len(self._inflight) > threshold:
                await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                messages = [m async for m in client.receive_messages(
                    messages_per_page=self.config.batch_size, max_messages=self.config.batch_size,
                    visibility_timeout=RECEIVE_VISIBILITY)]
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # storage unreachable: keep polling, as the host does
                log.warning("Polling queue '%s' failed: %s", self.queue_name, exc)
                messages = []
            for m in messages:
                t = asyncio.create_task(self._process(client, m))
                self._inflight.add(t)
                t.add_done_callback(self._inflight.discard)
            if messages:
                delay = MIN_POLL
                continue
            waker.clear()
            try:
                await asyncio.wait_for(waker.wait(), timeout=delay)
                delay = MIN_POLL
            except asyncio.TimeoutError:
                delay = min(delay * 2, self.config.max_polling_interval)

    async def _poison(self, client, message, why: str) -> None:
        if self.poison_name is None:
            self._leave_invisible(message, why)
            return
        log.warning("%s Moving message '%s' to queue '%s'.", why, message.id, self.poison_name)
        poison = await self.clients.queue(self.setting, self.poison_name)
        await poison.send_message(message.content or "")
        await client.delete_message(message.id, message.pop_receipt)

    def _leave_invisible(self, message, why: str) -> None:
        """No poison queue: the host leaves the message invisible (no release) to avoid a fast retry loop."""
        log.warning("%s Queue '%s' has no poison queue, so message '%s' is left invisible until its lease ends "
                    "(at most %d s), then retried.", why, self.queue_name, message.id, RECEIVE_VISIBILITY)

    async def _renew(self, client, state: dict) -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY)
            receipt = await client.update_message(state["id"], state["pop_receipt"], visibility_timeout=RECEIVE_VISIBILITY)
            state["pop_receipt"] = receipt.pop_receipt

    async def _process(self, client, m) -> None:
        max_dq = self.config.max_dequeue_count
        try:
            if m.dequeue_count > max_dq:
                await self._poison(client, m, f"Message has reached MaxDequeueCount of {max_dq}.")
                return
            body = decode_body(m.content or "", self.config.message_encoding)
            if body is None:
                await self._poison(client, m, "Message is not valid base64 (host.json messageEncoding is 'base64').")
                return
            msg = QueueMessage(id=m.id, body=body, dequeue_count=m.dequeue_count, expiration_time=m.expires_on,
                                    insertion_time=m.inserted_on, time_next_visible=m.next_visible_on,
                                    pop_receipt=m.pop_receipt)
            state = {"id": m.id, "pop_receipt": m.pop_receipt}
            renew = asyncio.create_task(self._renew(client, state))
            try:
                call = self.app.invoke(self.spec.name, {self.spec.trigger["name"]: msg})
                result = await (asyncio.wait_for(call, self.function_timeout) if self.function_timeout else call)
                await self.writer.write(self.spec, result)
                ok = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                ok = False
                if isinstance(exc, asyncio.TimeoutError):
                    log.error("Function 'Functions.%s' timed out after %ss (functionTimeout): Timeout value of %s was exceeded "
                      "by function: Functions.%s", self.spec.name, self.function_timeout,
                      timespan_text(self.function_timeout), self.spec.name)
                else:
                    log.error("Function 'Functions.%s' failed for message '%s' (dequeue count %s)",
                              self.spec.name, m.id, m.dequeue_count, exc_info=True)
            finally:
                renew.cancel()
            m.pop_receipt = state["pop_receipt"]
            if ok:
                await client.delete_message(m.id, m.pop_receipt)
            elif self.poison_name is None:
                self._leave_invisible(m, f"Function 'Functions.{self.spec.name}' failed.")
            elif m.dequeue_count >= max_dq:
                await self._poison(client, m, f"Message has reached MaxDequeueCount of {max_dq}.")
            else:
                await client.update_message(m.id, m.pop_receipt, visibility_timeout=int(self.config.visibility_timeout))
        except asyncio.CancelledError:
            raise
        except Exception:  # storage errors while completing: the message reappears after its lease
            log.exception("Completing queue message '%s' on '%s' failed", m.id, self.queue_name)
