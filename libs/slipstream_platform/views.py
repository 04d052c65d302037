"""Build the wire objects of runs from their rows (shared by trigger-api and realtime)."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec
from slipstream_core import cron
from slipstream_proto import (
    ListedRun,
    RelatedRuns,
    Run,
    RunAttempt,
    RunError,
    RunSchedule,
    Schedule,
    ScheduleEnvironment,
    ScheduleGenerator,
)

from slipstream_platform.packets import presigned_url
from slipstream_platform.statemachine import status_flags
from slipstream_platform.store import run_lists
from slipstream_platform.store import runs as run_store
from slipstream_platform.store import schedules as schedule_store
from slipstream_platform.tokens import Credentials


def _raw(json_text: str | None) -> msgspec.Raw | None:
    # Payload and output are already JSON: embed them without parsing them again.
    return msgspec.Raw(json_text.encode()) if json_text is not None else None


def _error(json_text: str | None) -> RunError | None:
    return msgspec.json.decode(json_text, type=RunError) if json_text else None


def _summary(row: asyncpg.Record) -> dict[str, Any]:
    """The fields a run row gives both the run object and a listed run."""
    started, finished = row["started_at"], row["finished_at"]
    return {
        "id": row["id"],
        "task_identifier": row["task_identifier"],
        "status": row["status"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "started_at": started,
        "finished_at": finished,
        "delayed_until": row["delayed_until"],
        "attempt_count": row["attempt_count"],
        "tags": list(row["tags"]),
        "metadata": _raw(row["metadata"]),
        "version": row["version"],
        "queue": row["queue"],
        "concurrency_key": row["concurrency_key"],
        "duration_ms": int((finished - started).total_seconds() * 1000) if started and finished else 0,
        "max_duration": row["max_duration"],
        "machine": row["machine"],
        "idempotency_key": row["idempotency_key"],
        "ttl": f"{row['ttl_seconds']}s" if row["ttl_seconds"] else None,
        "expired_at": row["expired_at"],
        "depth": row["depth"],
        "parent_run_id": row["parent_run_id"],
        "root_run_id": row["root_run_id"],
        "batch_id": row["batch_id"],
        "replayed_from_run_id": row["replayed_from_run_id"],
        **status_flags(row["status"]),
    }


def run_view(row: asyncpg.Record, attempts: list[asyncpg.Record]) -> Run[Any]:
    """The run object of `GET /api/v3/runs/{id}` and of realtime messages."""
    return Run(
        **_summary(row),
        payload=_raw(row["payload"]),
        output=_raw(row["output"]),
        error=_error(row["error"]),
        attempts=[
            RunAttempt(
                id=a["id"],
                number=a["number"],
                status=a["status"],
                created_at=a["created_at"],
                started_at=a["started_at"],
                completed_at=a["completed_at"],
                error=_error(a["error"]),
            )
            for a in attempts
        ],
    )


def listed_run(row: asyncpg.Record) -> ListedRun:
    """A run as `GET /api/v1/runs` lists it (a row of `store.run_lists.page`)."""
    return ListedRun(**_summary(row), schedule_id=row["schedule_id"])


class PacketLinks(msgspec.Struct, frozen=True):
    """How a reader links to payloads and outputs kept outside the row: trigger-api's public
    URL, and the environments' keys that sign the links."""

    base_url: str
    credentials: Credentials


async def _linked(run: Run[Any], row: asyncpg.Record, links: PacketLinks | None) -> Run[Any]:
    """The run with presigned URLs for its stored payload and output."""
    payload, output = row["payload_packet"], row["output_packet"]
    if links is None or (payload is None and output is None):
        return run
    found = await links.credentials.signers(row["environment_id"])
    if found is None or not found[1]:
        return run
    key = found[1][0]  # the newest key's hash; the URL stays good while that key is
    return msgspec.structs.replace(
        run, payload_presigned_url=presigned_url(links.base_url, key, payload) if payload else None,
        output_presigned_url=presigned_url(links.base_url, key, output) if output else None)


async def load_run(conn: asyncpg.Connection | asyncpg.Pool, environment_id: str, run_id: str, *,
                   related: bool = False, links: PacketLinks | None = None) -> Run[Any] | None:
    """Read a run and its attempts and build its wire object; with `related`, also its
    schedule and its place in its tree (`GET /api/v3/runs/{runId}`); with `links`, presigned
    URLs for a payload or output kept outside the row."""
    row = await run_store.get(conn, environment_id, run_id)
    if row is None:
        return None
    run = await _linked(run_view(row, await run_store.list_attempts(conn, run_id)), row, links)
    if not related:
        return run
    schedule = None
    if row["schedule_id"] is not None:
        found = await schedule_store.get(conn, environment_id, row["schedule_id"])
        if found is not None:  # (a deleted schedule leaves its runs)
            view = schedule_view(found, "")
            schedule = RunSchedule(id=view.id, deduplication_key=view.deduplication_key, generator=view.generator,
                                   external_id=view.external_id)
    tree = await run_lists.related(conn, environment_id, run_id, parent_id=row["parent_run_id"],
                                   root_id=row["root_run_id"])
    return msgspec.structs.replace(run, schedule=schedule, related_runs=RelatedRuns(
        root=listed_run(tree.root) if tree.root else None, parent=listed_run(tree.parent) if tree.parent else None,
        children=[listed_run(c) for c in tree.children]))


def schedule_view(row: asyncpg.Record, environment_type: str) -> Schedule:
    """The schedule object of `/api/v1/schedules`."""
    return Schedule(
        id=row["id"],
        type=row["type"],
        task=row["task_identifier"],
        active=row["active"],
        deduplication_key=row["deduplication_key"],
        external_id=row["external_id"],
        generator=ScheduleGenerator(
            type="CRON", expression=row["cron"], description=_describe(row["cron"], row["timezone"])
        ),
        timezone=row["timezone"],
        next_run=row["next_run_at"] if row["active"] else None,
        environments=[ScheduleEnvironment(id=row["environment_id"], type=environment_type)],
    )


def _describe(expression: str, timezone: str) -> str:
    """The cron in words ("at 09:00 on Monday to Friday (Europe/Paris)")."""
    try:
        return cron.describe(cron.parse(expression, timezone))
    except cron.CronError:
        return f"cron '{expression}' in {timezone}"
