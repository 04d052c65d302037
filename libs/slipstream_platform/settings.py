"""Service settings: one frozen Struct per service, filled from SLIPSTREAM_* variables.

Each field `foo_bar` is read from `SLIPSTREAM_FOO_BAR`. Services call `load_settings` once,
in their entry point, with `os.environ`; a bad value names the variable and the value.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TypeVar

import msgspec

from slipstream_platform.errors import SettingsError

PREFIX = "SLIPSTREAM_"


class CommonSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What every service needs."""

    database_url: str = "postgresql://postgres@127.0.0.1:5432/slipstream"
    nats_url: str = "nats://127.0.0.1:4222"  # or several servers of a cluster, comma-separated
    # Copies of each JetStream stream and of the payload store: 1 on one server, 3 on a cluster.
    nats_replicas: int = 1
    http_host: str = "127.0.0.1"
    http_port: int = 0
    log_level: str = "INFO"
    log_format: str = "text"  # text | json (one object a line: service, runId, traceId)
    # none, or console, otlp and postgres, comma-separated (otlp needs opentelemetry-exporter-otlp installed)
    otel_exporter: str = "none"
    # HTTP limits: a connection idle this long is closed (a client that never finishes its
    # headers too); a request body must arrive within http_body_timeout (else 408); the request
    # line and each header at most http_max_header_bytes, at most http_max_headers of them (else 400).
    http_idle_timeout: float = 75.0
    http_body_timeout: float = 30.0
    http_max_header_bytes: int = 8190
    http_max_headers: int = 128
    # uvloop | asyncio (see docs/adr/0007-uvloop.md)
    event_loop: str = "uvloop"
    # Where payloads and outputs over 512 KB go (ADR 0012): nats (the JetStream Object Store of
    # SLIPSTREAM_NATS_URL) | s3 (an S3-compatible store, below; needs `pip install slipstream[s3]`).
    packet_store: str = "nats"
    s3_endpoint_url: str = ""  # "": AWS itself; else e.g. http://minio:9000
    s3_bucket: str = "slipstream-packets"
    s3_region: str = "us-east-1"
    s3_access_key_id: str = ""  # "": botocore's usual chain (AWS_* variables, profile, instance role)
    s3_secret_access_key: str = ""
    s3_prefix: str = ""  # put before every object's name, e.g. "slipstream/"


class TriggerApiSettings(CommonSettings, frozen=True, kw_only=True):
    """trigger-api: the HTTP API."""

    http_port: int = 3030
    # A request body: a 10 MB payload (packets.PAYLOAD_LIMIT) and its envelope, or a batch.
    max_body_bytes: int = 16 * 1024 * 1024
    # Origins whose pages may call the API from a browser (comma-separated; "*" any; "" none).
    cors_origins: str = "*"
    # Requests per key, as N/DURATION ("1500/1m"), in each trigger-api process; "" no limit.
    rate_limit: str = ""
    # trigger-api's URL as its clients reach it, for presigned payload URLs ("": the request's own).
    api_url: str = ""
    # realtime's URL as browsers reach it, for the dashboard's live updates ("": the request's
    # host on port 3031).
    realtime_url: str = ""


class QueueManagerSettings(CommonSettings, frozen=True, kw_only=True):
    """queue-manager: wakes the supervisors when queued runs become ready by time."""

    http_port: int = 3032
    sweep_interval: float = 1.0


class SchedulerSettings(CommonSettings, frozen=True, kw_only=True):
    """scheduler: delayed runs and the sweeper for deadlines."""

    http_port: int = 3033
    tick_interval: float = 0.25
    sweep_interval: float = 2.0
    worker_timeout: float = 15.0
    dequeued_timeout: float = 30.0


class SupervisorSettings(CommonSettings, frozen=True, kw_only=True):
    """supervisor: runs attempts in a warm pool of worker processes."""

    http_port: int = 3034
    tasks: str = ""
    secret_key: str = ""
    api_url: str = "http://127.0.0.1:3030"
    realtime_url: str = ""
    concurrency: int = 4
    heartbeat_interval: float = 2.0
    # How often a supervisor with free slots takes runs without a signal (a lost one).
    sweep_interval: float = 1.0
    shutdown_grace: float = 30.0
    # How long past max_duration a task that ignores cancellation runs before its process is killed.
    watchdog_grace: float = 5.0
    # How long a canceled run's on_cancel hooks may take before its process is killed.
    cancel_grace: float = 30.0
    # How often the memory of an executing worker process is compared with its machine's limit.
    memory_poll_interval: float = 0.1
    # The version this worker registers under; empty: a hash of the task module's source.
    version: str = ""
    # The region whose runs this worker takes; empty: the environment's default region.
    region: str = ""


