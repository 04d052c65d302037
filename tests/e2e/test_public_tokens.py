"""Public access tokens: what a browser holds instead of the secret key (ADR 0011)."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import jwt
import pytest
import slipstream
from slipstream import auth, batch, runs
from slipstream.errors import AuthenticationError, PermissionDeniedError, TokenScopeError, UnprocessableEntityError
from slipstream_platform.store.environments import key_hash

from tests.e2e.conftest import Platform
from tests.e2e.tasks.sample import echo

pytestmark = pytest.mark.e2e


async def call(platform: Platform, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession(base_url=platform.api_url) as session:
        async with session.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"}) as r:
            return r.status, await r.json()


async def watch(platform: Platform, path: str, token: str) -> list[dict[str, Any]]:
    """What a browser's WebSocket sees with `?token=` until the socket closes (or 30 s)."""
    messages = []
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{platform.realtime_url}{path}token={token}") as ws:
            async for message in ws:
                messages.append(message.json())
                if messages[-1].get("type") == "error" or messages[-1]["run"]["isCompleted"]:
                    break
    return messages


async def test_a_trigger_answers_with_a_token_that_reads_only_its_run(platform: Platform, sdk: None) -> None:
    handle = await echo.trigger({"n": 1})
    other = await echo.trigger({"n": 2})
    token = handle.public_access_token
    assert token and token != other.public_access_token
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["scopes"] == [f"read:runs:{handle.id}"] and claims["pub"] is True
    assert 3500 < claims["exp"] - time.time() <= 3600

    seen = await watch(platform, f"/realtime/v1/runs/{handle.id}?", token)
    assert seen[-1]["run"]["status"] == "COMPLETED" and seen[-1]["run"]["output"]["payload"] == {"n": 1}
    status, body = await call(platform, "GET", f"/api/v3/runs/{handle.id}", token)
    assert status == 200 and body["id"] == handle.id

    # Outside its scope: 403 naming the scope, for runs that exist and runs that do not alike.
    for run_id in (other.id, "run_doesnotexist"):
        status, body = await call(platform, "GET", f"/api/v3/runs/{run_id}", token)
        assert status == 403 and body == {"error": f"this public access token's scopes do not include "
                                                   f"read:runs:{run_id}"}
        denied = await watch(platform, f"/realtime/v1/runs/{run_id}?", token)
        assert denied == [{"type": "error", "status": 403, "error": body["error"]}]
    # It neither triggers nor reaches the secret key's endpoints.
    status, body = await call(platform, "POST", "/api/v1/tasks/echo/trigger", token, {"payload": {}})
    assert status == 403 and "trigger:tasks:echo" in body["error"]
    for method, path in (("GET", "/api/v1/runs"), ("POST", f"/api/v2/runs/{handle.id}/cancel"),
                         ("POST", "/api/v1/auth/tokens")):
        status, body = await call(platform, method, path, token, {"scopes": ["read:all"]})
        assert status == 403 and "needs the secret key" in body["error"], (method, path)


async def test_the_sdk_reads_with_a_public_token(platform: Platform, sdk: None) -> None:
    handle = await echo.trigger({"n": 3})
    slipstream.configure(api_url=platform.api_url, realtime_url=platform.realtime_url,
                         access_token=handle.public_access_token)
    last = [run async for run in runs.subscribe_to_run(handle.id)][-1]
    assert last.status == "COMPLETED"
    assert (await runs.retrieve(handle.id)).id == handle.id
    with pytest.raises(PermissionDeniedError, match="trigger:tasks:echo"):
        await echo.trigger({})


async def test_tokens_by_tag_task_and_batch(platform: Platform, sdk: None) -> None:
    tag = f"tenant-{time.time_ns()}"
    tagged = await echo.trigger({"n": 4}, tags=[tag])
    plain = await echo.trigger({"n": 5})
    by_tag = await auth.create_public_token(scopes={"read": {"tags": [tag]}}, expiration_time="1h")
    assert (await call(platform, "GET", f"/api/v3/runs/{tagged.id}", by_tag))[0] == 200
    assert (await call(platform, "GET", f"/api/v3/runs/{plain.id}", by_tag))[0] == 403
    seen = await watch(platform, f"/realtime/v1/runs?tags={tag}&", by_tag)
    assert seen[0]["run"]["id"] == tagged.id
    other_tag = await watch(platform, "/realtime/v1/runs?tags=someone-else&", by_tag)
    assert other_tag[0]["status"] == 403 and "read:tags:someone-else" in other_tag[0]["error"]
    everything = await watch(platform, "/realtime/v1/runs?", by_tag)  # the environment's feed
    assert everything[0]["status"] == 403 and "read:runs" in everything[0]["error"]

    by_task = await auth.create_public_token(scopes={"read": {"tasks": ["echo"]}})
    assert (await call(platform, "GET", f"/api/v3/runs/{plain.id}", by_task))[0] == 200

    handle = await echo.batch_trigger([{"payload": {"i": 1}}, {"payload": {"i": 2}}])
    assert handle.public_access_token
    assert (await call(platform, "GET", f"/api/v3/runs/{handle.runs[0].id}", handle.public_access_token))[0] == 200
    seen = await watch(platform, f"/realtime/v1/batches/{handle.batch_id}?", handle.public_access_token)
    assert seen and seen[0]["run"]["batchId"] == handle.batch_id
    assert (await batch.retrieve(handle.batch_id)).id == handle.batch_id  # the secret key still reads it


