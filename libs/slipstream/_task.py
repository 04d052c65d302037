"""`@task`: defining a task, and triggering it."""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import inspect
import re
import uuid
import warnings
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine, Iterable
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypedDict, TypeVar, Unpack, overload

import msgspec
from slipstream_core.definitions import QueueDefinition, RetryPolicy, ScheduleDeclaration, TaskDefinition
from slipstream_core.durations import parse_duration
from slipstream_proto import DebounceOption, QueueOption, TriggerOptions, TriggerRequest, TriggerResponse
from slipstream_proto.machines import MACHINE_PRESETS

from slipstream import _client
from slipstream._codec import convert, convertible, encoder, hints_of
from slipstream._context import BatchResult, TaskContext, TaskRunResult
from slipstream._retry import RetryOptions, validate_retry
from slipstream._schema import json_schema_for, parser_for
from slipstream.errors import OutputTypeError, TaskOptionError, TaskRunError

P = TypeVar("P")
R = TypeVar("R")

TaskFunction = Callable[[P, TaskContext], Awaitable[R] | R]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")

# Every task defined in this process, by id (the worker registers them all).
registry: dict[str, Task[Any, Any]] = {}


class RateLimit(msgspec.Struct, frozen=True):
    """At most `limit` runs start within any `period` seconds."""

    limit: int
    period: float


class Queue(msgspec.Struct, frozen=True):
    """A queue declared once and shared by tasks: `queue(name="paid-users", concurrency_limit=10)`."""

    name: str
    concurrency_limit: int | None = None
    per_key_limit: int | None = None
    rate_limit: RateLimit | None = None
    per_key_rate_limit: RateLimit | None = None

    def definition(self) -> QueueDefinition:
        """What a worker registers for this queue (periods in seconds)."""
        rate, per_key = self.rate_limit, self.per_key_rate_limit
        return QueueDefinition(
            name=self.name, concurrency_limit=self.concurrency_limit, per_key_limit=self.per_key_limit,
            rate_limit=rate.limit if rate else None, rate_period=rate.period if rate else None,
            per_key_rate_limit=per_key.limit if per_key else None,
            per_key_rate_period=per_key.period if per_key else None,
        )


# Queues declared in this process, by name (the worker registers them with its tasks).
queues: dict[str, Queue] = {}

_QUEUE_OPTIONS = {"name", "concurrency_limit", "per_key_limit", "rate_limit", "per_key_rate_limit"}


def queue(
    name: str,
    *,
    concurrency_limit: int | None = None,
    per_key_limit: int | None = None,
    rate_limit: dict[str, Any] | None = None,
    per_key_rate_limit: dict[str, Any] | None = None,
) -> Queue:
    """Declare a queue, shared by the tasks that name it.

    - `concurrency_limit`: how many of its runs execute at once (None: no limit). With
      concurrency keys and no `per_key_limit`, each key gets its own copy of this limit.
    - `per_key_limit`: how many runs of each concurrency key execute at once; then
      `concurrency_limit` caps the whole queue, all keys together.
    - `rate_limit={"limit": 100, "period": "1m"}`: at most that many runs of the queue start
      within any period; `per_key_rate_limit` the same for each concurrency key.
    """
    checked = _checked_queue(f"queue {name!r}", {
        "name": name, "concurrency_limit": concurrency_limit, "per_key_limit": per_key_limit,
        "rate_limit": rate_limit, "per_key_rate_limit": per_key_rate_limit})
    queues[checked.name] = checked
    return checked


def _checked_limit(where: str, option: str, value: object) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise TaskOptionError(f"{where}: {option} is a whole number of 0 or more, got {value!r}")
    return value


