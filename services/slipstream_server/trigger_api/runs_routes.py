"""Runs as a collection: `GET /api/v1/runs` (pages newest first, with the seed's filters and
cursors), `POST /api/v1/runs/{runId}/replay`, `POST /api/v1/runs/{runId}/tags` and
`PUT /api/v1/runs/{runId}/metadata`."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
from aiohttp import web
from slipstream_core.durations import DurationOutOfRange, parse_duration
from slipstream_platform.http import HttpError, decode_body, json_response
from slipstream_platform.ids import new_id
from slipstream_platform.service import Service
from slipstream_platform.settings import TriggerApiSettings
from slipstream_platform.store import metadata as metadata_store
from slipstream_platform.store import run_lists
from slipstream_platform.store import runs as run_store
from slipstream_platform.store.environments import Environment
from slipstream_platform.views import listed_run
from slipstream_proto import (
    AddTagsRequest,
    MetadataOperation,
    RunList,
    RunListPagination,
    RunMetadata,
    RunReference,
    RunStatus,
    RunTags,
    UpdateMetadataRequest,
    metadata_key_problem,
)

Authenticate = Callable[[web.Request], Awaitable[Environment]]

DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 100
# Each task identifier is one ordered read of its index; other lists are checked on the rows.
MAX_TASKS = 20
MAX_VALUES = 100

_LISTS = {"filter[status]", "filter[taskIdentifier]", "filter[version]", "filter[tag]", "filter[queue]"}
_SINGLE = {"filter[batch]", "filter[schedule]", "filter[isTest]", "filter[createdAt][from]",
           "filter[createdAt][to]", "filter[createdAt][period]", "page[size]", "page[after]", "page[before]"}
_STATUSES = {s.value for s in RunStatus}
_tags_decoder = msgspec.json.Decoder(AddTagsRequest)
_metadata_decoder = msgspec.json.Decoder(UpdateMetadataRequest)
MAX_OPERATIONS = 1000


def metadata_operations(body: UpdateMetadataRequest) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                               list[dict[str, Any]]]:
    """The operations for the run, its parent and its root, checked (400 names the bad one)."""
    def checked(field: str, ops: list[MetadataOperation]) -> list[dict[str, Any]]:
        if len(ops) > MAX_OPERATIONS:
            raise HttpError(400, f"{field} has {len(ops)} operations; at most {MAX_OPERATIONS} a request")
        out = []
        for i, op in enumerate(ops):
            where = f"{field}[{i}] ({op.type})"
            has_value = op.value is not msgspec.UNSET
            if op.type == "update":
                if op.key is not None or not isinstance(op.value, dict):
                    raise HttpError(422, f"{where}: an update takes an object `value` and no `key`")
            else:
                problem = metadata_key_problem(op.key)
                if problem is not None:
                    raise HttpError(422, f"{where}: {problem}")
                if op.type == "delete" and has_value:
                    raise HttpError(422, f"{where}: a delete takes no `value`")
                if op.type != "delete" and not has_value:
                    raise HttpError(422, f"{where}: `value` is missing")
                if op.type in ("increment", "decrement") and (
                        isinstance(op.value, bool) or not isinstance(op.value, int | float)
                        or not math.isfinite(op.value)):
                    raise HttpError(422, f"{where}: `value` must be a finite number")
            out.append(msgspec.to_builtins(op))
        return out

    ops = checked("operations", body.operations)
    if body.metadata is not None:
        ops.insert(0, {"type": "replace", "value": body.metadata})
    return ops, checked("parentOperations", body.parent_operations), checked("rootOperations", body.root_operations)


def _values(query: Mapping[str, str], name: str, most: int = MAX_VALUES) -> list[str]:
    text = query.get(name)
    if text is None:
        return []
    values = list(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))  # each once
    if not values:
        raise HttpError(400, f"{name} is empty: give one value or a comma-separated list")
    if len(values) > most:
        raise HttpError(400, f"{name} has {len(values)} values; at most {most}")
    return values


# The last millisecond of year 9999 (the OpenAPI document states the range).
MAX_EPOCH_MS = 253_402_300_799_999


def _epoch_ms(query: Mapping[str, str], name: str) -> datetime | None:
    text = query.get(name)
    if text is None:
        return None
    try:
        ms = int(text)
        if not 0 <= ms <= MAX_EPOCH_MS:
            raise ValueError(text)
        return datetime.fromtimestamp(ms / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        raise HttpError(400, f"{name} must be a time in milliseconds since the epoch, not {text[:40]!r}") from None


def parse_listing(query: Mapping[str, str], now: datetime) -> tuple[run_lists.RunFilter, int, str | None, str | None,
                                                                   bool]:
    """The filter, page size and cursors of a listing request; whether it can match test runs
    only (`filter[isTest]=true`: Slipstream makes no test runs yet). 400 names what is wrong."""
    for name, value in query.items():
        if name not in _LISTS and name not in _SINGLE:
            if name.startswith(("filter[", "page[")):
                raise HttpError(400, f"unknown query parameter {name[:60]!r}: the filters are "
                                     + ", ".join(sorted(_LISTS | _SINGLE)))
            continue
        if "\x00" in value:
            raise HttpError(400, f"{name} contains a NUL character")
        try:
            value.encode()
        except UnicodeEncodeError:
            raise HttpError(400, f"{name} is not valid UTF-8") from None
    statuses = _values(query, "filter[status]")
    for status in statuses:
        if status not in _STATUSES:
            raise HttpError(400, f"filter[status]: {status[:40]!r} is not a run status (one of "
                                 + ", ".join(sorted(_STATUSES)) + ")")
    size_text = query.get("page[size]", str(DEFAULT_PAGE_SIZE))
    try:
        size = int(size_text)
    except ValueError:
        raise HttpError(400, f"page[size] must be a whole number from 1 to {MAX_PAGE_SIZE}") from None
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise HttpError(400, f"page[size] must be from 1 to {MAX_PAGE_SIZE}, not {size}")
    after, before = query.get("page[after]"), query.get("page[before]")
    if after is not None and before is not None:
        raise HttpError(422, "give page[after] or page[before], not both")
    for name, cursor in (("page[after]", after), ("page[before]", before)):
        if cursor is not None and not cursor.strip():
            raise HttpError(400, f"{name} is empty: give the id of a run (a page's pagination cursor)")
    is_test = query.get("filter[isTest]")
    if is_test not in (None, "true", "false"):
        raise HttpError(400, f"filter[isTest] must be true or false, not {is_test[:20]!r}")
    created_from = _epoch_ms(query, "filter[createdAt][from]")
    created_to = _epoch_ms(query, "filter[createdAt][to]")
    period = query.get("filter[createdAt][period]")
    if period is not None:
        try:
            since = now - parse_duration(period)
        except DurationOutOfRange as exc:
            raise HttpError(422, f"filter[createdAt][period]: {exc}") from None
        except ValueError as exc:
            raise HttpError(400, f"filter[createdAt][period]: {exc}") from None
        except OverflowError:
            raise HttpError(422, f"filter[createdAt][period]: {period[:40]!r} reaches past the first year") from None
        created_from = max(created_from, since) if created_from else since
    where = run_lists.RunFilter(
        statuses=statuses,
        task_identifiers=_values(query, "filter[taskIdentifier]", MAX_TASKS),
        versions=_values(query, "filter[version]"),
        tags=_values(query, "filter[tag]"),
        queues=_values(query, "filter[queue]"),
        batch_id=query.get("filter[batch]"),
        schedule_id=query.get("filter[schedule]"),
        created_from=created_from,
        created_to=created_to,
    )
    return where, size, after, before, is_test == "true"


def add_routes(service: Service[TriggerApiSettings], authenticate: Authenticate) -> None:
    """Register the listing, replay and tag routes."""

    async def listing(request: web.Request) -> web.Response:
        env = await authenticate(request)
        for name in request.query:
            if len(request.query.getall(name)) > 1:
                raise HttpError(400, f"{name[:60]} is given twice")
        where, size, after, before, test_only = parse_listing(request.query, datetime.now(UTC))
        if test_only:
            return json_response(RunList(data=[], pagination=RunListPagination()))
        try:
            found = await run_lists.page(service.pool, env.id, where, size=size, after=after, before=before)
        except run_lists.CursorNotFound as exc:
            which = "page[after]" if after else "page[before]"
            raise HttpError(422, f"{which}: {str(exc)[:80]!r} is not a run of this environment") from None
        return json_response(RunList(data=[listed_run(r) for r in found.rows],
                                     pagination=RunListPagination(next=found.next, previous=found.previous)))

    async def replay(request: web.Request) -> web.Response:
        env = await authenticate(request)
        run_id = request.match_info["run_id"]
        request_id = request.headers.get("x-slipstream-request-id")
        replayed = await run_store.replay(service.pool, env.id, run_id, new_id("run"), request_id)
        if replayed is None:
            made = await run_store.by_request_id(service.pool, env.id, request_id) if request_id else None
            if made is None:
                raise HttpError(404, "Run not found")
            return json_response(RunReference(id=made))
        await service.bus.announce([replayed], "triggered")
        return json_response(RunReference(id=replayed.run_id))

    async def add_tags(request: web.Request) -> web.Response:
        env = await authenticate(request)
        body = decode_body(await request.read() or b"{}", _tags_decoder)
        tags = [body.tags] if isinstance(body.tags, str) else body.tags
        if not tags:
            raise HttpError(400, "tags is empty: give a tag or a list of 1-10 tags")
        for tag in tags:
            if not 0 < len(tag) <= run_store.MAX_TAG_LENGTH or "\x00" in tag:
                raise HttpError(422, f"each tag must be 1-{run_store.MAX_TAG_LENGTH} characters without NUL,"
                                     f" got {len(tag)}: {tag[:40]!r}")
        try:
            async with service.pool.acquire() as conn:
                after = await run_store.add_tags(conn, env.id, request.match_info["run_id"], tags)
        except run_store.TooManyTags as exc:
            raise HttpError(422, str(exc)) from None
        if after is None:
            raise HttpError(404, "Run not found")
        tags_after, changed = after
        if changed is not None:
            await service.bus.announce([changed])  # realtime subscribers see the new tags
        return json_response(RunTags(tags=tags_after))

    async def update_metadata(request: web.Request) -> web.Response:
        env = await authenticate(request)
        raw = await request.read()
        if not raw:
            raise HttpError(400, 'a JSON body is required, e.g. {"operations": [{"type": "set", "key": "k",'
                                 ' "value": 1}]}')
        body = decode_body(raw, _metadata_decoder)
        own, parent_ops, root_ops = metadata_operations(body)
        run_id = request.match_info["run_id"]
        found = await metadata_store.targets(service.pool, env.id, run_id)
        if found is None:
            raise HttpError(404, "Run not found")
        # From the run towards the top of its tree (the lock order); a run at the top is its
        # own parent and root.
        changes = [(run_id, own), (found.parent_id or run_id, parent_ops), (found.root_id or run_id, root_ops)]
        try:
            async with service.pool.acquire() as conn:
                updated = await metadata_store.apply(conn, env.id, changes,
                                                     request_id=request.headers.get("x-slipstream-request-id"))
        except metadata_store.TooLarge as exc:
            raise HttpError(422, str(exc)) from None
        except metadata_store.NoSuchRun:
            raise HttpError(404, "Run not found") from None
        except asyncpg.exceptions.DeadlockDetectedError:
            raise HttpError(503, "the run's tree was being changed (a cancel?): send it again",
                            {"Retry-After": "1"}) from None
        except asyncpg.exceptions.ProgramLimitExceededError as exc:
            raise HttpError(422, f"the metadata cannot be stored: {exc}") from None
        except asyncpg.exceptions.DataError as exc:  # e.g. a number Postgres cannot hold
            raise HttpError(422, f"the metadata cannot be stored: {exc}") from None
        await service.bus.announce([u.transition for u in updated.values()])
        if run_id in updated:
            return json_response(RunMetadata(metadata=updated[run_id].metadata))
        current = await service.pool.fetchval("SELECT coalesce(metadata, '{}')::text FROM runs WHERE id = $1", run_id)
        return json_response(RunMetadata(metadata=msgspec.json.decode(current)))

    service.app.router.add_get("/api/v1/runs", listing)
    service.app.router.add_put("/api/v1/runs/{run_id}/metadata", update_metadata)
    service.app.router.add_post("/api/v1/runs/{run_id}/replay", replay)
    service.app.router.add_post("/api/v1/runs/{run_id}/tags", add_tags)
