"""Bad input always gets `{"error": ...}` with the right status, and never a 500."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.e2e.conftest import Platform

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b'{"payload": ', 400, "invalid JSON"),
        (b"", 400, "empty"),
        (b"[1, 2]", 400, "invalid request"),
        (b'{"payload": 1, "surprise": true}', 400, "unknown field `surprise`"),
        (b'{"options": {"maxAttempts": "three"}}', 400, "maxAttempts"),
        (b'{"options": {"delay": "soon"}}', 400, "delay"),
        (b'{"options": {"maxAttempts": 0}}', 422, "maxAttempts must be at least 1"),
        (b'{"options": {"tags": ["a","b","c","d","e","f","g","h","i","j","k"]}}', 422, "at most 10 tags"),
        (b'{"options": {"region": "eu-central-1"}}', 422, "region 'eu-central-1' is not a region of this environment"),
        (b'{"options": {"region": "EU"}}', 422, "is not a region name"),
        (b'{"options": {"lockToVersion": "v0-none"}}', 422, "lockToVersion 'v0-none' is not a version"),
        (b'{"options": {"debounce": {"key": "k"}}}', 400, "delay"),
        (b'{"options": {"debounce": {"key": "k", "delay": "5s", "mode": "sideways"}}}', 400, "mode"),
        (b'{"options": {"debounce": {"key": "k", "delay": "5s"}, "delay": "1m"}}', 422, "not both"),
        (b'{"options": {"idempotencyKeyTTL": "forever", "idempotencyKey": "k"}}', 400, "idempotencyKeyTTL"),
        (b'{"options": {"idempotencyKey": ""}}', 422, "idempotencyKey must be 1-2048"),
        (b'{"options": {"idempotencyKey": "slipstream:mine"}}', 422, "reserved"),
        (b'{"payload": "\\u0000"}', 422, "cannot be stored"),
    ],
)
async def test_bad_trigger_bodies(http: aiohttp.ClientSession, body: bytes, status: int, fragment: str) -> None:
    async with http.post("/api/v1/tasks/echo/trigger", data=body) as response:
        assert response.status == status
        answer = await response.json()
    assert fragment in answer["error"]


async def test_auth_is_required(platform: Platform) -> None:
    async with aiohttp.ClientSession(base_url=platform.api_url) as anonymous:
        for headers in ({}, {"Authorization": "Bearer sk_dev_nope"}, {"Authorization": "Basic abc"}):
            async with anonymous.post("/api/v1/tasks/echo/trigger", json={}, headers=headers) as response:
                assert response.status == 401
                assert await response.json() == {"error": "Invalid or Missing API key"}


async def test_body_over_the_limit_is_413(http: aiohttp.ClientSession) -> None:
    body = b'{"payload": "' + b"x" * (17 * 1024 * 1024) + b'"}'
    async with http.post("/api/v1/tasks/echo/trigger", data=body) as response:
        assert response.status == 413
        assert "too large" in (await response.json())["error"]


async def test_unknown_run_method_and_path(http: aiohttp.ClientSession) -> None:
    async with http.get("/api/v3/runs/run_nope") as response:
        assert response.status == 404 and await response.json() == {"error": "Run not found"}
    async with http.get("/api/v1/tasks/echo/trigger") as response:
        assert response.status == 405 and response.headers["Allow"] == "POST"
        assert "not allowed" in (await response.json())["error"]
    async with http.get("/api/v9/nothing") as response:
        assert response.status == 404 and "error" in await response.json()
    async with http.post("/api/v1/tasks/bad%20id/trigger", json={}) as response:
        assert response.status == 400 and "task id" in (await response.json())["error"]


async def test_openapi_document_is_served(http: aiohttp.ClientSession) -> None:
    async with http.get("/openapi.json") as response:
        assert response.status == 200
        document = await response.json()
    assert "/api/v1/tasks/{taskId}/trigger" in document["paths"]
    assert "Run" in document["components"]["schemas"]


async def test_realtime_refuses_bad_keys_and_unknown_runs(platform: Platform) -> None:
    url = f"{platform.realtime_url}/realtime/v1/runs/run_nope"
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, headers={"Authorization": "Bearer wrong"}) as ws:
            message = await ws.receive_json()
            assert message == {"type": "error", "error": "Invalid or Missing API key", "status": 401}
            await ws.receive()
            assert ws.close_code == 4401
        async with session.ws_connect(url, headers=platform.headers()) as ws:
            message = await ws.receive_json()
            assert message["type"] == "error" and message["status"] == 404
            await ws.receive()
            assert ws.close_code == 4404
        # A secret key in a URL ends up in logs and histories: refused, even a good one.
        async with session.ws_connect(f"{url}?token={platform.key}") as ws:
            message = await ws.receive_json()
            assert message["status"] == 401 and "not accepted in URLs" in message["error"]


async def test_a_nul_in_a_task_identifier_is_a_422_not_a_500(http: aiohttp.ClientSession) -> None:
    async with http.post("/api/v1/idempotencyKeys/k/reset", json={"taskIdentifier": "a\u0000b"}) as response:
        assert response.status == 422
        assert "is not a task id" in (await response.json())["error"]


async def test_patching_the_environment_needs_a_body(http: aiohttp.ClientSession) -> None:
    async with http.patch("/api/v1/environment") as response:
        assert response.status == 400
        assert "a JSON body is required" in (await response.json())["error"]


async def test_the_document_states_the_limits_the_server_checks(http: aiohttp.ClientSession) -> None:
    async with http.get("/openapi.json") as response:
        document = await response.json()
    schemas = document["components"]["schemas"]
    listing = document["paths"]["/api/v1/schedules"]["get"]["parameters"]
    assert {p["name"]: p["schema"].get("maximum") for p in listing}["perPage"] == 100
    trigger = document["paths"]["/api/v1/tasks/{taskId}/trigger"]["post"]["parameters"][0]["schema"]
    assert trigger["pattern"].startswith("^[A-Za-z0-9]")
    assert schemas["CreateScheduleRequest"]["properties"]["deduplicationKey"]["minLength"] == 1
    assert schemas["EnvironmentLimitsUpdate"]["properties"]["concurrencyLimit"]["anyOf"][0]["minimum"] == 1
    assert "pattern" in schemas["DebounceOption"]["properties"]["delay"]


async def test_headers_over_the_limit_are_refused_before_the_api(platform: Platform) -> None:
    async with aiohttp.ClientSession(base_url=platform.api_url) as client, \
            client.get("/api/v3/runs/run_nope", headers={**platform.headers(), "X-Big": "y" * 9000}) as response:
        assert response.status in (400, 431)
        assert "8190" in await response.text()  # the limit, as aiohttp's parser states it


async def test_a_websocket_message_over_the_limit_closes_the_subscription(
    platform: Platform, http: aiohttp.ClientSession
) -> None:
    async with http.post("/api/v1/tasks/echo/trigger", json={"payload": 1, "options": {"delay": "1h"}}) as response:
        run_id = (await response.json())["id"]
    async with aiohttp.ClientSession() as client, client.ws_connect(
        f"{platform.realtime_url}/realtime/v1/runs/{run_id}", headers=platform.headers()
    ) as ws:
        first = await asyncio.wait_for(ws.receive_json(), timeout=10)
        assert first["type"] == "run" and first["run"]["id"] == run_id
        await ws.send_str("z" * 5000)  # SLIPSTREAM_WS_MAX_MESSAGE_BYTES is 4096
        while not ws.closed:
            await asyncio.wait_for(ws.receive(), timeout=10)
        assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
