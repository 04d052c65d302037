"""The attempt statements against a real Postgres: many runs per statement, each row guarded,
and the lifecycle's decisions written as the store records them."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import asyncpg
from slipstream_core import ipc
from slipstream_core.definitions import QueueDefinition, RetryPolicy, TaskDefinition
from slipstream_platform import lifecycle
from slipstream_platform.lifecycle import Observed
from slipstream_platform.store import attempts, claims
from slipstream_platform.store.attempts import AttemptEnd, StartRequest

from tests.integration.test_store import add_run, add_worker, claim

TASK = TaskDefinition(id="t", queue=QueueDefinition(name="task/t"), retry=RetryPolicy(max_attempts=2),
                      max_duration=90, machine="medium-1x")


async def claimed(pool: asyncpg.Pool, env_id: str, n: int, worker: str = "w1") -> list[str]:
    ids = [await add_run(pool, env_id) for _ in range(n)]
    await add_worker(pool, env_id, worker, ["t"], n)
    assert sorted(await claim(pool, env_id, worker, ["t"], n)) == sorted(ids)
    return ids


async def test_one_statement_starts_every_run_still_dequeued_here(pool: asyncpg.Pool, env_id: str) -> None:
    ids = await claimed(pool, env_id, 4)
    # One was requeued meanwhile, and one id is not a run at all: both are left out.
    await pool.execute("UPDATE runs SET status = 'QUEUED', worker_id = NULL WHERE id = $1", ids[3])
    requests = [lifecycle.start_request(run_id, TASK) for run_id in [*ids, "run_missing"]]
    started = await attempts.start(pool, worker_id="w1", starts=requests)
    assert sorted(a.run_id for a in started) == sorted(ids[:3])
    for a in started:
        assert (a.status, a.attempt_number, a.max_attempts, a.max_duration, a.machine) == (
            "EXECUTING", 1, 2, 90, "medium-1x")
        assert a.payload_json is not None and json.loads(a.payload_json) == {"a": 1}
        assert a.attempt_id.startswith("attempt_") and not a.resuming
    rows = await pool.fetch("SELECT run_id, id, status FROM attempts WHERE run_id = ANY($1)", ids)
    assert {r["run_id"]: (r["id"], r["status"]) for r in rows} == {
        a.run_id: (a.attempt_id, "EXECUTING") for a in started}
    # Started runs are not started again, nor by another worker.
    assert await attempts.start(pool, worker_id="w1", starts=requests) == []
    assert await attempts.start(pool, worker_id="w2", starts=[lifecycle.start_request(ids[3], TASK)]) == []


async def test_a_resumed_run_keeps_its_attempt(pool: asyncpg.Pool, env_id: str) -> None:
    [run_id] = await claimed(pool, env_id, 1)
    [first] = await attempts.start(pool, worker_id="w1", starts=[StartRequest(run_id=run_id, default_max_attempts=3)])
    assert await attempts.suspend(pool, run_id=run_id, attempt_number=1) is not None
    # The wait is over: the run is dequeued again and resumes.
    await pool.execute("UPDATE runs SET status = 'QUEUED', resume_pending = true WHERE id = $1", run_id)
    assert await claim(pool, env_id, "w1", ["t"], 1) == [run_id]
    [again] = await attempts.start(pool, worker_id="w1", starts=[StartRequest(run_id=run_id, default_max_attempts=3)])
    assert again.resuming and again.attempt_number == 1 and again.attempt_id == first.attempt_id
    assert await pool.fetchval("SELECT count(*) FROM attempts WHERE run_id = $1", run_id) == 1


async def test_one_statement_records_every_kind_of_end(pool: asyncpg.Pool, env_id: str) -> None:
    ids = await claimed(pool, env_id, 5)
    by_id = {a.run_id: a for a in await attempts.start(
        pool, worker_id="w1", starts=[lifecycle.start_request(run_id, TASK) for run_id in ids])}
    now = datetime.now(UTC)
    ends = [
        lifecycle.end_of_attempt(by_id[ids[0]], TASK, Observed(outcome=ipc.Outcome(
            run_id=ids[0], attempt_number=1, ok=True, output_json='{"ok": true}')), now),
        lifecycle.end_of_attempt(by_id[ids[1]], TASK, Observed(outcome=ipc.Outcome(
            run_id=ids[1], attempt_number=1, ok=False, error_json='{"name": "E"}', retry_delay_ms=60_000)), now),
        lifecycle.end_of_attempt(by_id[ids[2]], TASK, Observed(exit_code=-11), now),
        lifecycle.end_of_attempt(by_id[ids[3]], TASK, Observed(watchdog_fired=True), now),
        # A stale end (another attempt number) changes nothing.
        AttemptEnd(run_id=ids[4], attempt_number=7, status="COMPLETED", attempt_status="COMPLETED", output_json="1"),
    ]
    changed = {t.run_id: t.status for t in await attempts.finish(pool, ends)}
    assert changed == {ids[0]: "COMPLETED", ids[1]: "QUEUED", ids[2]: "CRASHED", ids[3]: "TIMED_OUT"}
    rows = {r["id"]: r for r in await pool.fetch(
        "SELECT r.id, r.status, r.output, r.error, r.finished_at, r.available_at, r.segment_started_at,"
        " a.status AS attempt, a.completed_at FROM runs r JOIN attempts a ON a.run_id = r.id"
        " WHERE r.id = ANY($1)", ids)}
    assert json.loads(rows[ids[0]]["output"]) == {"ok": True} and rows[ids[0]]["error"] is None
    assert rows[ids[1]]["finished_at"] is None and rows[ids[1]]["available_at"] > now
    assert json.loads(rows[ids[2]]["error"])["name"] == "TaskProcessCrashedError"
    assert json.loads(rows[ids[3]]["error"])["name"] == "MaxDurationExceededError"
    assert [rows[i]["attempt"] for i in ids] == ["COMPLETED", "FAILED", "CRASHED", "FAILED", "EXECUTING"]
    assert all(rows[i]["completed_at"] is not None and rows[i]["segment_started_at"] is None for i in ids[:4])
    assert rows[ids[4]]["status"] == "EXECUTING"
    # Written once: the same ends again change nothing.
    assert await attempts.finish(pool, ends) == []


async def test_an_end_postgres_refuses_does_not_fail_the_others_of_its_group(pool: asyncpg.Pool, env_id: str) -> None:
    ids = await claimed(pool, env_id, 3)
    await attempts.start(pool, worker_id="w1", starts=[lifecycle.start_request(run_id, TASK) for run_id in ids])
    # jsonb refuses \\u0000: that run's end cannot be stored as it is.
    ends = [AttemptEnd(run_id=run_id, attempt_number=1, status="COMPLETED", attempt_status="COMPLETED",
                       output_json='"a\\u0000b"' if run_id == ids[1] else '"ok"') for run_id in ids]
    finished = await attempts.finish_each(pool, ends, unavailable=(OSError,))
    assert {t.run_id for t in finished.changed} == {ids[0], ids[2]}
    assert list(finished.failed) == [ids[1]]
    statuses = {r["id"]: r["status"] for r in await pool.fetch("SELECT id, status FROM runs WHERE id = ANY($1)", ids)}
    assert statuses == {ids[0]: "COMPLETED", ids[1]: "EXECUTING", ids[2]: "COMPLETED"}


async def test_a_take_claims_and_starts_in_one_statement(pool: asyncpg.Pool, env_id: str) -> None:
    ids = [await add_run(pool, env_id) for _ in range(3)]
    other = await add_run(pool, env_id, task="u")  # a task this worker does not serve
    await add_worker(pool, env_id, "w1", ["t"], 2)
    defaults = lifecycle.task_defaults([TASK])
    took = await claims.take(pool, worker_id="w1", environment_id=env_id, tasks=defaults, capacity=2)
    # Oldest first, up to the capacity, started with the task's defaults; no DEQUEUED left behind.
    assert sorted(a.run_id for a in took.started) == sorted(ids[:2]) and not took.rated
    for a in took.started:
        assert (a.status, a.attempt_number, a.max_attempts, a.max_duration, a.machine) == (
            "EXECUTING", 1, 2, 90, "medium-1x")
        assert a.payload_json is not None and json.loads(a.payload_json) == {"a": 1}
    rows = {r["id"]: r for r in await pool.fetch(
        "SELECT id, status, worker_id, dequeued_at, started_at FROM runs WHERE id = ANY($1)", [*ids, other])}
    assert [rows[i]["status"] for i in [*ids, other]] == ["EXECUTING", "EXECUTING", "QUEUED", "QUEUED"]
    assert all(rows[i]["worker_id"] == "w1" and rows[i]["dequeued_at"] is not None for i in ids[:2])
    attempts_of = await pool.fetch("SELECT run_id, id, status, worker_id FROM attempts WHERE run_id = ANY($1)", ids)
    assert {r["run_id"]: (r["id"], r["status"], r["worker_id"]) for r in attempts_of} == {
        a.run_id: (a.attempt_id, "EXECUTING", "w1") for a in took.started}
    # The worker is full: nothing more, until an attempt ends.
    full = await claims.take(pool, worker_id="w1", environment_id=env_id, tasks=defaults, capacity=2)
    assert full.started == []
    first = took.started[0]
    await attempts.finish(pool, [AttemptEnd(run_id=first.run_id, attempt_number=1, status="COMPLETED",
                                            attempt_status="COMPLETED", output_json="1")])
    again = await claims.take(pool, worker_id="w1", environment_id=env_id, tasks=defaults, capacity=2)
    assert [a.run_id for a in again.started] == [ids[2]]


async def runs_rows_updated(conn: asyncpg.Connection) -> int:
    """Row versions of `runs` written by UPDATEs so far (this session's counts flushed first)."""
    await conn.execute("SELECT pg_stat_force_next_flush()")
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    updated: int = await conn.fetchval("SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'runs'")
    return updated


async def test_a_plain_take_writes_each_run_once_and_starts_it_as_a_limited_take_does(
    pool: asyncpg.Pool, env_id: str
) -> None:
    plain, limited = await add_run(pool, env_id), await add_run(pool, env_id, queue="task/limited")
    await add_worker(pool, env_id, "w1", ["t"], 1)
    defaults = lifecycle.task_defaults([TASK])
    async with pool.acquire() as conn:
        before = await runs_rows_updated(conn)
        [a] = (await claims.take(conn, worker_id="w1", environment_id=env_id, tasks=defaults, capacity=1)).started
        # No queue is limited and the base is out of reach: QUEUED -> EXECUTING in one write.
        assert a.run_id == plain and await runs_rows_updated(conn) - before == 1
        await attempts.finish(conn, [AttemptEnd(run_id=plain, attempt_number=1, status="COMPLETED",
                                                attempt_status="COMPLETED", output_json="1")])
        # A limited queue in the environment: the claim's walk, then the start (two writes).
        await conn.execute("INSERT INTO queues (environment_id, name, concurrency_limit)"
                           " VALUES ($1, 'task/limited', 1)", env_id)
        before = await runs_rows_updated(conn)
        [b] = (await claims.take(conn, worker_id="w1", environment_id=env_id, tasks=defaults, capacity=1)).started
        assert b.run_id == limited and await runs_rows_updated(conn) - before == 2
    # Both paths start a run the same way.
    fields = ("status", "attempt_number", "max_attempts", "max_duration", "machine", "resuming", "payload_json")
    assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields] == [
        "EXECUTING", 1, 2, 90, "medium-1x", False, '{"a": 1}']
    rows = await pool.fetch("SELECT r.id, r.worker_id, r.dequeued_at IS NOT NULL AS dequeued,"
                            " r.started_at = t.started_at AS same_start, t.id AS attempt_id, t.status"
                            " FROM runs r JOIN attempts t ON t.run_id = r.id WHERE r.id = ANY($1)", [plain, limited])
    assert {r["id"]: (r["worker_id"], r["dequeued"], r["same_start"], r["attempt_id"]) for r in rows} == {
        plain: ("w1", True, True, a.attempt_id), limited: ("w1", True, True, b.attempt_id)}


