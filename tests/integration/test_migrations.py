"""The database built from the migrations has the schema the code expects."""

from __future__ import annotations

import asyncpg
from slipstream_platform import db

EXPECTED_COLUMNS = {
    "projects": {"id", "name", "created_at"},
    "environments": {"id", "project_id", "type", "concurrency_limit", "created_at", "burst_factor",
                     "dispatch_queue", "dispatch_key", "current_version", "default_region"},
    "queues": {"environment_id", "name", "concurrency_limit", "paused", "updated_at", "per_key_limit", "rate_limit",
               "rate_period", "per_key_rate_limit", "per_key_rate_period"},
    "queue_starts": {"environment_id", "queue", "concurrency_key", "started_at"},
    "workers": {"id", "environment_id", "task_ids", "manifest", "capacity", "version", "hostname",
                "started_at", "heartbeat_at", "stopped_at", "region"},
    "runs": {"id", "environment_id", "task_identifier", "status", "payload", "output", "error", "tags",
             "metadata", "version", "queue", "concurrency_key", "max_attempts", "priority_ms",
             "attempt_count", "worker_id", "traceparent", "created_at", "updated_at", "queue_ts",
             "available_at", "delayed_until", "dequeued_at", "started_at", "finished_at", "max_duration",
             "parent_run_id", "root_run_id", "depth", "machine", "ttl_seconds", "expires_at", "expired_at",
             "resume_pending", "executed_ms", "segment_started_at", "idempotency_key", "debounce_key",
             "debounce_deadline", "request_id", "batch_id", "schedule_id", "replayed_from_run_id",
             "payload_packet", "output_packet", "locked_version", "lock_to_version", "region"},
    "batches": {"id", "environment_id", "task_identifier", "run_ids", "cached_run_ids", "parent_run_id",
                "idempotency_key", "idempotency_expires_at", "request_id", "created_at", "updated_at", "sealed"},
    "batch_chunks": {"batch_id", "request_id", "first_index", "item_count"},
    "attempts": {"id", "run_id", "number", "status", "worker_id", "error", "created_at", "started_at",
                 "completed_at"},
    "waitpoints": {"id", "run_id", "seq", "type", "resume_at", "child_run_id", "status", "result", "created_at",
                   "completed_at", "batch_id", "step_name"},
    "idempotency_keys": {"environment_id", "task_identifier", "key", "run_id", "expires_at"},
    "task_definitions": {"environment_id", "task_identifier", "scheduled", "updated_at", "queue"},
    "schedules": {"id", "environment_id", "task_identifier", "type", "cron", "timezone", "external_id",
                  "deduplication_key", "active", "next_run_at", "last_run_at", "created_at", "updated_at"},
    "run_logs": {"id", "run_id", "attempt_number", "level", "message", "attributes", "logged_at"},
    "spent_tokens": {"jti", "environment_id", "expires_at"},
    "metadata_requests": {"run_id", "request_id", "created_at"},
    "deployments": {"environment_id", "version", "task_ids", "manifest", "queues", "created_at", "registered_at",
                    "promoted_at"},
    "regions": {"environment_id", "name", "registered_at"},
    "run_spans": {"trace_id", "span_id", "parent_span_id", "run_id", "name", "service", "started_at", "ended_at",
                  "duration_ns", "status", "attributes", "events"},
    "api_keys": {"key_hash", "environment_id", "display", "created_at", "expires_at"},
}


async def test_schema_matches_the_code(pool: asyncpg.Pool) -> None:
    rows = await pool.fetch(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
    )
    found: dict[str, set[str]] = {}
    for row in rows:
        found.setdefault(row["table_name"], set()).add(row["column_name"])
    for table, columns in EXPECTED_COLUMNS.items():
        assert found.get(table) == columns, table


async def test_migrate_is_idempotent_and_recorded(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        assert await db.migrate(conn) == []
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")]
    assert versions == [v for v, _, _ in db.migration_files()]