async def test_a_trigger_token_triggers_once_unless_multiple_use(platform: Platform, sdk: None) -> None:
    once = await auth.create_trigger_token("echo")
    status, body = await call(platform, "POST", "/api/v1/tasks/echo/trigger", once, {"payload": {"from": "page"}})
    assert status == 200 and body["id"].startswith("run_")
    status, spent = await call(platform, "POST", "/api/v1/tasks/echo/trigger", once, {"payload": {}})
    assert status == 401 and "has been used" in spent["error"]
    # A trigger the server refuses does not spend the token.
    another = await auth.create_trigger_token("echo")
    status, _ = await call(platform, "POST", "/api/v1/tasks/echo/trigger", another,
                           {"payload": {}, "options": {"delay": "soon"}})
    assert status == 400
    assert (await call(platform, "POST", "/api/v1/tasks/echo/trigger", another, {"payload": {}}))[0] == 200

    many = await auth.create_trigger_token(["echo", "echo-sync"], multiple_use=True)
    for task_id in ("echo", "echo", "echo-sync"):
        assert (await call(platform, "POST", f"/api/v1/tasks/{task_id}/trigger", many, {"payload": {}}))[0] == 200
    status, body = await call(platform, "POST", "/api/v1/tasks/flaky/trigger", many, {"payload": {}})
    assert status == 403 and body["error"].endswith("trigger:tasks:flaky")
    status, body = await call(platform, "POST", "/api/v1/tasks/echo/batch", many, {"items": [{"payload": {}}]})
    assert status == 202 and len(body["runs"]) == 1
    # The run made with a trigger token answers with a read token for it, like any trigger.
    async with aiohttp.ClientSession(base_url=platform.api_url) as session:
        async with session.post("/api/v1/tasks/echo/trigger", json={"payload": {}},
                                headers={"Authorization": f"Bearer {many}"}) as r:
            run_id = (await r.json())["id"]
            read = r.headers["x-slipstream-jwt"]
    assert (await call(platform, "GET", f"/api/v3/runs/{run_id}", read))[0] == 200


async def test_expired_forged_and_malformed_tokens_are_refused(platform: Platform, sdk: None) -> None:
    handle = await echo.trigger({})
    env_id = jwt.decode(handle.public_access_token or "", options={"verify_signature": False})["sub"]
    claims = {"sub": env_id, "pub": True, "scopes": ["read:all"]}
    # The platform signs with the hash of the key behind the request (ADR 0017).
    expired = jwt.encode({**claims, "exp": int(time.time()) - 5}, key_hash(platform.key), algorithm="HS256")
    status, body = await call(platform, "GET", f"/api/v3/runs/{handle.id}", expired)
    assert status == 401 and body == {"error": "the public access token has expired"}
    fresh = {**claims, "exp": int(time.time()) + 60}
    for forged in (jwt.encode(fresh, key_hash(platform.keys["PRODUCTION"]), algorithm="HS256"),  # another env's
                   jwt.encode(fresh, platform.key, algorithm="HS256"),  # the key itself, as before migration 0033
                   jwt.encode(fresh, "sk_dev_" + "0" * 32, algorithm="HS256"),
                   jwt.encode(fresh, None, algorithm="none"),  # type: ignore[arg-type]
                   "a.b.c"):
        status, body = await call(platform, "GET", f"/api/v3/runs/{handle.id}", forged)
        assert status == 401 and "invalid public access token" in body["error"], forged
    good = jwt.encode(fresh, key_hash(platform.key), algorithm="HS256")
    assert (await call(platform, "GET", f"/api/v3/runs/{handle.id}", good))[0] == 200
    expired_ws = await watch(platform, f"/realtime/v1/runs/{handle.id}?", expired)
    assert expired_ws == [{"type": "error", "status": 401, "error": "the public access token has expired"}]


async def test_bad_scopes_and_expiries_get_clear_errors(platform: Platform, sdk: None) -> None:
    with pytest.raises(TokenScopeError, match="no kind 'run'"):
        await auth.create_public_token(scopes={"read": {"run": ["x"]}})
    with pytest.raises(UnprocessableEntityError, match="scope 'read:everything'"):
        await auth.create_public_token(scopes=["read:everything"])
    with pytest.raises(UnprocessableEntityError, match="at least one scope"):
        await auth.create_public_token(scopes=[])
    with pytest.raises(UnprocessableEntityError, match="not a duration|neither a duration"):
        await auth.create_public_token(scopes={"read": True}, expiration_time="soon")
    with pytest.raises(UnprocessableEntityError, match="in the future"):
        await auth.create_public_token(scopes={"read": True}, expiration_time="2020-01-01T00:00:00Z")
    token = await auth.create_public_token(scopes={"read": True}, expiration_time=90)
    assert jwt.decode(token, options={"verify_signature": False})["scopes"] == ["read:all"]
    slipstream.configure(api_url=platform.api_url, secret_key="sk_dev_wrong")
    with pytest.raises(AuthenticationError):
        await auth.create_public_token(scopes={"read": True})


async def test_a_browser_page_on_another_origin_may_read_the_token_header(platform: Platform) -> None:
    async with aiohttp.ClientSession(base_url=platform.api_url) as session:
        async with session.options("/api/v1/tasks/echo/trigger", headers={
                "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type"}) as r:
            assert r.status == 204 and "Authorization" in r.headers["Access-Control-Allow-Headers"]
        async with session.post("/api/v1/tasks/echo/trigger", json={"payload": {}}, headers={
                "Origin": "https://app.example", **platform.headers()}) as r:
            assert r.status == 200
            assert "X-Slipstream-Jwt" in r.headers["Access-Control-Expose-Headers"]
            assert r.headers["x-slipstream-jwt"].count(".") == 2
