"""The SDK sends a metadata request again, with its request id, until the API stores it."""

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
