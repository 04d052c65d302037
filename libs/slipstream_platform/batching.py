"""Batches: many triggers in one request, accepted or refused whole, in one transaction.

The items without an idempotency or debounce key (most batches) are created with one INSERT
(`runs.insert_many`); an item with a key goes through `trigger_run`, so two items with the
same key resolve to the same run, and a key that stands for a run already returns it. The
batch record keeps the runs in the order of the items. A batch idempotency key makes a
repeated batch return the first one; a repeated request id (the SDK retrying after a network
error) returns the batch it made.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
from slipstream_proto import FINAL_STATUSES, TriggerOptions

from slipstream_platform.ids import new_id, new_ids
from slipstream_platform.store import batches as batch_store
from slipstream_platform.store import idempotency, workers
from slipstream_platform.store import queues as queue_store
from slipstream_platform.store import runs as run_store
from slipstream_platform.store.runs import Transition
from slipstream_platform.triggering import (
    IDEMPOTENCY_KEY_TTL_SECONDS,
    RESERVED_KEY_PREFIX,
    Parent,
    RunPlan,
    TriggerRejected,
    TriggerResult,
    check_routing,
    duration_seconds,
    new_run,
    plan_run,
    trigger_run,
)

MAX_ITEMS = 1000
# A batch a parent waits for is created by its supervisor in one transaction: up to this many.
MAX_WAIT_ITEMS = 10_000

# A JSON \u0000 escape (not an escaped backslash followed by "u0000"): Postgres's jsonb refuses it.
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


class BatchItem(msgspec.Struct, frozen=True):
    """One item of a batch: the task to run, its payload and its options."""

    task_identifier: str
    payload: Any
    options: TriggerOptions | None


class BatchResult(msgspec.Struct, frozen=True):
    """The batch a request stands for, with one result per item in the order of the items."""

    batch_id: str
    is_cached: bool
    runs: list[TriggerResult]
    task_identifiers: list[str]

    @property
    def transitions(self) -> list[Transition]:
        return [r.transition for r in self.runs if r.transition is not None]


def plan_batch(items: list[BatchItem], *, environment_type: str, now: datetime, first_index: int = 0,
               max_items: int = MAX_ITEMS) -> list[RunPlan]:
    """Check every item; TriggerRejected names the first bad item by its index in the batch
    (`first_index`: where this chunk of items starts)."""
    if not items:
        raise TriggerRejected(400, "a batch needs at least one item in `items`")
    if len(items) > max_items:
        raise TriggerRejected(400, f"a request may hold at most {max_items:,} items, got {len(items):,}: send"
                                   " the rest in another request (an open batch takes more chunks)")
    plans = []
    for index, item in enumerate(items):
        try:
            plan = plan_run(item.task_identifier, item.payload, item.options, environment_type=environment_type,
                            now=now)
            _check_storable(plan)
        except TriggerRejected as exc:
            raise TriggerRejected(exc.status, f"items[{first_index + index}]: {exc.message}") from None
        plans.append(plan)
    return plans


def _check_storable(plan: RunPlan) -> None:
    """Refuse what Postgres cannot store, before the batch's one INSERT would fail as a whole."""
    for field, text in (("payload", plan.payload_json), ("options.metadata", plan.metadata_json)):
        if text is not None and "\\u0000" in text and _JSON_NUL.search(text):
            raise TriggerRejected(422, f"{field} contains a NUL character (\\u0000), which cannot be stored")
    if "\x00" not in "".join((plan.queue or "", plan.concurrency_key or "", plan.idempotency_key or "",
                              plan.debounce.key if plan.debounce else "", *plan.tags)):
        return  # (the common case, without naming every field)
    texts = {"options.queue.name": plan.queue, "options.concurrencyKey": plan.concurrency_key,
             "options.idempotencyKey": plan.idempotency_key,
             "options.debounce.key": plan.debounce.key if plan.debounce else None}
    texts |= {f"options.tags[{i}]": tag for i, tag in enumerate(plan.tags)}
    for field, value in texts.items():
        if value is not None and "\x00" in value:
            raise TriggerRejected(422, f"{field} contains a NUL character, which cannot be stored")


def batch_key_ttl(key: str | None, ttl: str | None) -> int:
    """Seconds a batch idempotency key stands for its batch; TriggerRejected if the key is bad."""
    if key is not None:
        if not 0 < len(key) <= 2048 or "\x00" in key:
            raise TriggerRejected(422, "options.idempotencyKey must be 1-2048 characters, without NUL")
        if key.startswith(RESERVED_KEY_PREFIX):
            raise TriggerRejected(422, f"idempotencyKeys starting with {RESERVED_KEY_PREFIX!r} are reserved")
    if ttl is None:
        return IDEMPOTENCY_KEY_TTL_SECONDS
    return duration_seconds("options.idempotencyKeyTTL", ttl)


