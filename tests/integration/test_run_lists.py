"""Pages of runs against a real Postgres: newest first, exact keyset cursors, every filter,
and reads of index entries bounded by the page, not by the runs in the table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from slipstream_platform.store import run_lists
from slipstream_platform.store.run_lists import RunFilter

from tests.integration.test_store import add_run, runs_index_entries_read


async def bulk(pool: asyncpg.Pool, env_id: str, n: int, *, task: str = "t", start: datetime | None = None,
               extra: str = "", prefix: str = "run_bulk_") -> list[str]:
    """`n` runs created one millisecond apart (oldest first), with `extra` columns set by SQL."""
    start = start or datetime(2026, 1, 1, tzinfo=UTC)
    sets = f", {extra}" if extra else ""
    rows = await pool.fetch(
        "INSERT INTO runs (id, environment_id, task_identifier, status, payload, queue, created_at)"
        " SELECT $4 || lpad(i::text, 7, '0'), $1, $2, 'COMPLETED', '{}'::jsonb, 'task/' || $2,"
        "  $3::timestamptz + i * interval '1 ms' FROM generate_series(1, $5) AS i RETURNING id",
        env_id, task, start, prefix, n)
    ids = [r["id"] for r in rows]
    if extra:
        await pool.execute(f"UPDATE runs SET id = id{sets} WHERE id = ANY($1)", ids)
    return ids


async def all_pages(pool: asyncpg.Pool, env_id: str, where: RunFilter, size: int) -> list[str]:
    seen: list[str] = []
    page = await run_lists.page(pool, env_id, where, size=size)
    while True:
        seen += [r["id"] for r in page.rows]
        if page.next is None:
            return seen
        page = await run_lists.page(pool, env_id, where, size=size, after=page.next)


async def test_pages_are_newest_first_with_cursors_both_ways(pool: asyncpg.Pool, env_id: str) -> None:
    ids = await bulk(pool, env_id, 12)
    first = await run_lists.page(pool, env_id, RunFilter(), size=5)
    assert [r["id"] for r in first.rows] == ids[::-1][:5] and first.previous is None and first.next == ids[7]
    second = await run_lists.page(pool, env_id, RunFilter(), size=5, after=first.next)
    assert [r["id"] for r in second.rows] == ids[::-1][5:10] and second.previous == ids[6]
    back = await run_lists.page(pool, env_id, RunFilter(), size=5, before=second.previous)
    assert [r["id"] for r in back.rows] == [r["id"] for r in first.rows]
    assert back.previous is None and back.next == first.next
    last = await run_lists.page(pool, env_id, RunFilter(), size=5, after=second.next)
    assert [r["id"] for r in last.rows] == ids[::-1][10:] and last.next is None
    assert await all_pages(pool, env_id, RunFilter(), 5) == ids[::-1]


async def test_before_pages_in_the_middle_and_at_the_top(pool: asyncpg.Pool, env_id: str) -> None:
    ids = await bulk(pool, env_id, 12)  # newest first: ids[11] ... ids[0]
    where = RunFilter(task_identifiers=["t", "t", "none"])  # the merged form, a task given twice
    middle = await run_lists.page(pool, env_id, where, size=3, before=ids[4])
    assert [r["id"] for r in middle.rows] == [ids[7], ids[6], ids[5]]
    assert middle.previous == ids[7] and middle.next == ids[5]  # newer runs beyond it, and older
    top = await run_lists.page(pool, env_id, where, size=3, before=ids[11])
    assert top.rows == [] and top.previous is None and top.next is None
    assert await all_pages(pool, env_id, where, 5) == ids[::-1]  # no run twice


async def test_runs_created_while_paging_neither_shift_nor_repeat_a_page(pool: asyncpg.Pool, env_id: str) -> None:
    ids = await bulk(pool, env_id, 10)
    first = await run_lists.page(pool, env_id, RunFilter(), size=4)
    newer = [await add_run(pool, env_id) for _ in range(3)]  # created now: newer than every page
    rest = await run_lists.page(pool, env_id, RunFilter(), size=20, after=first.next)
    assert [r["id"] for r in first.rows] + [r["id"] for r in rest.rows] == ids[::-1]
    newest = await run_lists.page(pool, env_id, RunFilter(), size=20, before=first.rows[0]["id"])
    assert sorted(r["id"] for r in newest.rows) == sorted(newer)


async def test_every_filter(pool: asyncpg.Pool, env_id: str) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    a = await bulk(pool, env_id, 6, task="a", start=start, prefix="run_a_")
    b = await bulk(pool, env_id, 6, task="b", start=start + timedelta(microseconds=500), prefix="run_b_")
    c = await bulk(pool, env_id, 3, task="c", start=start, prefix="run_c_")
    await pool.execute("UPDATE runs SET status = 'FAILED', tags = '{red}', version = 'v2' WHERE id = ANY($1)", a[:2])
    await pool.execute("UPDATE runs SET tags = '{blue,green}', queue = 'q-x' WHERE id = ANY($1)", b[:3])
    batch = await pool.fetchval("INSERT INTO batches (id, environment_id, run_ids) VALUES ('batch_x', $1, '{}')"
                                " RETURNING id", env_id)
    await pool.execute("UPDATE runs SET batch_id = $2 WHERE id = ANY($1)", b[4:], batch)
    await pool.execute("UPDATE runs SET schedule_id = 'sched_x' WHERE id = ANY($1)", c)

    async def ids(**where: object) -> set[str]:
        return set(await all_pages(pool, env_id, RunFilter(**where), 4))  # type: ignore[arg-type]

    assert await ids(statuses=["FAILED"]) == set(a[:2])
    assert await ids(statuses=["FAILED", "COMPLETED"]) == set(a + b + c)
    assert await ids(task_identifiers=["a", "c"]) == set(a + c)
    assert await ids(task_identifiers=["a"], statuses=["COMPLETED"]) == set(a[2:])
    assert await ids(tags=["green", "red"]) == set(a[:2] + b[:3])
    assert await ids(versions=["v2"]) == set(a[:2])
    assert await ids(queues=["q-x"]) == set(b[:3])
    assert await ids(batch_id=batch) == set(b[4:])
    assert await ids(schedule_id="sched_x") == set(c)
    assert await ids(created_from=start + timedelta(milliseconds=5)) == {a[4], a[5], b[4], b[5]}
    assert await ids(created_to=start + timedelta(milliseconds=1)) == {a[0], c[0]}
    # Several task identifiers are merged in order, page after page.
    merged = await all_pages(pool, env_id, RunFilter(task_identifiers=["b", "a"]), 3)
    assert merged == [r["id"] for r in await pool.fetch(
        "SELECT id FROM runs WHERE task_identifier IN ('a', 'b') ORDER BY created_at DESC, id DESC")]


async def test_a_cursor_of_another_environment_is_refused(pool: asyncpg.Pool, env_id: str) -> None:
    [other] = await pool.fetch("SELECT id FROM environments WHERE id <> $1 LIMIT 1", env_id)
    [foreign] = await bulk(pool, other["id"], 1, prefix="run_foreign_")
    with pytest.raises(run_lists.CursorNotFound):
        await run_lists.page(pool, env_id, RunFilter(), size=5, after=foreign)


@pytest.mark.parametrize("where", [RunFilter(), RunFilter(task_identifiers=["t"]), RunFilter(batch_id="batch_big"),
                                   RunFilter(task_identifiers=["t", "u"])])
async def test_a_page_reads_index_entries_for_the_page_not_the_table(pool: asyncpg.Pool, env_id: str,
                                                                     where: RunFilter) -> None:
    await pool.execute("INSERT INTO batches (id, environment_id, run_ids) VALUES ('batch_big', $1, '{}')", env_id)
    await bulk(pool, env_id, 20_000)
    await bulk(pool, env_id, 5_000, task="u", prefix="run_u_", extra="batch_id = 'batch_big'")
    await pool.execute("ANALYZE runs")
    async with pool.acquire() as conn:
        before = await runs_index_entries_read(conn)
        page = await run_lists.page(conn, env_id, where, size=25, after=None)
        second = await run_lists.page(conn, env_id, where, size=25, after=page.next)
        read = await runs_index_entries_read(conn) - before
    assert len(page.rows) == len(second.rows) == 25
    assert read < 200, f"two pages read {read} index entries"