async def test_a_take_resumes_a_waiting_run_with_its_attempt(pool: asyncpg.Pool, env_id: str) -> None:
    run_id = await add_run(pool, env_id)
    await add_worker(pool, env_id, "w1", ["t"], 1)
    defaults = lifecycle.task_defaults([TASK])
    [first] = (await claims.take(pool, worker_id="w1", environment_id=env_id, tasks=defaults, capacity=1)).started
    assert await attempts.suspend(pool, run_id=run_id, attempt_number=1) is not None
    await pool.execute("UPDATE runs SET status = 'QUEUED', resume_pending = true WHERE id = $1", run_id)
    [again] = (await claims.take(pool, worker_id="w1", environment_id=env_id, tasks=defaults, capacity=1)).started
    assert again.resuming and again.attempt_number == 1 and again.attempt_id == first.attempt_id
    assert await pool.fetchval("SELECT count(*) FROM attempts WHERE run_id = $1", run_id) == 1


async def test_takes_racing_for_one_environment_keep_its_limit(pool: asyncpg.Pool, env_id: str) -> None:
    await pool.execute("UPDATE environments SET concurrency_limit = 5 WHERE id = $1", env_id)
    ids = [await add_run(pool, env_id) for _ in range(20)]
    for worker in ("w1", "w2", "w3"):
        await add_worker(pool, env_id, worker, ["t"], 4)
    defaults = lifecycle.task_defaults([TASK])
    takes = await asyncio.gather(*(claims.take(pool, worker_id=w, environment_id=env_id, tasks=defaults, capacity=4)
                                   for w in ("w1", "w2", "w3")))
    started = [a.run_id for t in takes for a in t.started]
    assert len(started) == len(set(started)) == 5 and set(started) <= set(ids)
    assert await pool.fetchval("SELECT count(*) FROM runs WHERE status = 'EXECUTING'") == 5