async def trigger_batch(
    conn: asyncpg.Connection,
    plans: list[RunPlan],
    *,
    environment_id: str,
    task_identifier: str | None,
    parent: Parent | None,
    traceparent: str | None,
    request_id: str | None = None,
    idempotency_key: str | None = None,
    idempotency_ttl_seconds: int = IDEMPOTENCY_KEY_TTL_SECONDS,
    open: bool = False,
    lock_parent: bool = False,
) -> BatchResult:
    """Create the batch and its runs in one transaction, or return the batch this request (or
    its idempotency key) made already. An `open` batch takes more chunks (`append_batch`).
    `lock_parent` (a request from outside the parent's own supervisor): refuse the batch if the
    parent is final, holding it so that a cancel of it waits for these children to exist."""
    async with conn.transaction():
        if lock_parent and parent is not None:
            await _open_parent(conn, parent.id)
        if request_id is not None:
            # Two copies of one request at once (a client retrying a slow one) wait for each other.
            await idempotency.lock(conn, environment_id, "batch-request", request_id)
            existing = await batch_store.by_request_id(conn, environment_id, request_id)
            if existing is not None:
                # The same request again: the same answer (not a cached batch: a streamed batch's
                # client goes on sending its next chunk).
                answer = await _cached(conn, existing)
                runs = [TriggerResult(run.run_id, run.run_id in existing.cached_run_ids, None) for run in answer.runs]
                return BatchResult(existing.id, False, runs, answer.task_identifiers)
        if idempotency_key is not None:
            await idempotency.lock(conn, environment_id, "batch", idempotency_key)
            existing = await batch_store.by_idempotency_key(conn, environment_id, idempotency_key)
            if existing is not None:
                return await _cached(conn, existing)
            await batch_store.release_expired_key(conn, environment_id, idempotency_key)
        batch_id = new_id("batch")
        runs = await _create_runs(conn, plans, environment_id=environment_id, parent=parent,
                                  traceparent=traceparent, batch_id=batch_id, first_index=0)
        expires = (datetime.now(UTC) + timedelta(seconds=idempotency_ttl_seconds)
                   if idempotency_key is not None else None)
        await batch_store.insert(conn, id=batch_id, environment_id=environment_id, task_identifier=task_identifier,
                                 run_ids=[r.run_id for r in runs],
                                 cached_run_ids=sorted({r.run_id for r in runs if r.is_cached}),
                                 parent_run_id=parent.id if parent else None,
                                 idempotency_key=idempotency_key, idempotency_expires_at=expires,
                                 request_id=request_id, sealed=not open)
    return BatchResult(batch_id, False, runs, [plan.task_identifier for plan in plans])


async def append_batch(
    conn: asyncpg.Connection,
    plans: list[RunPlan],
    *,
    environment_id: str,
    batch_id: str,
    seal: bool,
    traceparent: str | None,
    request_id: str | None = None,
) -> BatchResult:
    """Add a chunk of items to an open batch (its runs after the batch's runs so far), in one
    transaction; with `seal`, the batch takes no more. A repeated request id returns its chunk."""
    async with conn.transaction():
        batch = await batch_store.for_append(conn, environment_id, batch_id)
        if batch is None:
            raise TriggerRejected(404, "Batch not found")
        if request_id is not None:
            done = await batch_store.chunk(conn, batch_id, request_id)
            if done is not None:
                first, count = done
                if count != len(plans) or (seal and not batch.sealed):
                    raise TriggerRejected(409, f"request id {request_id} added {count} items to batch {batch_id}"
                                               f"{'' if batch.sealed else ' without sealing it'}; this request"
                                               f" has {len(plans)}{' and seals it' if seal else ''}: a repeated"
                                               " request must be the same")
                cached = await _cached(conn, batch)
                return BatchResult(batch_id, True, cached.runs[first:first + count],
                                   cached.task_identifiers[first:first + count])
        if batch.sealed:
            raise TriggerRejected(409, f"batch {batch_id} is sealed: its last chunk was sent")
        for i, plan in enumerate(plans):
            if batch.task_identifier is not None and plan.task_identifier != batch.task_identifier:
                raise TriggerRejected(422, f"items[{len(batch.run_ids) + i}]: batch {batch_id} runs"
                                           f" {batch.task_identifier!r} only, not {plan.task_identifier!r}")
        parent = None
        if batch.parent_run_id is not None:
            await _open_parent(conn, batch.parent_run_id)
            row = await run_store.get(conn, environment_id, batch.parent_run_id)
            parent = Parent.of(row) if row is not None else None
        first = len(batch.run_ids)
        runs = await _create_runs(conn, plans, environment_id=environment_id, parent=parent,
                                  traceparent=traceparent, batch_id=batch_id, first_index=first)
        await batch_store.append(conn, batch_id, [r.run_id for r in runs],
                                 sorted({r.run_id for r in runs if r.is_cached}), seal)
        if request_id is not None:
            await batch_store.add_chunk(conn, batch_id, request_id, first, len(runs))
    return BatchResult(batch_id, False, runs, [plan.task_identifier for plan in plans])


