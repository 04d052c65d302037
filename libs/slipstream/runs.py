"""Reading runs: `await runs.retrieve(id)`, `await runs.list(...)` (or `async for run in
runs.list(...)`) and `async for run in runs.subscribe_to_run(id)`."""

from __future__ import annotations

import asyncio
import builtins
import math
import uuid
from collections.abc import AsyncIterator, Generator, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, overload
from urllib.parse import quote, urlencode

import aiohttp
import msgspec
from slipstream_proto import (
    ListedRun,
    RealtimeError,
    RealtimeMessage,
    RealtimeRun,
    Run,
    RunList,
    RunLogLine,
    RunLogs,
    RunMetadata,
    RunReference,
    RunSpans,
    RunTags,
)

from slipstream import _client, _config
from slipstream._codec import convertible
from slipstream._task import RunHandle, registry
from slipstream.errors import ApiConnectionError, api_error

R = TypeVar("R")

__all__ = ["RunListing", "RunPage", "add_tags", "cancel", "list", "logs", "replay", "reschedule", "retrieve",
           "spans", "subscribe_to_all_runs", "subscribe_to_batch", "subscribe_to_run", "subscribe_to_runs_with_tag",
           "update_metadata"]

_message_decoder = msgspec.json.Decoder(RealtimeMessage)


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


@overload
async def retrieve(run: RunHandle[R]) -> Run[R]: ...


@overload
async def retrieve(run: str | _HasId) -> Run[Any]: ...


async def retrieve(run: str | _HasId) -> Run[Any]:
    """The run (by id, or a handle or run object with an `id`) with its status, payload, output,
    error, attempts, the schedule that created it and its place in its tree (`related_runs`).
    Given a handle of a task this process defines, the output is decoded into the task's
    return type (`Run[R]` for a `RunHandle[R]`)."""
    run_id = run if isinstance(run, str) else run.id
    found: Run[Any] = await _client.request("GET", f"/api/v3/runs/{quote(run_id, safe='')}", Run)
    task = registry.get(getattr(run, "task_identifier", None) or "") if not isinstance(run, str) else None
    if task is not None and found.output is not None and convertible(task.output_type):
        return msgspec.structs.replace(found, output=task.typed_output(found.output))
    return found


class RunPage:
    """One page of `runs.list`, newest first: `data`, and the pages beside it."""

    def __init__(self, query: dict[str, str], answer: RunList) -> None:
        self._query = query
        self.data: builtins.list[ListedRun] = answer.data
        self.next_cursor = answer.pagination.next
        self.previous_cursor = answer.pagination.previous

    def has_next_page(self) -> bool:
        """Whether older runs follow this page."""
        return self.next_cursor is not None

    def has_previous_page(self) -> bool:
        """Whether newer runs come before this page."""
        return self.previous_cursor is not None

    async def get_next_page(self) -> RunPage:
        """The page of the runs just older than this one's (ValueError if there is none)."""
        if self.next_cursor is None:
            raise ValueError("this is the last page of runs: check has_next_page() first")
        return await _page({**self._query, "page[after]": self.next_cursor})

    async def get_previous_page(self) -> RunPage:
        """The page of the runs just newer than this one's (ValueError if there is none)."""
        if self.previous_cursor is None:
            raise ValueError("this is the first page of runs: check has_previous_page() first")
        return await _page({**self._query, "page[before]": self.previous_cursor})


class RunListing:
    """What `runs.list` returns: await it for the first page, or `async for` over every run
    of every page, fetched a page at a time."""

    def __init__(self, query: dict[str, str]) -> None:
        self._query = query

    def __await__(self) -> Generator[Any, None, RunPage]:
        return _page(self._query).__await__()

    async def __aiter__(self) -> AsyncIterator[ListedRun]:
        page = await _page(self._query)
        while True:
            for run in page.data:
                yield run
            if not page.has_next_page():
                return
            page = await page.get_next_page()


async def _page(query: dict[str, str]) -> RunPage:
    answer = await _client.request("GET", f"/api/v1/runs?{urlencode(query)}", RunList)
    return RunPage({k: v for k, v in query.items() if k not in ("page[after]", "page[before]")}, answer)


def _listed(values: str | Iterable[str] | None) -> str | None:
    """A filter's values as the API takes them; None (no filter) for None or an empty list."""
    if values is None or isinstance(values, str):
        return values or None
    return ",".join(values) or None