async def test_a_group_of_ends_says_whether_runs_wait_for_the_freed_slots(pool: asyncpg.Pool, env_id: str) -> None:
    await add_worker(pool, env_id, "w1", ["t"], 1)
    defaults = lifecycle.task_defaults([TASK])

    async def run_one() -> attempts.Finished:
        [a] = (await claims.take(pool, worker_id="w1", environment_id=env_id, tasks=defaults, capacity=1)).started
        return await attempts.finish_each(pool, [AttemptEnd(run_id=a.run_id, attempt_number=1, status="COMPLETED",
                                                            attempt_status="COMPLETED", output_json="1")],
                                          unavailable=(OSError,))

    await add_run(pool, env_id)
    await add_run(pool, env_id)
    assert (await run_one()).waiting  # the second run waits for the slot the first frees
    assert not (await run_one()).waiting
    # A run that backs off is not waiting for a slot yet.
    await add_run(pool, env_id)
    later = await add_run(pool, env_id)
    await pool.execute("UPDATE runs SET available_at = now() + interval '1 hour' WHERE id = $1", later)
    assert not (await run_one()).waiting


async def test_the_ends_of_children_resume_their_parents_at_once(pool: asyncpg.Pool, env_id: str) -> None:
    from slipstream_platform.store import waitpoints

    await add_worker(pool, env_id, "w1", ["t"], 8)
    defaults = lifecycle.task_defaults([TASK])
    parent_run, batch_parent = await add_run(pool, env_id), await add_run(pool, env_id)
    await claims.take(pool, worker_id="w1", environment_id=env_id, tasks=defaults, capacity=8)
    child = await add_run(pool, env_id, parent_run_id=parent_run)
    batch_id = "batch_test"
    kids = [await add_run(pool, env_id, parent_run_id=batch_parent, batch_id=batch_id) for _ in range(2)]
    await pool.execute("INSERT INTO batches (id, environment_id, run_ids) VALUES ($1, $2, $3)", batch_id, env_id,
                       kids)
    await waitpoints.create(pool, run_id=parent_run, seq=0, type="RUN", child_run_id=child)
    await waitpoints.create(pool, run_id=batch_parent, seq=0, type="BATCH", batch_id=batch_id)
    for run_id in (parent_run, batch_parent):
        assert await attempts.suspend(pool, run_id=run_id, attempt_number=1) is not None
    started = {a.run_id: a for a in (await claims.take(pool, worker_id="w1", environment_id=env_id, tasks=defaults,
                                                       capacity=8)).started}
    assert set(started) == {child, *kids}

    def end(run_id: str) -> AttemptEnd:
        return AttemptEnd(run_id=run_id, attempt_number=1, status="COMPLETED", attempt_status="COMPLETED",
                          output_json=json.dumps(run_id))

    done = await attempts.finish_each(pool, [end(child), end(kids[0])], unavailable=(OSError,))
    assert sorted(done.children) == sorted([child, kids[0]])
    # The child's parent resumes; the batch's parent waits for its other run.
    assert [t.run_id for t in await waitpoints.resume_parents(pool, done.children)] == [parent_run]
    done = await attempts.finish_each(pool, [end(kids[1])], unavailable=(OSError,))
    [resumed] = await waitpoints.resume_parents(pool, done.children)
    assert (resumed.run_id, resumed.status) == (batch_parent, "QUEUED")
    result = json.loads(await pool.fetchval("SELECT result FROM waitpoints WHERE run_id = $1", batch_parent))
    assert result["id"] == batch_id and [r["output"] for r in result["runs"]] == kids
    assert all(r["ok"] and r["task_identifier"] == "t" for r in result["runs"])
    # Said once: the scheduler's pass finds nothing left to resume.
    assert await waitpoints.resume_due(pool) == []