async def _open_parent(conn: asyncpg.Connection, parent_id: str) -> None:
    """Lock the parent of a batch's runs until the transaction ends (`runs.cancel` locks it
    first, so the two take turns: a cancel after this sees the new children, one before makes
    this refuse them), and refuse children of a finished (or canceled) run."""
    status = await conn.fetchval("SELECT status FROM runs WHERE id = $1 FOR SHARE", parent_id)
    if status in FINAL_STATUSES:
        raise TriggerRejected(409, f"run {parent_id} is {status}: a finished run triggers no more children")


async def _create_runs(conn: asyncpg.Connection, plans: list[RunPlan], *, environment_id: str, parent: Parent | None,
                       traceparent: str | None, batch_id: str, first_index: int) -> list[TriggerResult]:
    """The runs of a batch's items (`first_index`: the position of the first, for errors)."""
    limits: dict[str, int] = {}
    for i, plan in enumerate(plans):
        if plan.queue is not None and plan.queue_limit is not None:
            if limits.setdefault(plan.queue, plan.queue_limit) != plan.queue_limit:
                raise TriggerRejected(422, f"items[{first_index + i}]: queue {plan.queue!r} is given two"
                                           " concurrencyLimits in one batch")
    for name, limit in sorted(limits.items()):  # in name order: two batches never lock crosswise
        await queue_store.set_limit(conn, environment_id, name, limit)
    results: list[TriggerResult | None] = [None] * len(plans)
    # (Their queue limits are set above: trigger_run need not set them again.)
    plain = [i for i, plan in enumerate(plans) if plan.idempotency_key is None and plan.debounce is None]
    await check_routing(conn, environment_id, plans, first_index)
    try:
        created = await run_store.insert_many(conn, [
            new_run(plans[i], environment_id=environment_id,
                    status="DELAYED" if plans[i].delayed_until is not None else None,
                    parent=parent, traceparent=traceparent, batch_id=batch_id, run_id=run_id)
            for i, run_id in zip(plain, new_ids("run", len(plain)), strict=True)])
    except (asyncpg.exceptions.UntranslatableCharacterError, asyncpg.exceptions.DataError) as exc:
        raise TriggerRejected(422, f"an item cannot be stored: {exc}") from None
    for i, transition in zip(plain, created, strict=True):
        results[i] = TriggerResult(transition.run_id, False, transition)
    served: dict[str, bool] = {}
    for i, plan in enumerate(plans):
        if results[i] is not None:
            continue
        if plan.task_identifier not in served:
            served[plan.task_identifier] = await workers.serves_task(conn, environment_id, plan.task_identifier)
        try:
            results[i] = await trigger_run(conn, plan, environment_id=environment_id,
                                           served=served[plan.task_identifier], parent=parent,
                                           traceparent=traceparent, batch_id=batch_id)
        except TriggerRejected as exc:
            raise TriggerRejected(exc.status, f"items[{first_index + i}]: {exc.message}") from None
    return [r for r in results if r is not None]


async def _cached(conn: asyncpg.Connection, batch: batch_store.BatchRecord) -> BatchResult:
    """The answer for a batch made already: its runs, each cached."""
    tasks = {r["id"]: r["task_identifier"] for r in await conn.fetch(
        "SELECT id, task_identifier FROM runs WHERE id = ANY($1::text[])", batch.run_ids)}
    return BatchResult(batch.id, True, [TriggerResult(run_id, True, None) for run_id in batch.run_ids],
                       [tasks.get(run_id, batch.task_identifier or "") for run_id in batch.run_ids])
