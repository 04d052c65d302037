"""Payloads and outputs over 512 KB: kept in the JetStream Object Store, read back whole (ADR 0012)."""

from __future__ import annotations

import hashlib
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import msgspec
import nats
import pytest
from slipstream import runs, tasks
from slipstream.errors import PayloadTooLargeError
from slipstream_platform import packets
from slipstream_platform.store.environments import key_hash

from tests.conftest import eventually
from tests.e2e.conftest import Platform

pytestmark = pytest.mark.e2e


async def finished(run_id: str, timeout: float = 60) -> Any:
    async def probe() -> Any:
        run = await runs.retrieve(run_id)
        return run if run.is_completed else None

    return await eventually(probe, timeout=timeout, message=f"run {run_id} did not finish")


async def fetch(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.get(url) as r:  # no key: the URL is the credential
        return r.status, await r.read()


async def objects(platform: Platform) -> int:
    nc = await nats.connect(platform.local.nats.url)
    try:
        store = await nc.jetstream().object_store(packets.BUCKET)
        try:
            return len(await store.list(ignore_deletes=True))
        except Exception:  # an empty bucket has nothing to list
            return 0
    finally:
        await nc.close()


async def test_a_large_payload_reaches_the_task_and_is_linked_not_inlined(platform: Platform, sdk: None) -> None:
    blob = "é" * (600 * 1024)  # 1.2 MB of UTF-8
    handle = await tasks.trigger("big-echo", {"blob": blob, "out": 700 * 1024})
    run = await finished(handle.id)
    assert run.status == "COMPLETED"
    assert run.payload is None and run.output is None
    assert run.payload_presigned_url and run.output_presigned_url
    status, body = await fetch(run.payload_presigned_url)
    assert status == 200 and msgspec.json.decode(body) == {"blob": blob, "out": 700 * 1024}
    status, body = await fetch(run.output_presigned_url)
    output = msgspec.json.decode(body)
    assert status == 200 and output["digest"] == hashlib.sha256(blob.encode()).hexdigest()
    assert output["size"] == len(blob) and len(output["out"]) == 700 * 1024
    # Realtime links to it too.
    last = [r async for r in runs.subscribe_to_run(handle.id)][-1]
    assert last.output is None and last.output_presigned_url
    # A small payload stays inline.
    small = await finished((await tasks.trigger("big-echo", {"blob": "x"})).id)
    assert small.payload == {"blob": "x"} and small.payload_presigned_url is None and small.output["size"] == 1


async def test_presigned_urls_refuse_tampering_and_expiry(platform: Platform, sdk: None) -> None:
    handle = await tasks.trigger("big-echo", {"blob": "a" * (520 * 1024)})
    run = await finished(handle.id)
    url = run.payload_presigned_url
    assert url and run.output_presigned_url is None  # the output is small
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    base = f"{parts.scheme}://{parts.netloc}"
    name = parts.path.removeprefix("/api/v1/packets/")
    later = int(query["expires"][0]) + 10
    status, body = await fetch(f"{base}{parts.path}?expires={later}&signature={query['signature'][0]}")
    assert status == 403 and b"signature does not match" in body
    expired = packets.presigned_url(base, key_hash(platform.key), name, now=time.time() - 7200)
    status, body = await fetch(expired)
    assert status == 403 and b"expired" in body
    other_env = packets.presigned_url(base, key_hash(platform.keys["PRODUCTION"]), name)
    assert (await fetch(other_env))[0] == 403
    missing = packets.presigned_url(base, key_hash(platform.key), name.rsplit("/", 2)[0] + "/packet_nope/payload")
    assert (await fetch(missing))[0] == 404


async def test_children_get_large_payloads_and_parents_their_large_outputs(platform: Platform, sdk: None) -> None:
    run = await finished((await tasks.trigger("big-parent", {"size": 600 * 1024})).id, timeout=90)
    assert run.status == "COMPLETED", run.error
    expected = run.output["expected"]
    assert run.output["one"] == [expected, 600 * 1024]
    assert run.output["many"] == [[expected, 600 * 1024], [hashlib.sha256(b"small").hexdigest(), 0]]


async def test_limits_are_named_and_nothing_is_half_written(platform: Platform, sdk: None) -> None:
    before = await objects(platform)
    with pytest.raises(PayloadTooLargeError, match="the limit is 10 MB"):
        await tasks.trigger("big-echo", {"blob": "b" * (10 * 1024 * 1024 + 1)})
    # A cached trigger (its idempotency key made a run already) keeps no second copy.
    key = f"big-{time.time_ns()}"
    first = await tasks.trigger("big-echo", {"blob": "c" * (600 * 1024)}, idempotency_key=key)
    again = await tasks.trigger("big-echo", {"blob": "d" * (600 * 1024)}, idempotency_key=key)
    assert again.id == first.id and again.is_cached
    await finished(first.id)
    assert await objects(platform) == before + 1  # the first trigger's payload only

    run = await finished((await tasks.trigger("too-big-output", {})).id, timeout=90)
    assert run.status == "FAILED" and run.attempt_count == 1  # not retried
    assert run.error.name == "OutputTooLargeError" and "at most 100 MB" in run.error.message