def _checked_rate(where: str, option: str, value: object) -> RateLimit | None:
    if value is None:
        return None
    example = f'{option}={{"limit": 100, "period": "1m"}}'
    if not isinstance(value, dict) or set(value) != {"limit", "period"}:
        raise TaskOptionError(f"{where}: {option} is a dict like {example}, got {value!r}")
    limit, period = value["limit"], value["period"]
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise TaskOptionError(f"{where}: {option} limit is a whole number of 1 or more, got {limit!r}")
    seconds: float
    if isinstance(period, str):
        try:
            seconds = parse_duration(period).total_seconds()
        except ValueError as exc:
            raise TaskOptionError(f"{where}: {option} period: {exc}") from None
    elif isinstance(period, int | float) and not isinstance(period, bool):
        seconds = float(period)
    else:
        raise TaskOptionError(f"{where}: {option} period is a duration like '1m' or seconds, got {period!r}")
    if not 0 < seconds <= _MAX_RATE_PERIOD:
        raise TaskOptionError(f"{where}: {option} period is more than 0 and at most 1 day, got {period!r}")
    return RateLimit(limit, seconds)


# Rate windows are kept for at most a day (see docs/queues.md).
_MAX_RATE_PERIOD = 86400.0


def _checked_queue(where: str, options: dict[str, Any]) -> Queue:
    name = options.get("name")
    if not isinstance(name, str) or not name or len(name) > 128:
        raise TaskOptionError(f"{where}: a queue name is 1-128 characters, got {name!r}")
    return Queue(
        name,
        concurrency_limit=_checked_limit(where, "concurrency_limit", options.get("concurrency_limit")),
        per_key_limit=_checked_limit(where, "per_key_limit", options.get("per_key_limit")),
        rate_limit=_checked_rate(where, "rate_limit", options.get("rate_limit")),
        per_key_rate_limit=_checked_rate(where, "per_key_rate_limit", options.get("per_key_rate_limit")),
    )


def _task_queue(task_id: str, option: object) -> Queue:
    """`queue=` of a task: a declared Queue, or a dict with `name` and/or the queue's limits."""
    if option is None:
        return Queue(f"task/{task_id}")
    if isinstance(option, Queue):
        return option
    if isinstance(option, dict) and set(option) <= _QUEUE_OPTIONS:
        name = option.get("name", f"task/{task_id}")
        if set(option) <= {"name"} and name in queues:
            return queues[name]
        return _checked_queue(f"task {task_id!r}", {**option, "name": name})
    raise TaskOptionError(
        f"task {task_id!r}: queue must be a queue(...) or a dict like {{'concurrency_limit': 1}}, not {option!r}"
    )


# The answer header with a read token for what a trigger made.
PUBLIC_TOKEN_HEADER = "x-slipstream-jwt"


class RunHandle(msgspec.Struct, Generic[R], frozen=True):
    """What a trigger returns: the new run's id (and whether an existing run was reused) and
    its task. `RunHandle[R]` carries the task's output type: `runs.retrieve(handle)` decodes
    the output into it."""

    id: str
    is_cached: bool = False
    task_identifier: str | None = None
    # A token that reads this run for an hour, for a browser (`runs.subscribe_to_run`): no secret key needed.
    public_access_token: str | None = None


class DebounceKwargs(TypedDict, total=False):
    """`debounce=` of a trigger: fold triggers with the same key into one delayed run."""

    key: str
    delay: str
    mode: str  # "leading" (default) or "trailing"
    max_delay: str


class TriggerQueueKwargs(TypedDict, total=False):
    """`queue=` of a trigger as a dict: that queue, created with (or given) this limit."""

    name: str
    concurrency_limit: int


class TriggerKwargs(TypedDict, total=False):
    """Options of every trigger function, as the seed's `options` in snake_case."""

    queue: str | TriggerQueueKwargs
    concurrency_key: str
    delay: str | datetime
    tags: str | list[str]
    metadata: dict[str, Any]
    max_attempts: int
    priority: int
    max_duration: int
    machine: str
    ttl: str | int
    idempotency_key: str
    idempotency_key_ttl: str
    debounce: DebounceKwargs
    # Only workers of this version take the run (it waits PENDING_VERSION while none runs).
    lock_to_version: str
    # Only workers started with `--region` of this name take it (default: the environment's).
    region: str