async def test_a_wait_recorded_after_its_children_ended_resumes_at_once(pool: asyncpg.Pool, env_id: str) -> None:
    # The children end before the waits are recorded (a cached finished child; a streamed
    # batch whose runs all ran while the rest was sent): their ends found no wait to complete.
    from slipstream_platform.store import waitpoints

    await add_worker(pool, env_id, "w1", ["t"], 8)
    defaults = lifecycle.task_defaults([TASK])
    parent_run, batch_parent, other = [await add_run(pool, env_id) for _ in range(3)]
    await claims.take(pool, worker_id="w1", environment_id=env_id, tasks=defaults, capacity=8)
    child = await add_run(pool, env_id, parent_run_id=parent_run)
    batch_id = "batch_ended"
    kids = [await add_run(pool, env_id, parent_run_id=batch_parent, batch_id=batch_id) for _ in range(2)]
    await pool.execute("INSERT INTO batches (id, environment_id, run_ids) VALUES ($1, $2, $3)", batch_id, env_id,
                       kids)
    running = await add_run(pool, env_id, parent_run_id=other)
    taken = await claims.take(pool, worker_id="w1", environment_id=env_id, tasks=defaults, capacity=8)
    assert {a.run_id for a in taken.started} == {child, running, *kids}
    ends = [AttemptEnd(run_id=r, attempt_number=1, status="COMPLETED", attempt_status="COMPLETED",
                       output_json=json.dumps(r)) for r in (child, *kids)]
    await attempts.finish_each(pool, ends, unavailable=(OSError,))
    for run_id, wait in ((parent_run, {"type": "RUN", "child_run_id": child}),
                         (batch_parent, {"type": "BATCH", "batch_id": batch_id}),
                         (other, {"type": "RUN", "child_run_id": running})):
        await waitpoints.create(pool, run_id=run_id, seq=0, **wait)  # type: ignore[arg-type]
        assert await attempts.suspend(pool, run_id=run_id, attempt_number=1) is not None
    # Each resumes when its own wait is checked; the one whose child still runs does not.
    [resumed] = await waitpoints.resume_if_done(pool, parent_run)
    assert (resumed.run_id, resumed.status) == (parent_run, "QUEUED")
    assert await waitpoints.resume_if_done(pool, other) == []
    [resumed] = await waitpoints.resume_if_done(pool, batch_parent)
    assert resumed.run_id == batch_parent
    result = json.loads(await pool.fetchval("SELECT result FROM waitpoints WHERE run_id = $1", batch_parent))
    assert [r["output"] for r in result["runs"]] == kids
    assert await waitpoints.resume_if_done(pool, batch_parent) == []  # once
    assert await pool.fetchval("SELECT status FROM runs WHERE id = $1", other) == "WAITING"
