"""`@task`: options are checked when the function is decorated, with no I/O."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import pytest
import slipstream
from slipstream import Task, task
from slipstream._task import registry
from slipstream.errors import TaskOptionError
from slipstream_core.definitions import QueueDefinition, RetryPolicy, TaskDefinition

DEFAULT_RETRY = {"max_attempts": 3, "factor": 2.0, "min_timeout_ms": 1000, "max_timeout_ms": 60_000, "randomize": True}


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    """Remove the tasks a test defines, so ids can be reused across tests."""
    before = set(registry)
    yield
    for task_id in set(registry) - before:
        del registry[task_id]


def test_the_sdk_public_surface() -> None:
    assert sorted(slipstream.__all__) == [
        "AbortTaskRunError",
        "BatchHandle",
        "BatchResult",
        "LocalKey",
        "Queue",
        "RetryOptions",
        "Run",
        "RunHandle",
        "RunStatus",
        "Task",
        "TaskContext",
        "TaskResult",
        "TaskRunResult",
        "aclose",
        "auth",
        "batch",
        "configure",
        "deployments",
        "errors",
        "idempotency_keys",
        "locals",
        "logger",
        "metadata",
        "queue",
        "queues",
        "regions",
        "retry",
        "runs",
        "schedules",
        "schema_task",
        "step",
        "task",
        "tasks",
        "wait",
    ]
    assert all(hasattr(slipstream, name) for name in slipstream.__all__)


def test_task_registers_an_async_function() -> None:
    @task(id="unit-async", retry={"max_attempts": 5})
    async def run(payload: dict[str, Any], ctx: slipstream.TaskContext) -> dict[str, Any]:
        return payload

    assert isinstance(run, Task)
    assert run.id == "unit-async"
    assert run.is_async is True
    assert run.retry == {**DEFAULT_RETRY, "max_attempts": 5}
    assert registry["unit-async"] is run
    assert repr(run) == "<Task 'unit-async'>"


def test_task_accepts_a_sync_function() -> None:
    @task(id="unit-sync")
    def run(payload: Any, ctx: Any) -> None:
        return None

    assert run.is_async is False
    assert run.retry == DEFAULT_RETRY
    assert registry["unit-sync"] is run


def test_keyword_only_parameters_do_not_count_as_positional() -> None:
    @task(id="unit-kw")
    async def run(payload: Any, ctx: Any, *, extra: int = 1) -> None:
        return None

    assert registry["unit-kw"] is run


@pytest.mark.parametrize("task_id", ["a", "A1", "send-email", "v2.resize_image:thumb", "x" * 128])
def test_valid_ids(task_id: str) -> None:
    @task(id=task_id)
    async def run(payload: Any, ctx: Any) -> None:
        return None

    assert run.id == task_id


@pytest.mark.parametrize("task_id", ["", "has space", "x" * 129, "-leading-dash", "a/b", "émoji", 42, None])
def test_an_invalid_id_is_rejected_and_named(task_id: object) -> None:
    with pytest.raises(TaskOptionError) as caught:
        task(id=task_id)  # type: ignore[arg-type]
    message = str(caught.value)
    assert f"task id {task_id!r} is not valid" in message
    assert "@task(id='send-email')" in message


def test_an_invalid_retry_fails_at_decoration() -> None:
    with pytest.raises(TaskOptionError, match="write 'max_attempts'"):
        task(id="unit-bad-retry", retry={"maxAttempts": 3})  # type: ignore[typeddict-unknown-key]
    assert "unit-bad-retry" not in registry


@pytest.mark.parametrize(
    "fn",
    [
        lambda: None,
        lambda payload: None,
        lambda payload, ctx, extra: None,
        lambda *args: None,
    ],
    ids=["zero", "one", "three", "varargs"],
)
def test_a_function_must_take_payload_and_ctx(fn: Any) -> None:
    count = len([p for p in inspect.signature(fn).parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD])
    with pytest.raises(TaskOptionError) as caught:
        task(id="unit-arity")(fn)
    message = str(caught.value)
    assert "'unit-arity'" in message
    assert "(payload, ctx)" in message
    assert f"not {count} positional parameter(s)" in message
    assert "unit-arity" not in registry


def test_task_must_decorate_a_callable() -> None:
    with pytest.raises(TaskOptionError, match="must decorate a function"):
        task(id="unit-not-callable")("not a function")  # type: ignore[arg-type]


def test_a_duplicate_id_on_another_function_is_rejected_naming_the_first() -> None:
    @task(id="unit-dup")
    async def first(payload: Any, ctx: Any) -> None:
        return None

    async def second(payload: Any, ctx: Any) -> None:
        return None

    with pytest.raises(TaskOptionError) as caught:
        task(id="unit-dup")(second)
    message = str(caught.value)
    assert "'unit-dup'" in message
    assert f"{__name__}.{first.fn.__qualname__}" in message
    assert registry["unit-dup"] is first


def test_decorating_the_same_function_again_replaces_the_definition() -> None:
    async def run(payload: Any, ctx: Any) -> None:
        return None

    first = task(id="unit-again")(run)
    again = task(id="unit-again", retry={"max_attempts": 1})(run)
    assert registry["unit-again"] is again is not first
    assert again.retry["max_attempts"] == 1


def test_definition_has_the_id_and_the_full_retry_options() -> None:
    @task(id="unit-manifest", retry={"factor": 3, "randomize": False})
    async def run(payload: Any, ctx: Any) -> None:
        return None

    assert run.definition() == TaskDefinition(
        id="unit-manifest",
        queue=QueueDefinition(name="task/unit-manifest"),
        retry=RetryPolicy(**{**DEFAULT_RETRY, "factor": 3, "randomize": False}),
    )
    assert run.definition().retry.max_attempts == DEFAULT_RETRY["max_attempts"]


def test_trigger_functions_share_the_seed_options() -> None:
    from slipstream._task import TriggerKwargs, trigger_options

    for fn in (slipstream.tasks.trigger, slipstream.tasks.trigger_and_wait, Task.trigger, Task.trigger_and_wait):
        assert inspect.iscoroutinefunction(fn)
        kinds = [p.kind for p in inspect.signature(fn).parameters.values()]
        assert kinds[-1] is inspect.Parameter.VAR_KEYWORD
    assert list(TriggerKwargs.__annotations__) == [
        "queue", "concurrency_key", "delay", "tags", "metadata", "max_attempts", "priority",
        "max_duration", "machine", "ttl", "idempotency_key", "idempotency_key_ttl", "debounce", "lock_to_version",
        "region",
    ]
    options = trigger_options(queue="paid", delay="5m", debounce={"key": "k", "delay": "5s", "mode": "trailing"})
    assert options.queue is not None and options.queue.name == "paid"
    assert options.debounce is not None and options.debounce.mode == "trailing"
    with pytest.raises(TypeError, match="unknown trigger option"):
        trigger_options(maxAttempts=3)  # type: ignore[call-arg]


def test_max_duration_is_in_the_definition() -> None:
    @task(id="unit-max-duration", max_duration=300)
    async def run(payload: Any, ctx: Any) -> None:
        return None

    assert run.definition().max_duration == 300


def test_schema_task_validates_on_trigger_without_any_io() -> None:
    import asyncio

    import msgspec
    from slipstream import schema_task

    class Point(msgspec.Struct):
        x: int
        y: int = 0

    @schema_task(id="unit-schema-point", schema=Point)
    async def point(payload: Point, ctx: object) -> int:
        return payload.x + payload.y

    try:
        # The parser's own error, raised before the SDK looks for an API URL or key.
        with pytest.raises(msgspec.ValidationError):
            asyncio.run(point.trigger({"y": 1}))
        assert point.parse is not None and point.parse({"x": "2"}) == Point(x=2)
        assert point.to_tool()["function"]["parameters"]["$defs"]["Point"]["required"] == ["x"]
    finally:
        registry.pop("unit-schema-point", None)


def test_schema_task_rejects_an_unusable_schema() -> None:
    from slipstream import schema_task

    with pytest.raises(TaskOptionError, match="schema must be"):
        schema_task(id="unit-bad-schema", schema=42)


def test_machine_presets_are_checked_at_definition() -> None:
    @task(id="unit-machine", machine={"preset": "large-1x"}, retry={"out_of_memory": {"machine": "large-2x"}})
    async def run(payload: Any, ctx: Any) -> None:
        return None

    try:
        assert run.definition().machine == "large-1x"
        assert run.definition().retry.out_of_memory_machine == "large-2x"
    finally:
        registry.pop("unit-machine", None)
    with pytest.raises(TaskOptionError, match="not a preset"):
        task(id="unit-machine-bad", machine="huge-9x")
    with pytest.raises(TaskOptionError, match="out_of_memory"):
        task(id="unit-oom-bad", retry={"out_of_memory": {"machine": "nope"}})


def test_deprecated_hooks_warn_and_still_work() -> None:
    with pytest.warns(DeprecationWarning, match="on_start is deprecated; use on_start_attempt"):
        @task(id="unit-deprecated", on_start=lambda **_: None)
        async def run(payload: Any, ctx: Any) -> None:
            return None

    try:
        assert "on_start" in run.hooks
    finally:
        registry.pop("unit-deprecated", None)


def test_queue_options_are_checked_at_definition() -> None:
    from slipstream import queue
    from slipstream._task import queues

    shared = queue("unit-shared", concurrency_limit=2)
    try:
        @task(id="unit-queued", queue=shared)
        async def run(payload: Any, ctx: Any) -> None:
            return None

        @task(id="unit-own-queue", queue={"concurrency_limit": 1})
        async def own(payload: Any, ctx: Any) -> None:
            return None

        @task(id="unit-tenants", queue={"concurrency_limit": 20, "per_key_limit": 2,
                                        "rate_limit": {"limit": 100, "period": "1m"},
                                        "per_key_rate_limit": {"limit": 5, "period": 1.5}})
        async def tenants(payload: Any, ctx: Any) -> None:
            return None

        assert run.definition().queue == QueueDefinition(name="unit-shared", concurrency_limit=2)
        assert own.definition().queue == QueueDefinition(name="task/unit-own-queue", concurrency_limit=1)
        assert tenants.definition().queue == QueueDefinition(
            name="task/unit-tenants", concurrency_limit=20, per_key_limit=2, rate_limit=100, rate_period=60.0,
            per_key_rate_limit=5, per_key_rate_period=1.5)
        with pytest.raises(TaskOptionError, match="concurrency_limit"):
            task(id="unit-bad-queue", queue={"concurrency_limit": -1})
        with pytest.raises(TaskOptionError, match="per_key_limit"):
            queue("unit-bad", per_key_limit=1.5)  # type: ignore[arg-type]
        with pytest.raises(TaskOptionError, match="queue must be"):
            task(id="unit-bad-queue", queue={"concurrencyLimit": 1})
        bad_rates: list[tuple[object, str]] = [
            ({"limit": 10}, "a dict like"),
            ({"limit": 0, "period": "1m"}, "limit is a whole number of 1 or more"),
            ({"limit": 10, "period": "soon"}, "not a duration"),
            ({"limit": 10, "period": 0}, "more than 0"),
            ({"limit": 10, "period": "2d"}, "at most 1 day"),
            ({"limit": 10, "period": [1]}, "a duration like"),
        ]
        for rate, message in bad_rates:
            with pytest.raises(TaskOptionError, match=message):
                queue("unit-bad", rate_limit=rate)  # type: ignore[arg-type]
            with pytest.raises(TaskOptionError, match="per_key_rate_limit"):
                queue("unit-bad", per_key_rate_limit=rate)  # type: ignore[arg-type]
    finally:
        for task_id in ("unit-queued", "unit-own-queue", "unit-tenants"):
            registry.pop(task_id, None)
        queues.pop("unit-shared", None)