class BatchItem(TypedDict, Generic[P], total=False):
    """One item of `Task.batch_trigger`: its payload and its own trigger options."""

    payload: P
    options: TriggerKwargs


class BatchKwargs(TypedDict, total=False):
    """Options of a whole batch: with an idempotency key, the same batch again returns the first."""

    idempotency_key: str
    idempotency_key_ttl: str


class BatchHandle(msgspec.Struct, frozen=True):
    """What a batch trigger returns: the batch's id and one run handle per item, in order."""

    batch_id: str
    runs: list[RunHandle[Any]]
    is_cached: bool = False
    # A token that reads the batch's runs for an hour (`runs.subscribe_to_batch`).
    public_access_token: str | None = None


def trigger_options(**options: Unpack[TriggerKwargs]) -> TriggerOptions:
    """The wire options of a trigger from its keyword arguments."""
    unknown = set(options) - set(TriggerKwargs.__annotations__)
    if unknown:
        raise TypeError(
            f"unknown trigger option(s) {', '.join(sorted(unknown))}; known: "
            + ", ".join(TriggerKwargs.__annotations__)
        )
    fields: dict[str, Any] = dict(options)
    if "queue" in fields:
        fields["queue"] = _queue_option(fields["queue"])
    if "delay" in fields:
        fields["delay"] = _delay_text(fields["delay"])
    if "debounce" in fields:
        fields["debounce"] = DebounceOption(**fields["debounce"])
    return TriggerOptions(**fields)


def with_parent(options: TriggerOptions) -> TriggerOptions:
    """Inside a task, the options of a trigger made there: the new run is a child of the current run."""
    parent = current_run_id.get()
    if parent is not None and options.parent_run_id is None:
        return msgspec.structs.replace(options, parent_run_id=parent)
    return options


def _queue_option(queue: object) -> QueueOption:
    """`queue="name"`, or the seed's `queue={"name": "main-branch", "concurrency_limit": 10}`."""
    if isinstance(queue, str):
        return QueueOption(name=queue)
    if isinstance(queue, Queue):
        return QueueOption(name=queue.name)
    if isinstance(queue, dict) and isinstance(queue.get("name"), str) and set(queue) <= {"name", "concurrency_limit"}:
        limit = queue.get("concurrency_limit")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise TypeError(f"queue concurrency_limit is a whole number of 0 or more, got {limit!r}")
        return QueueOption(name=queue["name"], concurrency_limit=limit)
    raise TypeError(f'queue is a queue name or a dict like {{"name": "main-branch", "concurrency_limit": 10}},'
                    f" got {queue!r}")


def _delay_text(delay: str | datetime | None) -> str | None:
    if isinstance(delay, datetime):
        return (delay if delay.tzinfo else delay.replace(tzinfo=UTC)).isoformat()
    return delay


# The run whose attempt is executing in this context: runs triggered here are its children.
current_run_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("slipstream_run_id", default=None)
current_attempt_number: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "slipstream_attempt_number", default=None
)


async def trigger_and_wait_task(task_id: str, payload: Any, options: TriggerOptions) -> TaskRunResult[Any]:
    """Inside a task: trigger a child run, suspend until it finishes, return its result."""
    from slipstream._waits import waitpoint

    entry = await waitpoint(
        "RUN",
        task_id=task_id,
        payload_json=_json.encode(payload).decode(),
        options_json=_json.encode(options).decode(),
    )
    return msgspec.json.decode(entry.result_json or "{}", type=TaskRunResult[Any])


_json = encoder


async def trigger_task(task_id: str, payload: Any, options: TriggerOptions) -> RunHandle[Any]:
    """POST /api/v1/tasks/{task_id}/trigger (as a child run when called inside a task)."""
    options = with_parent(options)
    response, headers = await _client.request_with_headers(
        "POST",
        f"/api/v1/tasks/{task_id}/trigger",
        TriggerResponse,
        TriggerRequest(payload=payload, options=options),
        request_id=uuid.uuid4().hex,
    )
    return RunHandle(response.id, response.is_cached, task_id, public_access_token=headers.get(PUBLIC_TOKEN_HEADER))