def _epoch_ms(at: datetime | None, *, up: bool) -> str | None:
    """Milliseconds since the epoch, a naive datetime read as UTC; rounded outwards, so a bound
    taken from a run's `created_at` (microseconds) keeps that run."""
    if at is None:
        return None
    ms = (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp() * 1000
    return str(math.ceil(ms) if up else math.floor(ms))


def list(  # noqa: A001 - the seed's name
    *,
    status: str | Iterable[str] | None = None,
    task_identifier: str | Iterable[str] | None = None,
    version: str | Iterable[str] | None = None,
    tag: str | Iterable[str] | None = None,
    queue: str | Iterable[str] | None = None,
    batch: str | None = None,
    schedule: str | None = None,
    is_test: bool | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    period: str | None = None,
    limit: int = 25,
    after: str | None = None,
    before: str | None = None,
) -> RunListing:
    """Runs of this environment, newest first, `limit` (1-100) a page.

    `status`, `task_identifier`, `version`, `tag` (runs with any of the tags) and `queue` take
    one value or several; `created_from` / `created_to` bound the creation time, `period` ("1h",
    "7d") the age. `after` / `before` start from a run id (a page's cursors). A bad value is a
    `BadRequestError` naming the filter. `await runs.list(...)` is the first page (`data`,
    `has_next_page()`, `get_next_page()`); `async for run in runs.list(...)` reads every page.
    """
    query = {
        "filter[status]": _listed(status),
        "filter[taskIdentifier]": _listed(task_identifier),
        "filter[version]": _listed(version),
        "filter[tag]": _listed(tag),
        "filter[queue]": _listed(queue),
        "filter[batch]": batch,
        "filter[schedule]": schedule,
        "filter[isTest]": None if is_test is None else ("true" if is_test else "false"),
        "filter[createdAt][from]": _epoch_ms(created_from, up=False),
        "filter[createdAt][to]": _epoch_ms(created_to, up=True),
        "filter[createdAt][period]": period,
        "page[size]": str(limit),
        "page[after]": after,
        "page[before]": before,
    }
    return RunListing({k: v for k, v in query.items() if v is not None})


async def replay(run_id: str) -> RunReference:
    """Trigger the run again: a new run of its task with its payload, tags, metadata, queue,
    concurrency key and limits, queued now, with `replayed_from_run_id` pointing back (retried
    on network errors without making a second run)."""
    return await _client.request("POST", f"/api/v1/runs/{quote(run_id, safe='')}/replay", RunReference,
                                 {}, request_id=uuid.uuid4().hex)


async def add_tags(run_id: str, tags: str | Iterable[str]) -> builtins.list[str]:
    """Add tags to a run (10 at most in all, 1-128 characters each; ones it has are skipped);
    its tags after. `UnprocessableEntityError` if it would have more than 10."""
    body = {"tags": tags if isinstance(tags, str) else builtins.list(tags)}
    answer = await _client.request("POST", f"/api/v1/runs/{quote(run_id, safe='')}/tags", RunTags, body)
    return answer.tags


async def update_metadata(run_id: str, *, metadata: dict[str, Any] | None = None,
                          operations: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    """Change a run's metadata from outside it: `metadata` replaces it all, then each operation
    applies in order (`{"type": "set", "key": "progress", "value": 0.5}`; types set, delete,
    append, remove, increment, decrement, update); the metadata after. Inside a run, use
    `slipstream.metadata`. `UnprocessableEntityError` past 256 KB (nothing is stored)."""
    body: dict[str, Any] = {"operations": builtins.list(operations)}
    if metadata is not None:
        body["metadata"] = metadata
    answer = await _client.request("PUT", f"/api/v1/runs/{quote(run_id, safe='')}/metadata", RunMetadata, body)
    return answer.metadata


async def cancel(run_id: str) -> RunReference:
    """Cancel a run and its unfinished child runs (idempotent: a finished run is left as is).

    A queued or delayed run ends CANCELED at once; an executing one has `ctx.signal` set and
    its `on_cancel` hooks called, then is stopped.
    """
    return await _client.request("POST", f"/api/v2/runs/{quote(run_id, safe='')}/cancel", RunReference)


async def reschedule(run_id: str, *, delay: str | datetime) -> Run[Any]:
    """Move a DELAYED run to another time (a duration from now, an ISO string or a datetime)."""
    text = delay.isoformat() if isinstance(delay, datetime) else delay
    return await _client.request(
        "POST", f"/api/v1/runs/{quote(run_id, safe='')}/reschedule", Run, {"delay": text}
    )


async def logs(run_id: str) -> builtins.list[RunLogLine]:
    """The lines `logger` wrote in the run's attempts, oldest first."""
    answer = await _client.request("GET", f"/api/v1/runs/{quote(run_id, safe='')}/logs", RunLogs)
    return answer.data


async def spans(run_id: str) -> RunSpans:
    """The run's trace: the spans of the run and its descendants, in the order they began
    (empty, with `trace_id` None, for a run triggered while tracing was off; kept only while the
    services run with `SLIPSTREAM_OTEL_EXPORTER=postgres`)."""
    return await _client.request("GET", f"/api/v1/runs/{quote(run_id, safe='')}/spans", RunSpans)


async def subscribe_to_runs_with_tag(tag: str) -> AsyncIterator[Run[Any]]:
    """Yield every run with `tag` now (its newest 1,000), then each run with it whenever it
    changes, including runs tagged later; it goes on until you stop iterating."""
    async for run in _subscribe(f"/realtime/v1/runs?{urlencode({'tags': tag})}", stop_on_completion=False):
        yield run


async def subscribe_to_all_runs() -> AsyncIterator[Run[Any]]:
    """Yield every run of the environment from now on: each run when it is triggered and whenever
    it changes; it goes on until you stop iterating. Needs the secret key or a token with
    `read:runs`. After a dropped connection it yields the runs triggered while it was away; a
    change of an older run made then arrives with its next change."""
    async for run in _subscribe("/realtime/v1/runs", stop_on_completion=False):
        yield run


async def subscribe_to_batch(batch_id: str) -> AsyncIterator[Run[Any]]:
    """Yield every run of a batch now, then each run of it whenever it changes; it goes on
    until you stop iterating."""
    async for run in _subscribe(f"/realtime/v1/batches/{quote(batch_id, safe='')}", stop_on_completion=False):
        yield run


async def subscribe_to_run(run_id: str, *, stop_on_completion: bool = True) -> AsyncIterator[Run[Any]]:
    """Yield the run now and after every change (status, metadata, tags); stop once it has
    finished, unless `stop_on_completion=False` (then it goes on until you stop iterating:
    a finished run still changes, e.g. its metadata or tags)."""
    path = f"/realtime/v1/runs/{quote(run_id, safe='')}"
    async for run in _subscribe(path if stop_on_completion else f"{path}?stopOnCompletion=false",
                                stop_on_completion=stop_on_completion):
        yield run


# A dropped subscription connects again after these pauses (the last one repeats); it gives
# up, with ApiConnectionError, after this many failed connects in a row.
_RECONNECT_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0)
_RECONNECTS = 30


async def _subscribe(path: str, *, stop_on_completion: bool) -> AsyncIterator[Run[Any]]:
    """The run states a realtime path sends; after a dropped connection it connects again,
    asking only for what changed since the newest state it yielded, and never yields a state
    of a run that is not newer than one it yielded already."""
    config = _config.current()
    http = await _client.session()
    seen: dict[str, datetime] = {}
    failures = 0
    while True:
        since = max(seen.values(), default=None)
        url = f"{config.realtime_url}{path}"
        if since is not None:
            url += ("&" if "?" in path else "?") + urlencode({"since": since.isoformat()})
        try:
            ws = await http.ws_connect(url, headers={"Authorization": f"Bearer {config.secret_key}"},
                                       heartbeat=30)
        except aiohttp.ClientError as exc:
            failures += 1
            if failures > _RECONNECTS:
                raise ApiConnectionError(f"could not reach realtime at {config.realtime_url}: {exc}") from exc
            await asyncio.sleep(_RECONNECT_DELAYS[min(failures, len(_RECONNECT_DELAYS)) - 1])
            continue
        failures = 0
        async with ws:
            async for frame in ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    break
                message = _message_decoder.decode(frame.data)
                if isinstance(message, RealtimeError):
                    if message.status >= 500:
                        break  # the server's fault: connect again
                    raise api_error(message.status, message.error)
                assert isinstance(message, RealtimeRun)
                run = message.run
                if run.id in seen and seen[run.id] >= run.updated_at:
                    continue
                seen[run.id] = run.updated_at
                yield run
                if stop_on_completion and run.is_completed:
                    return
        if ws.close_code == 1000:
            return  # the server ended it: the run finished
