"""Run metadata from inside a run: report progress the way Trigger.dev users do.

    from slipstream import metadata

    metadata.set("progress", 0.5)
    metadata.append("steps", "downloaded")
    metadata.increment("items", 10)
    metadata.parent.increment("done", 1)   # the run that triggered this one
    metadata.root.set("stage", "render")   # the top of the run tree

Every call changes this attempt's view at once (`get`, `current`) and queues the operation;
queued operations are sent together at least every 250 ms and when the attempt ends (or
now, with `await metadata.flush()`), in order, 1,000 a request. A request that fails is
logged, not sent again (the server may have applied it). A run replaying its code after a
wait does not queue again what it queued before the wait. Postgres applies them on the run's row in order, so
the operations of several runs updating one parent never lose each other. A run's metadata
is 256 KB at most, serialized: a call that would take this run past it raises
`MetadataTooLargeError` and changes nothing. Outside a run, update a run with
`runs.update_metadata(run_id, ...)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import math
import threading
import uuid
from typing import Any

import msgspec
from slipstream_proto import RunMetadata, metadata_key_problem

from slipstream import _client
from slipstream._waits import is_replaying
from slipstream.errors import ApiError, MetadataTooLargeError, TaskRunError

__all__ = ["append", "current", "decrement", "delete", "flush", "get", "increment", "parent", "remove", "replace",
           "root", "set"]

MAX_BYTES = 256 * 1024
FLUSH_SECONDS = 0.25

log = logging.getLogger("slipstream.metadata")
_encoder = msgspec.json.Encoder()


def _path(key: str) -> list[str]:
    problem = metadata_key_problem(key)
    if problem is not None:
        raise TaskRunError(f"metadata key {key!r:.80}: {problem}")
    return key[2:].split(".") if key.startswith("$.") else [key]


def _apply(doc: dict[str, Any], op: dict[str, Any]) -> dict[str, Any]:
    """`op` applied to `doc` (a copy), as Postgres applies it (migration 0025)."""
    kind = op["type"]
    if kind == "replace":
        return copy.deepcopy(op["value"])
    doc = copy.deepcopy(doc)
    if kind == "update":
        doc.update(copy.deepcopy(op["value"]))
        return doc
    *parents, last = _path(op["key"])
    node = doc
    for name in parents:
        child = node.get(name)
        if not isinstance(child, dict):
            if kind == "delete" or kind == "remove":
                return doc
            child = node[name] = {}
        node = child
    value: Any = copy.deepcopy(op.get("value"))
    current = node.get(last)
    if kind == "set":
        node[last] = value
    elif kind == "delete":
        node.pop(last, None)
    elif kind == "append":
        if current is None:
            node[last] = [value]
        else:
            node[last] = [*current, value] if isinstance(current, list) else [current, value]
    elif kind == "remove":
        if isinstance(current, list):
            node[last] = [item for item in current if item != value]
    elif kind in ("increment", "decrement"):
        base = current if isinstance(current, int | float) and not isinstance(current, bool) else 0
        node[last] = base + (value if kind == "increment" else -value)
    return doc


class _Attempt:
    """The metadata of the run this process executes, and the operations not sent yet. Task
    code may call in from the event loop (async tasks) or from a thread (sync tasks)."""

    def __init__(self, run_id: str, initial: dict[str, Any]) -> None:
        self.run_id = run_id
        self.value = initial
        self.pending: list[tuple[str, dict[str, Any]]] = []  # (target field, operation), in order
        # Requests not stored yet, with their request ids: sent again (the server applies an id once).
        self.unsent: list[tuple[str, list[tuple[str, dict[str, Any]]]]] = []
        self.lock = threading.Lock()
        self.loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()
        self.wake = asyncio.Event()
        self.sending = asyncio.Lock()
        self.flusher = self.loop.create_task(self._flush_every())

    def queue(self, target: str, op: dict[str, Any]) -> None:
        try:
            encoded = _encoder.encode(op)
        except (TypeError, msgspec.EncodeError) as exc:
            raise TaskRunError(f"metadata values must be JSON ({exc})") from None
        if b"\\u0000" in encoded and _has_nul(op):
            raise TaskRunError("metadata cannot hold the NUL character (\\u0000): Postgres's JSON refuses it")
        if is_replaying():
            return  # the run got here before its wait: these were sent then
        with self.lock:
            if target == "operations":
                after = _apply(self.value, op)
                size = len(_encoder.encode(after))
                if size > MAX_BYTES:
                    raise MetadataTooLargeError(
                        f"this would make the run's metadata {size:,} bytes; the most is {MAX_BYTES:,} (256 KB):"
                        " nothing was changed")
                self.value = after
            self.pending.append((target, op))
        if threading.get_ident() == self.loop_thread:
            self.wake.set()
        else:
            self.loop.call_soon_threadsafe(self.wake.set)

    async def _flush_every(self) -> None:
        while True:
            await self.wake.wait()
            await asyncio.sleep(FLUSH_SECONDS)
            await self.flush(raise_errors=False)

    async def flush(self, *, raise_errors: bool = True) -> None:
        async with self.sending:
            self.wake.clear()
            with self.lock:
                taken, self.pending = self.pending, []
            # In order, at most MAX_REQUEST_OPERATIONS a request, each with its own request id:
            # the server applies an id once, so a request whose answer was lost is sent again
            # (increments do not count twice).
            self.unsent += [(uuid.uuid4().hex, taken[first:first + MAX_REQUEST_OPERATIONS])
                            for first in range(0, len(taken), MAX_REQUEST_OPERATIONS)]
            while self.unsent:
                request_id, ops = self.unsent[0]
                try:
                    await _client.request("PUT", f"/api/v1/runs/{self.run_id}/metadata", RunMetadata, _body(ops),
                                          request_id=request_id)
                except ApiError as exc:
                    if exc.status >= 500:
                        self._not_yet(exc)
                        if raise_errors:
                            raise
                        return
                    # Refused for good (too large, a bad key): never sent again.
                    self.unsent.pop(0)
                    log.error("%d metadata operation(s) of run %s were refused: %s", len(ops), self.run_id, exc)
                    if raise_errors:
                        raise
                    continue
                except Exception as exc:
                    self._not_yet(exc)
                    if raise_errors:
                        raise
                    return
                self.unsent.pop(0)

    def _not_yet(self, exc: Exception) -> None:
        count = sum(len(ops) for _, ops in self.unsent)
        log.warning("%d metadata operation(s) of run %s are not stored yet (sent again with the next flush): %s",
                    count, self.run_id, exc)

    async def close(self) -> None:
        async with self.sending:  # a send going on finishes first
            self.flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.flusher
        for attempt in range(3):  # the attempt's last word: a few more tries than a periodic flush
            await self.flush(raise_errors=False)
            if not self.unsent:
                return
            await asyncio.sleep(0.5 * (attempt + 1))
        log.error("%d metadata operation(s) of run %s were not stored: the API could not be reached",
                  sum(len(ops) for _, ops in self.unsent), self.run_id)


MAX_REQUEST_OPERATIONS = 1000


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def _body(ops: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The request body of these operations (what came before the last replace is overwritten by it)."""
    body: dict[str, Any] = {}
    for target, op in ops:
        if target == "operations" and op["type"] == "replace":
            body["metadata"] = op["value"]
            body["operations"] = []
            continue
        body.setdefault(target, []).append(op)
    return body