class RealtimeSettings(CommonSettings, frozen=True, kw_only=True):
    """realtime: websocket subscriptions to runs."""

    http_port: int = 3031
    poll_interval: float = 2.0
    # trigger-api's URL as clients reach it: runs link to large payloads and outputs there.
    api_url: str = "http://127.0.0.1:3030"
    # A message from a client over this closes its socket (1009); clients need send nothing.
    ws_max_message_bytes: int = 4096
    # A client that has not read an update for this long is dropped (it reconnects with `since`).
    ws_send_timeout: float = 10.0


S = TypeVar("S", bound=CommonSettings)


OTEL_EXPORTERS = ("console", "otlp", "postgres")


def otel_exporters(value: str) -> list[str]:
    """The exporters a SLIPSTREAM_OTEL_EXPORTER value names: [] for none; ValueError if it is not
    `none` or a comma-separated list of OTEL_EXPORTERS."""
    if value == "none":
        return []
    names = [name.strip() for name in value.split(",")]
    if not all(name in OTEL_EXPORTERS for name in names):
        raise ValueError(value)
    return names


def load_settings(cls: type[S], environ: Mapping[str, str]) -> S:
    """Build `cls` from the SLIPSTREAM_* entries of `environ`."""
    values: dict[str, str] = {}
    for name in cls.__struct_fields__:
        var = PREFIX + name.upper()
        if var in environ:
            values[name] = environ[var]
    try:
        settings = msgspec.convert(values, cls, strict=False)
    except msgspec.ValidationError as exc:
        # msgspec names the field as `$.field`: point at the variable instead.
        field = str(exc).rsplit("$.", 1)[-1].strip("`") if "$." in str(exc) else ""
        var = PREFIX + field.upper()
        raise SettingsError(
            f"{var}={environ.get(var, '')!r} is not valid: {exc}".replace(f" - at `$.{field}`", "")
        ) from None
    try:
        otel_exporters(settings.otel_exporter)
    except ValueError:
        raise SettingsError(
            f"SLIPSTREAM_OTEL_EXPORTER={settings.otel_exporter!r}: use none, or one or more of"
            " console, otlp and postgres, comma-separated"
        ) from None
    if settings.event_loop not in EVENT_LOOPS:
        raise SettingsError(f"SLIPSTREAM_EVENT_LOOP={settings.event_loop!r}: use uvloop or asyncio")
    if settings.log_format not in ("text", "json"):
        raise SettingsError(f"SLIPSTREAM_LOG_FORMAT={settings.log_format!r}: use text or json")
    if not 1 <= settings.nats_replicas <= 5:
        raise SettingsError(f"SLIPSTREAM_NATS_REPLICAS={settings.nats_replicas}: 1 to 5 (3 on a cluster of three)")
    for name, least in (("http_idle_timeout", 0.1), ("http_body_timeout", 0.1), ("http_max_header_bytes", 1024),
                        ("http_max_headers", 16), ("ws_max_message_bytes", 256), ("ws_send_timeout", 0.1)):
        value = getattr(settings, name, None)
        if value is not None and value < least:
            raise SettingsError(f"{PREFIX}{name.upper()}={value!r}: at least {least:g}")
    rate_limit = getattr(settings, "rate_limit", "")
    if rate_limit:
        from slipstream_platform.ratelimit import parse as parse_rate

        try:
            parse_rate(rate_limit)
        except ValueError as exc:
            raise SettingsError(f"SLIPSTREAM_RATE_LIMIT={rate_limit!r}: {exc}") from None
    if settings.packet_store not in PACKET_STORES:
        raise SettingsError(f"SLIPSTREAM_PACKET_STORE={settings.packet_store!r}: use nats or s3")
    return settings


EVENT_LOOPS = ("uvloop", "asyncio")
PACKET_STORES = ("nats", "s3")


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop a service (or a worker process) runs on: uvloop unless told `asyncio`."""
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop
