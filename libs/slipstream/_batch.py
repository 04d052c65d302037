"""Batch triggers: many runs in one request (`POST /api/v1/tasks/{id}/batch`, `/api/v1/tasks/batch`),
and inside a task, a batch the parent waits for (a BATCH waitpoint: up to 1,000 items, the
supervisor creates the batch in the transaction that suspends the parent; more are streamed
into the batch over HTTP first, in chunks whose request ids the run's retries repeat)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec
from slipstream_proto import (
    BatchAppendRequest,
    BatchOptions,
    BatchTaskItem,
    BatchTriggerRequest,
    BatchTriggerResponse,
    BatchTriggerTasksRequest,
    TriggerOptions,
)
from slipstream_proto import (
    BatchItem as WireItem,
)

from slipstream import _client
from slipstream._codec import encoder
from slipstream._context import BatchResult
from slipstream._task import PUBLIC_TOKEN_HEADER, BatchHandle, BatchKwargs, RunHandle, trigger_options, with_parent
from slipstream.errors import ApiError, BatchItemError, TaskRunError

if TYPE_CHECKING:
    from slipstream._task import Task

MAX_ITEMS = 1000
_ITEM = '{"payload": ..., "options": {...}}'
_json = encoder


class Item(msgspec.Struct, frozen=True):
    """A checked item: the task to run, its payload and its wire options."""

    task_identifier: str
    payload: Any
    options: TriggerOptions


Checker = Callable[[int, Any], Item]


def _checked_iterable(items: object, shape: str) -> None:
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, (Iterable, AsyncIterable)):
        raise BatchItemError(f"a batch takes a list, another iterable or an async iterable of items like {shape},"
                             f" not {type(items).__name__}")


async def _each(items: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


def _mapping(index: int, item: object, keys: frozenset[str], shape: str) -> Mapping[str, Any]:
    if not isinstance(item, Mapping):
        raise BatchItemError(f"items[{index}] must be a dict like {shape}, not {type(item).__name__}")
    unknown = set(item) - keys
    if unknown:
        raise BatchItemError(f"items[{index}] has unknown key(s) {', '.join(sorted(map(str, unknown)))};"
                             f" an item is like {shape}")
    return item


def _options(index: int, item: Mapping[str, Any]) -> TriggerOptions:
    options = item.get("options") or {}
    if not isinstance(options, Mapping):
        raise BatchItemError(f"items[{index}].options must be a dict of trigger options, not {type(options).__name__}")
    try:
        return with_parent(trigger_options(**options))
    except TypeError as exc:
        raise BatchItemError(f"items[{index}].options: {exc}") from None


def of_task(task: Task[Any, Any] | str, items: object) -> Checker:
    """The check of items of one task (a Task validates each payload with its schema; a task id does not)."""
    _checked_iterable(items, _ITEM)
    keys = frozenset({"payload", "options"})

    def check(index: int, raw: object) -> Item:
        item = _mapping(index, raw, keys, _ITEM)
        if not isinstance(task, str) and task.parse is not None:
            task.parse(item.get("payload"))
        return Item(task if isinstance(task, str) else task.id, item.get("payload"), _options(index, item))

    return check


def of_tasks(items: object, *, by_task: bool) -> Checker:
    """The check of items naming their task: by id ("id"), or as a Task ("task", payloads
    validated by schema tasks)."""
    from slipstream._task import Task

    key = "task" if by_task else "id"
    shape = ('{"task": my_task, "payload": ..., "options": {...}}' if by_task
             else '{"id": "task-id", "payload": ..., "options": {...}}')
    _checked_iterable(items, shape)
    keys = frozenset({key, "payload", "options"})

    def check(index: int, raw: object) -> Item:
        item = _mapping(index, raw, keys, shape)
        target = item.get(key)
        if by_task:
            if not isinstance(target, Task):
                raise BatchItemError(f"items[{index}].task must be a task (a @task function), not {target!r}")
            if target.parse is not None:
                target.parse(item.get("payload"))
            task_id = target.id
        else:
            if not isinstance(target, str) or not target:
                raise BatchItemError(f"items[{index}].id must be a task id, not {target!r}")
            task_id = target
        return Item(task_id, item.get("payload"), _options(index, item))

    return check


async def _chunks(items: Iterable[Any] | AsyncIterable[Any], check: Checker, size: int
                  ) -> AsyncGenerator[tuple[list[Item], bool], None]:
    """The checked items in chunks of `size`, each with whether more follow; the iterable is
    read as the chunks go (one chunk and one item held at a time)."""
    chunk: list[Item] = []
    index = 0
    async for raw in _each(items):
        if len(chunk) == size:
            yield chunk, True
            chunk = []
        chunk.append(check(index, raw))
        index += 1
    if not chunk:
        raise BatchItemError("a batch needs at least one item")
    yield chunk, False


def _batch_options(options: BatchKwargs, *, open: bool) -> BatchOptions | None:
    unknown = set(options) - set(BatchKwargs.__annotations__)
    if unknown:
        raise TypeError(f"unknown batch option(s) {', '.join(sorted(unknown))}; known: "
                        + ", ".join(BatchKwargs.__annotations__))
    return BatchOptions(**options, open=open) if options or open else None


async def send(items: Iterable[Any] | AsyncIterable[Any], check: Checker, options: BatchKwargs, *,
               task_id: str | None) -> BatchHandle:
    """Trigger the batch over HTTP: of one task (`task_id`), or of the tasks each item names.
    More than 1,000 items go as several requests into one batch: the first opens it, the
    last seals it."""
    _batch_options(options, open=False)  # unknown options fail before anything is read
    handle: BatchHandle | None = None
    runs: list[RunHandle[Any]] = []
    async for chunk, more in _chunks(items, check, MAX_ITEMS):
        if handle is None:
            handle = await _first(chunk, options, task_id=task_id, more=more, request_id=uuid.uuid4().hex)
            runs += handle.runs
            if handle.is_cached:
                return handle  # a batch idempotency key: the batch made before, whole
            continue
        runs += await _append(handle.batch_id, chunk, seal=not more, request_id=uuid.uuid4().hex)
    assert handle is not None
    return BatchHandle(handle.batch_id, runs, handle.is_cached, handle.public_access_token)


async def _append(batch_id: str, chunk: list[Item], *, seal: bool, request_id: str) -> list[RunHandle[Any]]:
    body = BatchAppendRequest(items=[BatchTaskItem(task=i.task_identifier, payload=i.payload, options=i.options)
                                     for i in chunk], seal=seal)
    response = await _client.request("POST", f"/api/v2/batches/{batch_id}/items", BatchTriggerResponse, body,
                                     request_id=request_id)
    return _handles(response)


async def _first(items: list[Item], options: BatchKwargs, *, task_id: str | None, more: bool,
                 request_id: str) -> BatchHandle:
    batch_options = _batch_options(options, open=more)
    body: BatchTriggerRequest | BatchTriggerTasksRequest
    if task_id is not None:
        path = f"/api/v1/tasks/{task_id}/batch"
        body = BatchTriggerRequest(items=[WireItem(payload=i.payload, options=i.options) for i in items],
                                   options=batch_options)
    else:
        path = "/api/v1/tasks/batch"
        body = BatchTriggerTasksRequest(items=[BatchTaskItem(task=i.task_identifier, payload=i.payload,
                                                             options=i.options) for i in items],
                                        options=batch_options)
    response, headers = await _client.request_with_headers("POST", path, BatchTriggerResponse, body,
                                                           request_id=request_id)
    return BatchHandle(response.id, _handles(response), response.is_cached, headers.get(PUBLIC_TOKEN_HEADER))


def _handles(response: BatchTriggerResponse) -> list[RunHandle[Any]]:
    return [RunHandle(r.id, r.is_cached, r.task_identifier) for r in response.runs]


async def wait_for(items: Iterable[Any] | AsyncIterable[Any], check: Checker) -> BatchResult[Any]:
    """Inside a task: trigger the batch and suspend until every run is final (the slot is freed).

    Up to 1,000 items go with the wait: the supervisor creates the batch in the transaction
    that suspends the run. More are streamed into one batch over HTTP first, a chunk of 1,000
    at a time (one chunk in memory), each request id made of the run and the wait's position,
    so a retried run that gets here again adds nothing its earlier attempt added; the wait
    then names the sealed batch. On a replay the items are read and checked again, not sent.
    """
    from slipstream._task import current_run_id
    from slipstream._waits import next_waitpoint, waitpoint

    next_waitpoint("BATCH")  # outside a task: raise before reading or sending anything
    async with contextlib.aclosing(_chunks(items, check, MAX_ITEMS)) as chunks:
        chunk, more = await anext(chunks)
        if not more:
            # (Steps or waits while the items were read took their positions before this one.)
            entry = await waitpoint("BATCH", items_json=_json.encode(chunk).decode())
            return msgspec.json.decode(entry.result_json or "{}", type=BatchResult[Any])
        seq, journaled = next_waitpoint("BATCH")
        if journaled:  # a replay: the batch was made and waited for
            async for _ in chunks:
                pass
            _same_position(seq)
            entry = await waitpoint("BATCH")
        else:
            key = f"{current_run_id.get()}:{seq}:batch"
            try:
                handle = await _first(chunk, {}, task_id=None, more=True, request_id=f"{key}:0")
                del chunk
                n = 1
                async for chunk, more in chunks:
                    _same_position(seq)
                    await _append(handle.batch_id, chunk, seal=not more, request_id=f"{key}:{n}")
                    n += 1
            except ApiError as exc:
                if exc.status != 409:
                    raise
                raise TaskRunError(f"streaming the batch failed ({exc.message}); a retried run streams again the"
                                   " batch its earlier attempt streamed here, so it must read the same items") from None
            _same_position(seq)
            entry = await waitpoint("BATCH", batch_id=handle.batch_id)
    return msgspec.json.decode(entry.result_json or "{}", type=BatchResult[Any])


def _same_position(seq: int) -> None:
    from slipstream._waits import next_waitpoint

    if next_waitpoint("BATCH")[0] != seq:
        raise TaskRunError("a waited batch of more than 1,000 items is streamed as its items are read, so reading"
                           " them past the first 1,000 must not run step() or a wait: read them into a list first")