class Task(Generic[P, R]):
    """A task: a function the platform runs durably, with retries, when triggered."""

    def __init__(
        self,
        id: str,
        fn: TaskFunction[P, R],
        retry: RetryOptions,
        *,
        max_duration: int | None = None,
        hooks: dict[str, Callable[..., Any]] | None = None,
        schema: Any = None,
        description: str | None = None,
        machine: str | None = None,
    ) -> None:
        self.id = id
        self.fn = fn
        self.retry = retry
        self.max_duration = max_duration
        self.hooks = hooks or {}
        self.is_async = inspect.iscoroutinefunction(fn)
        self.schema = schema
        self.parse: Callable[[Any], Any] | None = parser_for(id, schema) if schema is not None else None
        self.description = description or inspect.getdoc(fn) or ""
        self.machine = machine
        # Set by schedules.task: {"cron", "timezone", "environments"}, or {} if attached at run time.
        self.schedule: dict[str, Any] | None = None
        self.queue = Queue(f"task/{id}")

    @functools.cached_property
    def _hints(self) -> tuple[Any, Any]:
        # Read on first use, not at decoration: the annotations may name classes defined later.
        return hints_of(self.fn)

    @property
    def output_type(self) -> Any:
        """The declared return type of the task's function (Any if none)."""
        return self._hints[1]

    @functools.cached_property
    def payload_model(self) -> Callable[[Any], Any] | None:
        """How a payload becomes the declared type of the function's first parameter, when that
        is a msgspec Struct, a dataclass or a pydantic model (None: passed as decoded JSON)."""
        tp = self._hints[0]
        if isinstance(tp, type) and (issubclass(tp, msgspec.Struct) or dataclasses.is_dataclass(tp)
                                     or callable(getattr(tp, "model_validate", None))):
            return lambda value: convert(value, tp)
        return None

    def typed_output(self, value: Any) -> Any:
        """A child's output (decoded JSON) as this task's declared return type."""
        try:
            return convert(value, self.output_type)
        except Exception as exc:
            raise OutputTypeError(f"the output of task {self.id!r} is not a {self.output_type!r}: {exc}") from None

    def typed_result(self, result: TaskRunResult[Any]) -> TaskRunResult[R]:
        if not result.ok or result.output is None or not convertible(self.output_type):
            return result
        return msgspec.structs.replace(result, output=self.typed_output(result.output))

    def __repr__(self) -> str:
        return f"<Task {self.id!r}>"

    async def trigger_and_wait(self, payload: P | None = None, **options: Unpack[TriggerKwargs]) -> TaskRunResult[R]:
        """Inside a task: run this task as a child and wait for its result without holding a slot.

        Returns a TaskRunResult (`ok`, `output` decoded into the task's return type, `error`,
        `unwrap()`).
        """
        if self.parse is not None:
            self.parse(payload)
        return self.typed_result(await trigger_and_wait_task(self.id, payload, trigger_options(**options)))

    def to_tool(self) -> dict[str, Any]:
        """A tool definition (JSON Schema of the payload) for LLM tool calling."""
        return {
            "type": "function",
            "function": {
                "name": self.id,
                "description": self.description,
                "parameters": json_schema_for(self.schema) if self.schema is not None else {"type": "object"},
            },
        }

    async def run_tool(self, arguments: str | dict[str, Any]) -> Any:
        """Execute an LLM's tool call as a run of this task and return the run's output."""
        from slipstream import runs

        payload = msgspec.json.decode(arguments) if isinstance(arguments, str) else arguments
        handle = await self.trigger(payload)  # type: ignore[arg-type]
        async for run in runs.subscribe_to_run(handle.id):
            if run.is_completed:
                if run.is_success:
                    return run.output
                message = run.error.message if run.error else run.status
                raise TaskRunError(f"tool run {run.id} ended {run.status}: {message}")
        raise TaskRunError(f"tool run {handle.id} ended without a final status")

    def definition(self) -> TaskDefinition:
        """What a worker registers for this task."""
        retry: dict[str, Any] = dict(self.retry)
        bigger = retry.pop("out_of_memory", None)
        return TaskDefinition(
            id=self.id, queue=self.queue.definition(),
            retry=RetryPolicy(**retry, out_of_memory_machine=bigger["machine"] if bigger else None),
            max_duration=self.max_duration, machine=self.machine,
            schedule=None if self.schedule is None else ScheduleDeclaration(**self.schedule),
            payload_schema=json_schema_for(self.schema) if self.schema is not None else None,
        )

    async def trigger(self, payload: P | None = None, **options: Unpack[TriggerKwargs]) -> RunHandle[R]:
        """Start a run of this task and return its handle without waiting for it.

        A schema task validates the payload first and raises the schema's own error.
        """
        if self.parse is not None:
            self.parse(payload)
        return await trigger_task(self.id, payload, trigger_options(**options))

    def trigger_sync(self, payload: P | None = None, **options: Unpack[TriggerKwargs]) -> RunHandle[R]:
        """`trigger` for code without an event loop (a Django view, a script): blocks until
        the run is created (see `slipstream.sync`)."""
        from slipstream._bridge import bridge

        return bridge.call(self.trigger, payload, **options)

    def batch_trigger_sync(self, items: Iterable[BatchItem[P]], **options: Unpack[BatchKwargs]) -> BatchHandle:
        """`batch_trigger` for code without an event loop."""
        from slipstream._bridge import bridge

        return bridge.call(self.batch_trigger, items, **options)

    async def batch_trigger(self, items: Iterable[BatchItem[P]] | AsyncIterable[BatchItem[P]],
                            **options: Unpack[BatchKwargs]) -> BatchHandle:
        """Start one run of this task per item (`{"payload": ..., "options": {...}}`); return the
        batch's handle, whose `runs` are in the order of the items. Up to 1,000 items go in one
        request, accepted or refused whole; more (from any iterable, or an async iterable) go as
        several requests into one batch, read as they are sent.

        A schema task validates every payload first.
        """
        from slipstream._batch import of_task, send

        return await send(items, of_task(self, items), options, task_id=self.id)

    async def batch_trigger_and_wait(self, items: Iterable[BatchItem[P]] | AsyncIterable[BatchItem[P]]
                                     ) -> BatchResult[R]:
        """Inside a task: run one child of this task per item and wait, without holding a slot,
        until every child is final. Returns a BatchResult whose `runs` are the children's
        results in the order of the items (a failed child does not raise by itself).
        """
        from slipstream._batch import of_task, wait_for

        result = await wait_for(items, of_task(self, items))
        return msgspec.structs.replace(result, runs=[self.typed_result(r) for r in result.runs])


