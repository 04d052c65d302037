"""The wire contract of Slipstream: JetStream messages, HTTP bodies and websocket messages.

Everything that crosses a process boundary is a msgspec Struct defined here. The Python
attribute names are snake_case; on the wire they are camelCase, as in the seed's REST API.
This package imports only msgspec and the standard library.
"""

from __future__ import annotations

from slipstream_proto.events import (
    STREAMS,
    CancelRun,
    DispatchRun,
    Event,
    QueueSignal,
    RunUpdated,
    StreamSpec,
    decode_event,
    encode_event,
)
from slipstream_proto.http import (
    CreateScheduleRequest,
    DebounceOption,
    ErrorBody,
    QueueOption,
    RescheduleRequest,
    ResetIdempotencyKeyRequest,
    Run,
    RunAttempt,
    RunError,
    RunLogLine,
    RunLogs,
    RunReference,
    Schedule,
    ScheduleEnvironment,
    ScheduleGenerator,
    SchedulePage,
    SchedulePagination,
    Timezones,
    TriggerOptions,
    TriggerRequest,
    TriggerResponse,
    UpdateScheduleRequest,
)
from slipstream_proto.realtime import RealtimeError, RealtimeMessage, RealtimeRun
from slipstream_proto.statuses import FINAL_STATUSES, RunStatus

__all__ = [
    "CreateScheduleRequest",
    "Schedule",
    "ScheduleEnvironment",
    "ScheduleGenerator",
    "SchedulePage",
    "SchedulePagination",
    "Timezones",
    "UpdateScheduleRequest",
    "FINAL_STATUSES",
    "STREAMS",
    "CancelRun",
    "DebounceOption",
    "DispatchRun",
    "ErrorBody",
    "Event",
    "QueueOption",
    "QueueSignal",
    "RealtimeError",
    "RealtimeMessage",
    "RealtimeRun",
    "Run",
    "RunAttempt",
    "RunError",
    "RunLogLine",
    "RunLogs",
    "RunReference",
    "RescheduleRequest",
    "ResetIdempotencyKeyRequest",
    "RunStatus",
    "RunUpdated",
    "StreamSpec",
    "TriggerOptions",
    "TriggerRequest",
    "TriggerResponse",
    "decode_event",
    "encode_event",
]
