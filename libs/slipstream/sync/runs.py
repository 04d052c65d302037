"""`slipstream.runs`, not awaited: read, list, follow, cancel and replay runs."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, ParamSpec, TypeVar, overload

from slipstream_proto import ListedRun, Run, RunLogLine, RunReference, RunSpans

from slipstream import runs as _runs
from slipstream._bridge import bridge
from slipstream._task import RunHandle
from slipstream.runs import RunPage as _AsyncPage

R = TypeVar("R")
P = ParamSpec("P")

__all__ = ["RunPage", "add_tags", "cancel", "list", "logs", "replay", "reschedule", "retrieve",
           "spans", "subscribe_to_all_runs", "subscribe_to_batch", "subscribe_to_run", "subscribe_to_runs_with_tag",
           "update_metadata"]


@overload
def retrieve(run: RunHandle[R]) -> Run[R]: ...


@overload
def retrieve(run: Any) -> Run[Any]: ...


def retrieve(run: Any) -> Run[Any]:
    """The run (by id, or anything with an `id`, such as a handle; a handle's output is decoded
    into its task's return type)."""
    return bridge.call(_runs.retrieve, run)


class RunPage:
    """One page of `list`, newest first: `data`, and the pages beside it."""

    def __init__(self, page: _AsyncPage) -> None:
        self._page = page
        self.data: builtins.list[ListedRun] = page.data

    def has_next_page(self) -> bool:
        return self._page.has_next_page()

    def has_previous_page(self) -> bool:
        return self._page.has_previous_page()

    def get_next_page(self) -> RunPage:
        return RunPage(bridge.call(self._page.get_next_page))

    def get_previous_page(self) -> RunPage:
        return RunPage(bridge.call(self._page.get_previous_page))


class RunListing:
    """What `list` returns: `.page()` is the first page; iterating reads every run of every page."""

    def __init__(self, listing: _runs.RunListing) -> None:
        self._listing = listing

    def page(self) -> RunPage:
        async def first() -> _AsyncPage:
            return await self._listing

        return RunPage(bridge.call(first))

    def __iter__(self) -> Iterator[ListedRun]:
        return bridge.iterate(self._listing.__aiter__)


def _listing(make: Callable[P, _runs.RunListing]) -> Callable[P, RunListing]:
    def listing(*args: P.args, **kwargs: P.kwargs) -> RunListing:
        return RunListing(make(*args, **kwargs))

    listing.__doc__ = """Runs newest first, filtered as `slipstream.runs.list` (the same arguments):
    `list(...).page()` for a page (`data`, `has_next_page()`, `get_next_page()`), `for run in
    list(...)` for every run."""
    return listing


list = _listing(_runs.list)  # noqa: A001 - the seed's name


def replay(run_id: str) -> RunReference:
    """A new run of the run's task with its payload and options."""
    return bridge.call(_runs.replay, run_id)


def add_tags(run_id: str, tags: str | Iterable[str]) -> builtins.list[str]:
    """Add tags to a run; its tags after."""
    return bridge.call(_runs.add_tags, run_id, tags)


def update_metadata(run_id: str, *, metadata: dict[str, Any] | None = None,
                    operations: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    """Change a run's metadata from outside it; the metadata after."""
    return bridge.call(_runs.update_metadata, run_id, metadata=metadata, operations=operations)


def cancel(run_id: str) -> RunReference:
    """Cancel a run and its unfinished child runs."""
    return bridge.call(_runs.cancel, run_id)


def reschedule(run_id: str, *, delay: str | datetime) -> Run[Any]:
    """Move a DELAYED run to another time."""
    return bridge.call(_runs.reschedule, run_id, delay=delay)


def logs(run_id: str) -> builtins.list[RunLogLine]:
    """The lines `logger` wrote in the run's attempts, oldest first."""
    return bridge.call(_runs.logs, run_id)


def spans(run_id: str) -> RunSpans:
    """The run's trace: the spans of the run and its descendants, in the order they began."""
    return bridge.call(_runs.spans, run_id)


def subscribe_to_run(run_id: str, *, stop_on_completion: bool = True) -> Iterator[Run[Any]]:
    """Yield the run now and at each change, until it finishes (unless `stop_on_completion=False`)."""
    return bridge.iterate(_runs.subscribe_to_run, run_id, stop_on_completion=stop_on_completion)


def subscribe_to_runs_with_tag(tag: str) -> Iterator[Run[Any]]:
    """Yield every run with the tag, then each change of one (until you stop iterating)."""
    return bridge.iterate(_runs.subscribe_to_runs_with_tag, tag)


def subscribe_to_all_runs() -> Iterator[Run[Any]]:
    """Yield every run of the environment when it is triggered and at each change."""
    return bridge.iterate(_runs.subscribe_to_all_runs)


def subscribe_to_batch(batch_id: str) -> Iterator[Run[Any]]:
    """Yield every run of the batch, then each change of one."""
    return bridge.iterate(_runs.subscribe_to_batch, batch_id)