_current: _Attempt | None = None


def _attempt() -> _Attempt:
    if _current is None:
        raise TaskRunError("metadata can only be changed inside a running task; outside one, use"
                           " runs.update_metadata(run_id, ...)")
    return _current


def _begin(run_id: str, initial: dict[str, Any]) -> None:
    """The runtime: an attempt of `run_id` starts with this metadata."""
    global _current
    _current = _Attempt(run_id, initial)


async def _end() -> None:
    """The runtime: the attempt ended; send what is queued."""
    global _current
    attempt, _current = _current, None
    if attempt is not None:
        await attempt.close()


class _Target:
    """Operations on the metadata of this run's parent or root (sent with this run's)."""

    def __init__(self, field: str) -> None:
        self._field = field

    def _queue(self, op: dict[str, Any]) -> None:
        if "key" in op:
            _path(op["key"])
        _attempt().queue(self._field, op)

    def set(self, key: str, value: Any) -> None:
        """Set `key` to `value`."""
        self._queue({"type": "set", "key": key, "value": value})

    def delete(self, key: str) -> None:
        """Remove `key`."""
        self._queue({"type": "delete", "key": key})

    def append(self, key: str, value: Any) -> None:
        """Add `value` at the end of the list at `key` (made if missing)."""
        self._queue({"type": "append", "key": key, "value": value})

    def remove(self, key: str, value: Any) -> None:
        """Take every item equal to `value` out of the list at `key`."""
        self._queue({"type": "remove", "key": key, "value": value})

    def increment(self, key: str, value: float = 1) -> None:
        """Add `value` to the number at `key` (0 if missing)."""
        _number(value)
        self._queue({"type": "increment", "key": key, "value": value})

    def decrement(self, key: str, value: float = 1) -> None:
        """Subtract `value` from the number at `key` (0 if missing)."""
        _number(value)
        self._queue({"type": "decrement", "key": key, "value": value})

    def update(self, values: dict[str, Any]) -> None:
        """Merge `values` in at the top."""
        if not isinstance(values, dict):
            raise TaskRunError(f"update() takes a dict, got {type(values).__name__}")
        self._queue({"type": "update", "value": values})


def _number(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TaskRunError(f"increment() and decrement() take a finite number, got {value!r}")


_this = _Target("operations")
parent = _Target("parentOperations")
root = _Target("rootOperations")

set = _this.set  # noqa: A001 - the seed's names
delete = _this.delete
append = _this.append
remove = _this.remove
increment = _this.increment
decrement = _this.decrement


def replace(values: dict[str, Any]) -> None:
    """Make `values` the run's whole metadata."""
    if not isinstance(values, dict):
        raise TaskRunError(f"replace() takes a dict, got {type(values).__name__}")
    _attempt().queue("operations", {"type": "replace", "value": values})


def current() -> dict[str, Any]:
    """The run's metadata as this attempt sees it (a copy): as it was when the attempt started,
    with this attempt's own changes (not its `parent` or `root` operations)."""
    attempt = _attempt()
    with attempt.lock:
        return copy.deepcopy(attempt.value)


def get(key: str, default: Any = None) -> Any:
    """The value at `key` (a name or a JSON path), or `default`."""
    attempt = _attempt()
    with attempt.lock:
        node: Any = attempt.value
    for name in _path(key):
        if not isinstance(node, dict) or name not in node:
            return default
        node = node[name]
    return copy.deepcopy(node)


async def flush() -> None:
    """Send the queued operations now (from an async task; a sync task's are sent by the
    event loop every 250 ms and when it ends)."""
    attempt = _attempt()
    if threading.get_ident() != attempt.loop_thread:
        raise TaskRunError("await metadata.flush() from an async task; a sync task's metadata is sent"
                           " every 250 ms and when the attempt ends")
    await attempt.flush()
