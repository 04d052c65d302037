"""The claim's accounting against real Postgres: caps across keys, rate limits, fairness, and a
property test that compares every claim with a model of the rules in docs/queues.md."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slipstream_core.definitions import QueueDefinition
from slipstream_platform.store import claims, environments
from slipstream_platform.store import queues as queue_store

from tests.integration.test_store import add_run, add_worker, claim, runs_index_entries_read

PERIOD = 60.0


async def declare(pool: asyncpg.Pool, env_id: str, name: str, **limits: object) -> None:
    await queue_store.declare(pool, env_id, [QueueDefinition(name=name, **limits)])  # type: ignore[arg-type]


async def age_starts(pool: asyncpg.Pool) -> None:
    """Every start counted so far leaves its rate window (as if the period had passed)."""
    await pool.execute("UPDATE queue_starts SET started_at = started_at - make_interval(secs => $1)", PERIOD + 1)


async def test_a_cap_across_keys_bounds_the_whole_queue(pool: asyncpg.Pool, env_id: str) -> None:
    await declare(pool, env_id, "task/t", concurrency_limit=3, per_key_limit=2)
    runs = {key: [await add_run(pool, env_id, concurrency_key=key) for _ in range(3)] for key in "abc"}
    await add_worker(pool, env_id, "w1", ["t"], 10)
    first = await claim(pool, env_id, "w1", ["t"], 10)
    # One per key (round-robin), three in all: the cap, not 2 per key x 3 keys.
    assert sorted(first) == sorted(runs[k][0] for k in "abc")
    assert await claim(pool, env_id, "w1", ["t"], 10) == []
    await pool.execute("UPDATE runs SET status = 'COMPLETED' WHERE id = ANY($1::text[])", first[:2])
    assert len(await claim(pool, env_id, "w1", ["t"], 10)) == 2


async def test_per_key_limit_alone_bounds_each_key(pool: asyncpg.Pool, env_id: str) -> None:
    await declare(pool, env_id, "task/t", per_key_limit=1)
    runs = {key: [await add_run(pool, env_id, concurrency_key=key) for _ in range(2)] for key in "ab"}
    await add_worker(pool, env_id, "w1", ["t"], 10)
    assert sorted(await claim(pool, env_id, "w1", ["t"], 10)) == sorted([runs["a"][0], runs["b"][0]])
    assert await claim(pool, env_id, "w1", ["t"], 10) == []


async def test_a_rate_limit_counts_starts_in_its_window(pool: asyncpg.Pool, env_id: str) -> None:
    await declare(pool, env_id, "task/t", rate_limit=2, rate_period=PERIOD)
    runs = [await add_run(pool, env_id) for _ in range(5)]
    await add_worker(pool, env_id, "w1", ["t"], 10)
    assert sorted(await claim(pool, env_id, "w1", ["t"], 10)) == sorted(runs[:2])
    # Finishing does not give the start back: the window does.
    await pool.execute("UPDATE runs SET status = 'COMPLETED' WHERE id = ANY($1::text[])", runs[:2])
    assert await claim(pool, env_id, "w1", ["t"], 10) == []
    await age_starts(pool)
    assert sorted(await claim(pool, env_id, "w1", ["t"], 10)) == sorted(runs[2:4])
    async with pool.acquire() as conn:
        assert await queue_store.prune_starts(conn) == 2


async def test_a_per_key_rate_limit_counts_each_key(pool: asyncpg.Pool, env_id: str) -> None:
    await declare(pool, env_id, "task/t", per_key_rate_limit=1, per_key_rate_period=PERIOD)
    runs = {key: [await add_run(pool, env_id, concurrency_key=key) for _ in range(2)] for key in "ab"}
    await add_worker(pool, env_id, "w1", ["t"], 10)
    assert sorted(await claim(pool, env_id, "w1", ["t"], 10)) == sorted([runs["a"][0], runs["b"][0]])
    assert await claim(pool, env_id, "w1", ["t"], 10) == []
    await age_starts(pool)
    assert sorted(await claim(pool, env_id, "w1", ["t"], 10)) == sorted([runs["a"][1], runs["b"][1]])


async def test_next_available_at_includes_when_a_rate_window_frees(pool: asyncpg.Pool, env_id: str) -> None:

    await declare(pool, env_id, "task/t", rate_limit=1, rate_period=PERIOD)
    await add_run(pool, env_id)
    await add_run(pool, env_id)
    await add_worker(pool, env_id, "w1", ["t"], 10)
    assert await claims.next_available_at(pool) is None
    assert len(await claim(pool, env_id, "w1", ["t"], 10)) == 1
    started = await pool.fetchval("SELECT started_at FROM queue_starts")
    frees_at = await claims.next_available_at(pool)
    assert frees_at is not None and abs((frees_at - started).total_seconds() - PERIOD) < 0.001


async def test_keys_take_turns_without_any_limit(pool: asyncpg.Pool, env_id: str) -> None:
    big = [await add_run(pool, env_id, concurrency_key="big") for _ in range(50)]
    small = [await add_run(pool, env_id, concurrency_key=f"small-{i}") for i in range(5)]
    await add_worker(pool, env_id, "w1", ["t"], 6)
    # The tenant with 50 older runs gets one turn like everyone else.
    assert sorted(await claim(pool, env_id, "w1", ["t"], 6)) == sorted([big[0], *small])


async def test_round_robin_goes_on_where_the_last_claim_stopped(pool: asyncpg.Pool, env_id: str) -> None:
    runs = {key: [await add_run(pool, env_id, concurrency_key=key) for _ in range(2)] for key in "abc"}
    await add_worker(pool, env_id, "w1", ["t"], 1)
    order = []
    for _ in range(6):
        [run_id] = await claim(pool, env_id, "w1", ["t"], 1)
        order.append(next(key for key, ids in runs.items() if run_id in ids))
        await pool.execute("UPDATE runs SET status = 'COMPLETED' WHERE id = $1", run_id)
    assert order == list("abcabc")


async def test_a_queue_at_its_cap_leaves_the_turns_to_other_queues(pool: asyncpg.Pool, env_id: str) -> None:
    await declare(pool, env_id, "task/t", concurrency_limit=1, per_key_limit=1)
    for key in "abc":
        await add_run(pool, env_id, "t", concurrency_key=key)
    other = await add_run(pool, env_id, "u")
    await add_worker(pool, env_id, "w1", ["t", "u"], 2)
    # task/t has room for one run: its other two keys must not use up the claim's two turns.
    taken = await claim(pool, env_id, "w1", ["t", "u"], 2)
    assert len(taken) == 2 and other in taken


@pytest.mark.parametrize("spread", ["queues", "keys"])
async def test_a_claim_after_a_burst_reads_index_entries_not_the_backlog(pool: asyncpg.Pool, env_id: str,
                                                                         spread: str) -> None:
    # Statistics taken while no run waited (as after a quiet period), then a burst of 2,000
    # runs on 100 limit-1 queues (or keys) that autovacuum has not analyzed yet (migration 0020).
    names = [f"q{i:03}" for i in range(100)] if spread == "queues" else ["q"] * 100
    keys = [None] * 100 if spread == "queues" else [f"k{i:03}" for i in range(100)]
    for name in set(names):
        await declare(pool, env_id, name, concurrency_limit=1)
    for _ in range(20):
        await add_run(pool, env_id, status="COMPLETED", queue=names[0])
    await pool.execute("ANALYZE runs")
    await pool.execute(
        "INSERT INTO runs (id, environment_id, task_identifier, status, payload, queue, concurrency_key)"
        " SELECT 'run_burst_' || i, $1, 't', 'QUEUED', '{}'::jsonb, ($2::text[])[1 + i % 100],"
        "  ($3::text[])[1 + i % 100] FROM generate_series(1, 2000) AS i", env_id, names, keys)
    await add_worker(pool, env_id, "w1", ["t"], 16)
    async with pool.acquire() as conn:
        before = await runs_index_entries_read(conn)
        taken = await claims.claim(conn, worker_id="w1", environment_id=env_id, task_ids=["t"], capacity=16)
        read = await runs_index_entries_read(conn) - before
    assert len(taken.runs) == 16 and len({(run.queue, run.concurrency_key) for run in taken.runs}) == 16
    # Sixteen steps of the walk, each a few index lookups: far fewer entries than the 2,000
    # ready runs that each step read when the walk used another index of ready runs (64,253).
    assert read < 500, f"the claim read {read} index entries"


# ---- the model ----------------------------------------------------------------------------

QUEUES = ("q0", "q1")
KEYS = (None, "a", "b", "c", "d")
WORKERS = {"w1": ("t0", "t1"), "w2": ("t1",)}


@dataclass
class Limits:
    concurrency_limit: int | None
    per_key_limit: int | None
    rate_limit: int | None
    per_key_rate_limit: int | None
    paused: bool


@dataclass
class ModelRun:
    id: str
    task: str
    queue: str
    key: str | None
    queue_ts: datetime
    status: str = "QUEUED"
    worker: str | None = None


@dataclass
class Model:
    base: int
    burst: int
    limits: dict[str, Limits]
    runs: list[ModelRun] = field(default_factory=list)
    starts: list[tuple[str, str | None]] = field(default_factory=list)  # within the current window
    cursor: tuple[str, str] = ("", "")  # the copy the last claim served last

    def claim(self, worker: str, capacity: int) -> set[str]:
        """The runs the rules let `worker` start now, in the documented order."""
        holding = [r for r in self.runs if r.status == "DEQUEUED"]
        free = max(capacity - sum(r.worker == worker for r in holding), 0)
        ready = sorted((r for r in self.runs if r.status == "QUEUED" and r.task in WORKERS[worker]),
                       key=lambda r: (r.queue_ts, r.id))
        unlimited = all(lim == Limits(None, None, None, None, False) for lim in self.limits.values())
        keyed = any(r.status == "QUEUED" and r.key is not None for r in self.runs)
        if unlimited and not keyed and len(holding) + capacity <= self.base:
            return {r.id for r in ready[:free]}  # the plain ready order

        def queue_room(q: str) -> float:
            lim, running = self.limits[q], sum(r.queue == q for r in holding)
            cap = lim.concurrency_limit if lim.per_key_limit is not None else None
            started = sum(s[0] == q for s in self.starts)
            return min(self.base - running, _inf(cap) - running, _inf(lim.rate_limit) - started)

        def key_room(q: str, k: str | None) -> float:
            lim = self.limits[q]
            limit = lim.per_key_limit if lim.per_key_limit is not None else lim.concurrency_limit
            running = sum(r.queue == q and r.key == k for r in holding)
            started = sum(s == (q, k) for s in self.starts)
            return min(_inf(limit) - running, _inf(lim.per_key_rate_limit) - started)

        def shut(q: str) -> bool:
            lim = self.limits[q]
            limit = lim.per_key_limit if lim.per_key_limit is not None else lim.concurrency_limit
            return lim.paused or limit == 0 or queue_room(q) <= 0

        # The ring: every (queue, key) copy with QUEUED runs, in key order ('' for no key).
        copies = sorted({(r.queue, r.key or "") for r in self.runs if r.status == "QUEUED"})
        eligible = {(r.queue, r.key or "") for r in ready}
        ring: list[tuple[str, str, bool, float, float]] = []  # copy..., open, queue room, room
        at, wrapped, skip, taken = self.cursor, False, False, 0
        while True:
            after = [c for c in copies if (c[0] > at[0] if skip else c > at)]
            if after:
                nxt = after[0]
            elif not wrapped and copies:
                nxt, wrapped = copies[0], True
            else:
                break
            if wrapped and nxt > self.cursor:
                break
            q, k = nxt
            key = k or None
            is_open = not shut(q) and key_room(q, key) > 0 and nxt in eligible
            taken = (taken if q == at[0] else 0) + is_open
            skip = shut(q) or (is_open and taken >= queue_room(q))
            ring.append((q, k, is_open, queue_room(q), min(queue_room(q), key_room(q, key), capacity)))
            at = nxt
        chosen = [c for c in ring if c[2]][:free]
        candidates = []
        for pos, (q, k, _, q_room, room) in enumerate(chosen):
            runs = [r for r in ready if (r.queue, r.key or "") == (q, k)][:int(room)]
            candidates += [(rank, pos, q_room, r) for rank, r in enumerate(runs, 1)]
        per_queue: dict[str, int] = {}
        fair = []
        for _rank, pos, q_room, r in sorted(candidates, key=lambda c: (c[0], c[1])):
            per_queue[r.queue] = per_queue.get(r.queue, 0) + 1
            if per_queue[r.queue] <= q_room:
                fair.append((pos, r))
        fair = fair[:max(min(free, self.burst - len(holding)), 0)]
        if fair:
            last = max(fair, key=lambda f: f[0])[1]
            self.cursor = (last.queue, last.key or "")
        return {r.id for _, r in fair}


def _inf(limit: int | None) -> float:
    return math.inf if limit is None else limit


limits_strategy = st.builds(
    Limits,
    concurrency_limit=st.none() | st.integers(0, 3),
    per_key_limit=st.none() | st.integers(0, 2),
    rate_limit=st.none() | st.integers(1, 4),
    per_key_rate_limit=st.none() | st.integers(1, 3),
    paused=st.sampled_from((False, False, False, True)),
)
trigger = st.tuples(st.just("trigger"), st.sampled_from(("t0", "t1")), st.sampled_from(QUEUES),
                    st.sampled_from(KEYS), st.integers(1, 4))
claim_op = st.tuples(st.just("claim"), st.sampled_from(sorted(WORKERS)), st.integers(1, 8))
operation = st.one_of(
    trigger,
    claim_op,
    claim_op,
    st.tuples(st.just("finish"), st.integers(0, 100)),
    st.tuples(st.just("wait"), st.integers(0, 100)),
    st.tuples(st.just("resume"), st.integers(0, 100)),
    st.tuples(st.just("age")),
    st.tuples(st.just("limits"), st.sampled_from(QUEUES), limits_strategy),
)


async def _apply_limits(conn: asyncpg.Connection, env_id: str, name: str, lim: Limits) -> None:
    await queue_store.declare(conn, env_id, [QueueDefinition(
        name=name, concurrency_limit=lim.concurrency_limit, per_key_limit=lim.per_key_limit,
        rate_limit=lim.rate_limit, rate_period=PERIOD if lim.rate_limit else None,
        per_key_rate_limit=lim.per_key_rate_limit,
        per_key_rate_period=PERIOD if lim.per_key_rate_limit else None)])
    await queue_store.set_paused(conn, env_id, name, lim.paused)


async def _scenario(database_url: str, base: int, burst: float, limits: dict[str, Limits],
                    ops: list[tuple]) -> None:  # type: ignore[type-arg]
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        await pool.execute("TRUNCATE runs, attempts, queue_starts, queues, workers CASCADE")
        env_id = await pool.fetchval("SELECT id FROM environments WHERE type = 'DEVELOPMENT' LIMIT 1")
        if env_id is None:
            async with pool.acquire() as conn:
                await environments.bootstrap_project(conn, "model")
            env_id = await pool.fetchval("SELECT id FROM environments WHERE type = 'DEVELOPMENT' LIMIT 1")
        await pool.execute("UPDATE environments SET concurrency_limit = $2, burst_factor = $3,"
                           " dispatch_queue = NULL, dispatch_key = NULL WHERE id = $1", env_id, base, burst)
        model = Model(base=base, burst=math.floor(base * burst), limits=dict(limits))
        async with pool.acquire() as conn:
            for name, lim in limits.items():
                await _apply_limits(conn, env_id, name, lim)
        for worker, tasks in WORKERS.items():
            await add_worker(pool, env_id, worker, list(tasks), 10)
        for op in ops:
            kind = op[0]
            if kind == "trigger":
                _, task, q, key, n = op
                for _ in range(n):
                    run_id = await add_run(pool, env_id, task, queue=q, concurrency_key=key)
                    ts = await pool.fetchval("SELECT queue_ts FROM runs WHERE id = $1", run_id)
                    model.runs.append(ModelRun(run_id, task, q, key, ts))
            elif kind == "claim":
                _, worker, capacity = op
                expected = model.claim(worker, capacity)
                got = set(await claim(pool, env_id, worker, list(WORKERS[worker]), capacity))
                assert got == expected, (op, ops, model)
                for r in model.runs:
                    if r.id in got:
                        r.status, r.worker = "DEQUEUED", worker
                        if model.limits[r.queue].rate_limit or model.limits[r.queue].per_key_rate_limit:
                            model.starts.append((r.queue, r.key))
            elif kind in ("finish", "wait", "resume"):
                wanted = "WAITING" if kind == "resume" else "DEQUEUED"
                candidates = [r for r in model.runs if r.status == wanted]
                if not candidates:
                    continue
                r = candidates[op[1] % len(candidates)]
                r.status, r.worker = {"finish": "COMPLETED", "wait": "WAITING", "resume": "QUEUED"}[kind], None
                await pool.execute("UPDATE runs SET status = $2 WHERE id = $1", r.id, r.status)
            elif kind == "age":
                await age_starts(pool)
                model.starts.clear()
            elif kind == "limits":
                _, q, lim = op
                model.limits[q] = lim
                async with pool.acquire() as conn:
                    await _apply_limits(conn, env_id, q, lim)
                    if not (lim.rate_limit or lim.per_key_rate_limit):
                        # A queue that stops rate limiting forgets its starts (as the sweeper does).
                        await queue_store.prune_starts(conn)
                        model.starts = [s for s in model.starts if s[0] != q]
            # Never more than the limits, whatever the order of events.
            holding = await pool.fetch("SELECT queue, concurrency_key, worker_id FROM runs"
                                       " WHERE status IN ('DEQUEUED', 'EXECUTING')")
            assert len(holding) <= model.burst
            for worker in WORKERS:
                assert sum(h["worker_id"] == worker for h in holding) <= 10
    finally:
        await pool.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    base=st.integers(1, 10),
    burst=st.sampled_from((1.0, 1.5, 2.0)),
    limits=st.fixed_dictionaries({q: limits_strategy for q in QUEUES}),
    ops=st.lists(trigger, min_size=2, max_size=8).flatmap(
        lambda first: st.lists(operation, min_size=5, max_size=60).map(lambda rest: first + rest)),
)
def test_every_claim_matches_the_model(database_url: str, base: int, burst: float, limits: dict[str, Limits],
                                       ops: list[tuple]) -> None:  # type: ignore[type-arg]
    asyncio.run(_scenario(database_url, base, burst, limits, ops))
