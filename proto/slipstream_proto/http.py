"""HTTP request and response bodies of trigger-api (the seed's REST shapes, camelCase)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

import msgspec

T = TypeVar("T")

# The rules the server checks, stated in the OpenAPI document (the server's own checks answer
# with their messages; these only describe them).
TASK_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
DURATION_PATTERN = r"^(?:[0-9]+(?:w|d|hr|h|m|s))+$"
_DURATION = {"pattern": DURATION_PATTERN, "description": "a duration such as 30s, 15m, 1h30m, 2d, 1w"}
Duration = Annotated[str, msgspec.Meta(extra_json_schema=_DURATION)]
# A delay: a duration from now, or an ISO 8601 time.
Delay = Annotated[str, msgspec.Meta(extra_json_schema={
    "anyOf": [{"pattern": DURATION_PATTERN}, {"format": "date-time"}],
    "description": "a duration such as 10m or 1h30m, or an ISO 8601 time"})]
NonEmpty = Annotated[str, msgspec.Meta(extra_json_schema={"minLength": 1})]
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"
REGION_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
SCOPE_PATTERN = r"^(?:(?:read:(?:runs|tags|batch|tasks)|trigger:tasks)(?::.+)?|read:all|write:all)$"
_ITEMS = {"minItems": 1, "maxItems": 1000}
TaskId = Annotated[str, msgspec.Meta(extra_json_schema={"pattern": TASK_ID_PATTERN})]


class _Body(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=False):
    """Base of every HTTP body."""


class ErrorBody(_Body):
    """Every error response: `{"error": "..."}`."""

    error: str


class QueueOption(_Body, forbid_unknown_fields=True):
    """`options.queue`: run on another queue; with `concurrencyLimit`, the queue is created
    with that limit, or its limit becomes it (as the seed's trigger-time queue form)."""

    name: str
    concurrency_limit: int | None = None


class DebounceOption(_Body, forbid_unknown_fields=True):
    """`options.debounce`: fold triggers with the same key into one delayed run of the task."""

    key: NonEmpty
    delay: Duration
    mode: Literal["leading", "trailing"] = "leading"
    max_delay: Duration | None = None


class TriggerOptions(_Body, forbid_unknown_fields=True):
    """`options` of a trigger request; fields as the seed's REST API names them."""

    queue: QueueOption | None = None
    concurrency_key: str | None = None
    delay: Delay | None = None
    ttl: Duration | int | None = None
    idempotency_key: str | None = None
    idempotency_key_ttl: Duration | None = msgspec.field(default=None, name="idempotencyKeyTTL")
    priority: int | None = None
    max_attempts: int | None = None
    max_duration: int | None = None
    machine: str | None = None
    metadata: dict[str, Any] | None = None
    tags: str | list[str] | None = None
    debounce: DebounceOption | None = None
    region: Annotated[str, msgspec.Meta(extra_json_schema={"pattern": REGION_PATTERN})] | None = None
    lock_to_version: Annotated[str, msgspec.Meta(extra_json_schema={"pattern": VERSION_PATTERN})] | None = None
    # Set by the SDK when a task triggers another: the new run is a child of this run.
    parent_run_id: str | None = None


class TriggerRequest(_Body, forbid_unknown_fields=True):
    """Body of `POST /api/v1/tasks/{taskId}/trigger`."""

    payload: Any = None
    context: Any = None
    options: TriggerOptions | None = None


class BatchItem(_Body, forbid_unknown_fields=True):
    """One item of `POST /api/v1/tasks/{taskId}/batch`: a payload and its own options."""

    payload: Any = None
    context: Any = None
    options: TriggerOptions | None = None


class BatchTaskItem(_Body, forbid_unknown_fields=True):
    """One item of `POST /api/v1/tasks/batch`: the task to run, a payload and its own options."""

    task: TaskId
    payload: Any = None
    context: Any = None
    options: TriggerOptions | None = None


class BatchOptions(_Body, forbid_unknown_fields=True):
    """Options of a whole batch: an idempotency key makes a repeated batch return the first;
    `open` keeps the batch open for more chunks of items (`POST /api/v2/batches/{id}/items`)."""

    idempotency_key: str | None = None
    idempotency_key_ttl: Duration | None = msgspec.field(default=None, name="idempotencyKeyTTL")
    open: bool = False


class BatchAppendRequest(_Body, forbid_unknown_fields=True):
    """Body of `POST /api/v2/batches/{batchId}/items`: 1 to 1,000 more items of an open batch;
    `seal` with the last chunk (the batch then takes no more, and leaves PENDING)."""

    items: Annotated[list[BatchTaskItem], msgspec.Meta(extra_json_schema=_ITEMS)]
    seal: bool = False


class BatchTriggerRequest(_Body, forbid_unknown_fields=True):
    """Body of `POST /api/v1/tasks/{taskId}/batch`: 1 to 1,000 items of that task."""

    items: Annotated[list[BatchItem], msgspec.Meta(extra_json_schema=_ITEMS)]
    options: BatchOptions | None = None


class BatchTriggerTasksRequest(_Body, forbid_unknown_fields=True):
    """Body of `POST /api/v1/tasks/batch`: 1 to 1,000 items, each naming its task."""

    items: Annotated[list[BatchTaskItem], msgspec.Meta(extra_json_schema=_ITEMS)]
    options: BatchOptions | None = None


class BatchRunHandle(_Body):
    """One run of a batch, in the order of the items."""

    id: str
    task_identifier: str
    is_cached: bool = False


class BatchTriggerResponse(_Body):
    """Answer to a batch trigger (202): the batch and one run per item, in the order of the items."""

    id: str
    is_cached: bool
    runs: list[BatchRunHandle]


class Batch(_Body):
    """`GET /api/v2/batches/{batchId}`. `status`: PROCESSING while any run is unfinished, then
    COMPLETED (every run completed), ABORTED (every run canceled) or PARTIAL_FAILED."""

    id: str
    status: Literal["PENDING", "PROCESSING", "COMPLETED", "PARTIAL_FAILED", "ABORTED"]
    idempotency_key: str | None
    run_count: int
    # The runs' ids in the order of the items.
    runs: list[str]
    created_at: datetime
    updated_at: datetime


class StepRequest(_Body, forbid_unknown_fields=True):
    """Body of `POST /api/v1/runs/{runId}/steps` (the SDK's `step()`, from inside the run): the
    result of the step at position `seq` of attempt `attemptNumber`."""

    seq: Annotated[int, msgspec.Meta(extra_json_schema={"minimum": 0})]
    name: Annotated[str, msgspec.Meta(extra_json_schema={"minLength": 1, "maxLength": 256})]
    attempt_number: int
    result: Any = None


class RescheduleRequest(_Body, forbid_unknown_fields=True):
    """Body of `POST /api/v1/runs/{runId}/reschedule`: a duration or an ISO 8601 time."""

    delay: Delay


class ResetIdempotencyKeyRequest(_Body, forbid_unknown_fields=True):
    """Body of `POST /api/v1/idempotencyKeys/{key}/reset`."""

    task_identifier: TaskId


class TriggerResponse(_Body):
    """Answer to a trigger: the new run's id."""

    id: str
    is_cached: bool = False


class CreateTokenRequest(_Body):
    """`POST /api/v1/auth/tokens`: a public access token for these scopes (ADR 0011)."""

    scopes: Annotated[list[Annotated[str, msgspec.Meta(extra_json_schema={"pattern": SCOPE_PATTERN})]],
                      msgspec.Meta(extra_json_schema={"minItems": 1})]
    # A duration ("15m", "1h", "2d"), seconds, or an ISO 8601 time.
    expiration_time: str | int = "15m"
    # A trigger token that triggers once (the seed's createTriggerPublicToken without multipleUse).
    one_shot: bool = False


class PublicToken(_Body):
    """A minted public access token and when it expires."""

    token: str
    expires_at: datetime


class RunReference(_Body):
    """Answer to a cancel: the run's id."""

    id: str


class RunError(_Body):
    """Why an attempt or a run failed."""

    message: str
    name: str = "Error"
    stack_trace: str | None = None


class RunAttempt(_Body):
    """One execution of a run."""

    id: str
    number: int
    status: str
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    error: RunError | None = None


class Run(_Body, Generic[T]):
    """A run as `GET /api/v3/runs/{runId}` and realtime return it (`Run[T]` in the SDK: the
    output decoded as its task's return type)."""

    id: str
    task_identifier: str
    status: str
    created_at: datetime
    updated_at: datetime
    payload: Any = None
    output: T | None = None
    # Payloads and outputs over 512 KB are not inline: these URLs read them for an hour, with no key.
    payload_presigned_url: str | None = None
    output_presigned_url: str | None = None
    error: RunError | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    delayed_until: datetime | None = None
    attempt_count: int = 0
    attempts: list[RunAttempt] = []
    tags: list[str] = []
    metadata: dict[str, Any] | None = None
    version: str | None = None
    queue: str | None = None
    concurrency_key: str | None = None
    idempotency_key: str | None = None
    is_test: bool = False
    depth: int = 0
    parent_run_id: str | None = None
    root_run_id: str | None = None
    # The batch that created the run, if one did.
    batch_id: str | None = None
    # The run this run replays (POST /api/v1/runs/{runId}/replay), if it is a replay.
    replayed_from_run_id: str | None = None
    # The schedule whose tick created the run, and the run's tree: in GET /api/v3/runs/{runId}
    # only (realtime messages leave them out).
    schedule: RunSchedule | None = None
    related_runs: RelatedRuns | None = None
    duration_ms: int = 0
    max_duration: int | None = None
    machine: str | None = None
    ttl: str | None = None
    expired_at: datetime | None = None
    is_queued: bool = False
    is_executing: bool = False
    is_waiting: bool = False
    is_completed: bool = False
    is_success: bool = False
    is_failed: bool = False
    is_cancelled: bool = False
    is_canceled: bool = False


class ListedRun(_Body):
    """A run as `GET /api/v1/runs` lists it: the run without payload, output, error and attempts
    (retrieve the run for those)."""

    id: str
    task_identifier: str
    status: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    delayed_until: datetime | None = None
    expired_at: datetime | None = None
    ttl: str | None = None
    tags: list[str] = []
    metadata: dict[str, Any] | None = None
    version: str | None = None
    queue: str | None = None
    idempotency_key: str | None = None
    is_test: bool = False
    depth: int = 0
    batch_id: str | None = None
    schedule_id: str | None = None
    replayed_from_run_id: str | None = None
    parent_run_id: str | None = None
    root_run_id: str | None = None
    attempt_count: int = 0
    machine: str | None = None
    concurrency_key: str | None = None
    max_duration: int | None = None
    duration_ms: int = 0
    is_queued: bool = False
    is_executing: bool = False
    is_waiting: bool = False
    is_completed: bool = False
    is_success: bool = False
    is_failed: bool = False
    is_cancelled: bool = False
    is_canceled: bool = False


class RunSchedule(_Body):
    """The schedule whose tick created a run (`GET /api/v3/runs/{runId}`)."""

    id: str
    deduplication_key: str
    generator: ScheduleGenerator
    external_id: str | None = None


class RelatedRuns(_Body):
    """A run's place in its tree (`GET /api/v3/runs/{runId}`): the root and the parent, as
    listed runs, and its first 100 children, oldest first."""

    root: ListedRun | None = None
    parent: ListedRun | None = None
    children: list[ListedRun] = []


class RunListPagination(_Body):
    """The cursors of the pages beside this one: `page[after]=next`, `page[before]=previous`."""

    next: str | None = None
    previous: str | None = None


class RunList(_Body):
    """`GET /api/v1/runs`: a page of runs, newest first."""

    data: list[ListedRun]
    pagination: RunListPagination


class AddTagsRequest(_Body, forbid_unknown_fields=True):
    """Body of `POST /api/v1/runs/{runId}/tags`: a tag or a list; a run keeps 10 at most."""

    tags: Annotated[str, msgspec.Meta(extra_json_schema={"minLength": 1, "maxLength": 128})] | Annotated[
        list[Annotated[str, msgspec.Meta(extra_json_schema={"minLength": 1, "maxLength": 128})]],
        msgspec.Meta(extra_json_schema={"minItems": 1})]


class RunTags(_Body):
    """Answer to adding tags: the run's tags after."""

    tags: list[str]


class MetadataOperation(_Body, forbid_unknown_fields=True):
    """One operation on a run's metadata: `set`, `delete`, `append`, `remove`, `increment`,
    `decrement` (each with a `key`: a name or a JSON path `$.a.b`) or `update` (merge the object
    `value` in at the top)."""

    type: Literal["set", "delete", "append", "remove", "increment", "decrement", "update"]
    key: Annotated[str, msgspec.Meta(extra_json_schema={"pattern": "^[^\\u0000]{1,1024}$"})] | None = None
    # Missing (UNSET) is not JSON null: `set` with a null value stores null.
    value: Any | msgspec.UnsetType = msgspec.UNSET


METADATA_KEY_LENGTH = 1024
METADATA_PATH_DEPTH = 32


def metadata_key_problem(key: object) -> str | None:
    """What is wrong with a metadata key (a name, or a JSON path `$.a.b` of at most 32 names),
    or None: the rule the API and the SDK both apply."""
    if not isinstance(key, str) or not key or len(key) > METADATA_KEY_LENGTH or "\x00" in key:
        return f"a key is 1-{METADATA_KEY_LENGTH} characters without NUL"
    if key.startswith("$"):
        names = key[2:].split(".")
        if not key.startswith("$.") or not all(names):
            return f"{key[:60]!r} is not a JSON path like $.progress.done"
        if len(names) > METADATA_PATH_DEPTH:
            return f"a JSON path has at most {METADATA_PATH_DEPTH} names"
    return None


class UpdateMetadataRequest(_Body, forbid_unknown_fields=True):
    """Body of `PUT /api/v1/runs/{runId}/metadata`: `metadata` replaces it all, then the
    `operations` apply in order; `parentOperations` and `rootOperations` go to the run's parent
    and root (the run itself for a run at the top of its tree)."""

    metadata: dict[str, Any] | None = None
    operations: list[MetadataOperation] = []
    parent_operations: list[MetadataOperation] = []
    root_operations: list[MetadataOperation] = []


class RunMetadata(_Body):
    """The run's metadata after an update."""

    metadata: dict[str, Any]


class RunLogLine(_Body):
    """One `logger` line of a run."""

    attempt_number: int
    level: str
    message: str
    attributes: dict[str, Any]
    timestamp: datetime


class RunLogs(_Body):
    """`GET /api/v1/runs/{runId}/logs`: the run's lines, oldest first."""

    data: list[RunLogLine]


class RunSpanEvent(_Body):
    """Something that happened inside a span (an exception the span recorded, say)."""

    name: str
    time: datetime
    attributes: dict[str, Any]


class RunSpan(_Body):
    """One finished span of a run's trace."""

    span_id: str
    parent_span_id: str | None
    # The run the span is about: this run or one of its descendants; null for the span that triggered it
    # when that was a batch.
    run_id: str | None
    name: str
    service: str
    start_time: datetime
    end_time: datetime
    duration_ms: float
    status: Literal["UNSET", "OK", "ERROR"]
    attributes: dict[str, Any]
    events: list[RunSpanEvent]


class RunSpans(_Body):
    """`GET /api/v1/runs/{runId}/spans`: the spans of the run and its descendants, in the order they
    began. Kept only while the services trace with the postgres exporter; `traceId` is null for a run
    triggered while tracing was off."""

    trace_id: str | None
    data: list[RunSpan]


class ScheduleGenerator(_Body):
    """How a schedule's ticks are generated."""

    type: str
    expression: str
    description: str


class ScheduleEnvironment(_Body):
    """An environment a schedule runs in."""

    id: str
    type: str


class Schedule(_Body):
    """A cron schedule of a task (`/api/v1/schedules`)."""

    id: str
    type: str
    task: str
    active: bool
    deduplication_key: str
    generator: ScheduleGenerator
    timezone: str
    environments: list[ScheduleEnvironment]
    external_id: str | None = None
    next_run: datetime | None = None


class CreateScheduleRequest(_Body, forbid_unknown_fields=True):
    """Body of `POST /api/v1/schedules` (an upsert by deduplicationKey)."""

    task: TaskId
    cron: str
    deduplication_key: NonEmpty
    external_id: str | None = None
    timezone: str = "UTC"


class UpdateScheduleRequest(_Body, forbid_unknown_fields=True):
    """Body of `PUT /api/v1/schedules/{id}`."""

    task: str
    cron: str
    external_id: str | None = None
    timezone: str = "UTC"


class SchedulePagination(_Body):
    """Where a page of schedules is."""

    current_page: int
    total_pages: int
    count: int


class SchedulePage(_Body):
    """`GET /api/v1/schedules`."""

    data: list[Schedule]
    pagination: SchedulePagination


class Timezones(_Body):
    """`GET /api/v1/timezones`."""

    timezones: list[str]


class QueueKeyState(_Body):
    """One concurrency key's copy of a queue."""

    key: str
    running: int
    queued: int


class RateLimitState(_Body):
    """At most `limit` runs start within any `period` seconds."""

    limit: int
    period: float


class QueueState(_Body):
    """A queue of the environment: its limits, and what waits and runs on it now."""

    # Without `perKeyLimit`, `concurrencyLimit` applies to each concurrency key's copy of the
    # queue; with it, `perKeyLimit` applies to each key and `concurrencyLimit` to all together.
    # (One-line docstrings: msgspec versions differ in how they dedent longer ones.)

    name: str
    running: int
    queued: int
    paused: bool = False
    concurrency_limit: int | None = None
    per_key_limit: int | None = None
    rate_limit: RateLimitState | None = None
    per_key_rate_limit: RateLimitState | None = None
    keys: list[QueueKeyState] = []


class QueueList(_Body):
    """`GET /api/v1/queues`."""

    data: list[QueueState]


class EnvironmentLimits(_Body):
    """`GET|PATCH /api/v1/environment`: the environment's concurrency limit, burst factor and
    the region of runs triggered without one."""

    id: str
    type: str
    concurrency_limit: int
    burst_factor: float
    default_region: str = "default"


class EnvironmentLimitsUpdate(_Body, forbid_unknown_fields=True):
    """Body of `PATCH /api/v1/environment`."""

    concurrency_limit: Annotated[
        int, msgspec.Meta(extra_json_schema={"minimum": 1, "maximum": 1_000_000})] | None = None
    burst_factor: Annotated[float, msgspec.Meta(extra_json_schema={"minimum": 1, "maximum": 1000})] | None = None
    default_region: Annotated[str, msgspec.Meta(extra_json_schema={
        "pattern": r"^[a-z0-9][a-z0-9._-]{0,63}$"})] | None = None


class Region(_Body):
    """A region of the environment (`GET /api/v1/regions`): its default, or one a worker
    registered with (`slipstream worker --region`)."""

    name: str
    is_default: bool
    live_workers: int


class RegionList(_Body):
    """`GET /api/v1/regions`: the default region first."""

    data: list[Region]


class Deployment(_Body):
    """A version of the environment's task code (`GET /api/v1/deployments`). CURRENT: new runs go
    to its workers (before a first deploy, every version with a live worker is current);
    DRAINING: not current, runs locked to it are unfinished; INACTIVE: neither."""

    version: str
    status: Literal["CURRENT", "DRAINING", "INACTIVE"]
    tasks: list[str]
    live_workers: int
    unfinished_runs: int
    created_at: datetime
    promoted_at: datetime | None = None
    # `GET /api/v1/deployments/{version}` only: the JSON Schema of each schema task's payload.
    payload_schemas: dict[str, dict[str, Any]] | None = None


class DeploymentList(_Body):
    """`GET /api/v1/deployments`: newest registration first."""

    data: list[Deployment]


class CreateDeploymentRequest(_Body, forbid_unknown_fields=True):
    """Body of `POST /api/v1/deployments`: register a version's task catalog (what `slipstream
    deploy` sends: the definitions its workers will register) and, with `promote`, make it current."""

    version: Annotated[str, msgspec.Meta(extra_json_schema={"pattern": VERSION_PATTERN})]
    tasks: list[dict[str, Any]] = []
    queues: list[dict[str, Any]] = []
    promote: bool = False
