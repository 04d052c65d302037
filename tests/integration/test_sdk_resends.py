"""The SDK sends again what is safe to send again: metadata requests (by request id) and GETs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import slipstream
from aiohttp import web
from slipstream import metadata

SEEN: list[tuple[str, dict]] = []
FAILURES = {"left": 0}


async def put_metadata(request: web.Request) -> web.Response:
    body = await request.json()
    SEEN.append((request.headers["x-slipstream-request-id"], body))
    if FAILURES["left"] > 0:
        FAILURES["left"] -= 1
        return web.json_response({"error": "busy"}, status=500)
    return web.json_response({"metadata": {}})


@pytest.fixture
async def api(unused_tcp_port: int) -> Iterator[str]:
    app = web.Application()
    app.router.add_put("/api/v1/runs/{run_id}/metadata", put_metadata)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    slipstream.configure(api_url=f"http://127.0.0.1:{unused_tcp_port}", secret_key="sk_dev_test")
    yield f"http://127.0.0.1:{unused_tcp_port}"
    import slipstream._config as config

    config._override = None
    await runner.cleanup()


async def test_a_failed_request_is_sent_again_with_the_same_id(api: str) -> None:
    SEEN.clear()
    FAILURES["left"] = 1
    metadata._begin("run_1", {})
    try:
        metadata.increment("n", 1)
        await metadata.flush()
    except slipstream.errors.ApiError:
        pass
    metadata.increment("n", 2)
    await metadata._end()  # the attempt ends: what is unsent goes first, then the rest
    assert [ops["operations"] for _, ops in SEEN] == [
        [{"type": "increment", "key": "n", "value": 1}],
        [{"type": "increment", "key": "n", "value": 1}],
        [{"type": "increment", "key": "n", "value": 2}]]
    assert SEEN[0][0] == SEEN[1][0] != SEEN[2][0]


CALLS = {"n": 0}


async def flaky_run(request: web.Request) -> web.Response:
    CALLS["n"] += 1
    if CALLS["n"] < 3:
        return web.json_response({"error": "restarting"}, status=503)
    return web.json_response({"id": "run_1", "taskIdentifier": "t", "status": "QUEUED",
                              "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z"})


async def test_a_get_is_sent_again_after_a_503(unused_tcp_port: int) -> None:
    app = web.Application()
    app.router.add_get("/api/v3/runs/{run_id}", flaky_run)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    slipstream.configure(api_url=f"http://127.0.0.1:{unused_tcp_port}", secret_key="sk_dev_test")
    try:
        run = await slipstream.runs.retrieve("run_1")
        assert run.id == "run_1" and CALLS["n"] == 3
    finally:
        import slipstream._config as config

        config._override = None
        await runner.cleanup()