_DEPRECATED_HOOKS = {
    "on_start": "use on_start_attempt (and check ctx.run.attempt.number == 1)",
    "init": "use middleware and locals",
    "cleanup": "use middleware and locals",
}


def _machine_name(task_id: str, machine: object) -> str | None:
    """`machine="large-1x"` or the seed's `machine={"preset": "large-1x"}`."""
    if machine is None:
        return None
    name = machine.get("preset") if isinstance(machine, dict) else machine
    if name not in MACHINE_PRESETS:
        raise TaskOptionError(
            f"task {task_id!r}: machine {machine!r} is not a preset; use one of " + ", ".join(MACHINE_PRESETS)
        )
    return str(name)


class TaskDecorator(Protocol):
    """What `task(...)` returns: it makes a `Task[P, R]` of a function `(payload: P, ctx) -> R`
    (or `async def ... -> R`), so the payload and output types carry to triggers and results."""

    @overload
    def __call__(self, fn: Callable[[P, TaskContext], Coroutine[Any, Any, R]]) -> Task[P, R]: ...

    @overload
    def __call__(self, fn: Callable[[P, TaskContext], R]) -> Task[P, R]: ...


def schema_task(
    id: str, *, schema: Any, description: str | None = None, **options: Any
) -> TaskDecorator:
    """A task whose payload is parsed by `schema` (msgspec Struct, pydantic model or function).

    `my_task.trigger(bad)` raises the schema's error before any run exists; a run whose
    payload does not parse (triggered by id) fails with TaskPayloadParsedError, not retried.
    """
    if schema is None:
        raise TaskOptionError(f"schema_task {id!r} needs schema=..., or use @task")
    return task(id, schema=schema, description=description, **options)


def task(
    id: str,
    *,
    retry: RetryOptions | None = None,
    max_duration: int | None = None,
    machine: str | dict[str, str] | None = None,
    queue: Queue | dict[str, Any] | None = None,
    on_start_attempt: Callable[..., Any] | None = None,
    on_start: Callable[..., Any] | None = None,
    on_success: Callable[..., Any] | None = None,
    on_failure: Callable[..., Any] | None = None,
    on_complete: Callable[..., Any] | None = None,
    on_cancel: Callable[..., Any] | None = None,
    on_wait: Callable[..., Any] | None = None,
    on_resume: Callable[..., Any] | None = None,
    catch_error: Callable[..., Any] | None = None,
    middleware: Callable[..., Any] | None = None,
    init: Callable[..., Any] | None = None,
    cleanup: Callable[..., Any] | None = None,
    schema: Any = None,
    description: str | None = None,
) -> TaskDecorator:
    """Define a task: `@task(id="hello-world")` over `async def run(payload, ctx)`.

    Hooks (`on_success=...` etc.) are called with the keyword arguments they declare;
    see docs/tasks.md for each hook's arguments, order and error semantics.
    """
    if not isinstance(id, str) or not _ID.match(id):
        raise TaskOptionError(
            f"task id {id!r} is not valid: use 1-128 letters, digits, '-', '_', '.' or ':',"
            " starting with a letter or digit, e.g. @task(id='send-email')"
        )
    checked_retry = validate_retry(id, retry)
    preset = _machine_name(id, machine)
    task_queue = _task_queue(id, queue)
    if schema is not None:
        parser_for(id, schema)  # fails now, at import, if the schema is unusable
    if max_duration is not None and (
        not isinstance(max_duration, int) or isinstance(max_duration, bool) or max_duration < 1
    ):
        raise TaskOptionError(
            f"task {id!r}: max_duration is in whole seconds and at least 1, e.g. max_duration=300;"
            f" got {max_duration!r}"
        )
    hooks = {
        name: fn
        for name, fn in {
            "on_start_attempt": on_start_attempt,
            "on_start": on_start,
            "on_success": on_success,
            "on_failure": on_failure,
            "on_complete": on_complete,
            "on_cancel": on_cancel,
            "on_wait": on_wait,
            "on_resume": on_resume,
            "catch_error": catch_error,
            "middleware": middleware,
            "init": init,
            "cleanup": cleanup,
        }.items()
        if fn is not None
    }
    for name, fn in hooks.items():
        if not callable(fn):
            raise TaskOptionError(f"task {id!r}: {name} must be a function, not {fn!r}")
        if name in _DEPRECATED_HOOKS:
            warnings.warn(f"task {id!r}: {name} is deprecated; {_DEPRECATED_HOOKS[name]}", DeprecationWarning,
                          stacklevel=2)

    def decorate(fn: TaskFunction[P, R]) -> Task[P, R]:
        if not callable(fn):
            raise TaskOptionError(f"@task(id={id!r}) must decorate a function, not {fn!r}")
        params = [
            p for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        if len(params) != 2:
            raise TaskOptionError(
                f"task {id!r}: the function must take (payload, ctx), not"
                f" {len(params)} positional parameter(s)"
            )
        if id in registry and registry[id].fn is not fn:
            existing = registry[id].fn
            raise TaskOptionError(
                f"task id {id!r} is already used by {existing.__module__}.{existing.__qualname__}:"
                " task ids must be unique"
            )
        defined = Task(id, fn, checked_retry, max_duration=max_duration, hooks=hooks, schema=schema,
                       description=description, machine=preset)
        defined.queue = task_queue
        registry[id] = defined
        return defined

    return decorate
