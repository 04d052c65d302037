"""The payload store on a real nats-server: objects round-trip, failures create nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from slipstream_platform import bus, packets
from slipstream_platform.embedded import EmbeddedNats
from slipstream_platform.settings import CommonSettings
from slipstream_platform.triggering import TriggerRejected, offload, plan_run
from slipstream_proto import TriggerOptions


def test_sizes_and_signatures() -> None:
    assert not packets.too_large("x" * packets.INLINE_BYTES)
    assert packets.too_large("x" * (packets.INLINE_BYTES + 1))
    assert packets.too_large("é" * (packets.INLINE_BYTES // 2 + 1))  # two bytes each
    assert packets.json_bytes("é") == 2
    url = packets.presigned_url("http://api", "sk_1", "env_1/packet_1/payload", now=1000)
    query = dict(part.split("=") for part in url.split("?", 1)[1].split("&"))
    assert url.startswith("http://api/api/v1/packets/env_1/packet_1/payload?expires=4600&")
    assert packets.check_signature("sk_1", "env_1/packet_1/payload", query["expires"], query["signature"],
                                   now=1000) is None
    assert "expired" in (packets.check_signature("sk_1", "env_1/packet_1/payload", query["expires"],
                                                 query["signature"], now=5000) or "")
    assert "does not match" in (packets.check_signature("sk_2", "env_1/packet_1/payload", query["expires"],
                                                        query["signature"], now=1000) or "")


async def test_objects_round_trip_and_a_failed_upload_creates_nothing(nats_server: EmbeddedNats) -> None:
    nc = await bus.connect(nats_server.url, "test-packets")
    try:
        await bus.ensure_streams(nc.jetstream())
        await bus.ensure_streams(nc.jetstream())  # idempotent
        store = packets.NatsPackets(nc.jetstream())
        text = '"' + "q" * (3 * 1024 * 1024) + '"'
        name = await store.put("env_1", "payload", text)
        assert name.startswith("env_1/packet_") and name.endswith("/payload")
        assert (await store.get(name)).decode() == text
        plan = plan_run("t", "w" * (packets.INLINE_BYTES + 10), TriggerOptions(), environment_type="DEVELOPMENT",
                        now=datetime.now(UTC))
        small = plan_run("t", "small", TriggerOptions(), environment_type="DEVELOPMENT", now=datetime.now(UTC))
        stored, kept = await offload(store, [plan, small], "env_1")
        assert stored.payload_json is None and stored.payload_packet and kept is small
        assert (await store.get(stored.payload_packet)).decode() == plan.payload_json
        await store.delete(name)
        with pytest.raises(packets.PacketNotFound):
            await store.get(name)
    finally:
        await nc.close()
    # The connection is gone: the upload fails, and the trigger is refused with nothing stored.
    with pytest.raises(TriggerRejected) as refused:
        await offload(store, [plan], "env_1")
    assert refused.value.status == 503 and "no run was created" in refused.value.message


def test_a_payload_over_10_mb_is_refused_naming_the_limit() -> None:
    with pytest.raises(TriggerRejected) as refused:
        plan_run("t", "b" * (10 * 1024 * 1024), TriggerOptions(), environment_type="DEVELOPMENT",
                 now=datetime.now(UTC))
    assert refused.value.status == 413 and "10 MB (10485760 bytes)" in refused.value.message


async def test_the_s3_store_round_trips_and_names_missing_objects(s3_server: str) -> None:
    settings = CommonSettings(packet_store="s3", s3_endpoint_url=s3_server, s3_bucket="slipstream-store-test",
                              s3_access_key_id="test", s3_secret_access_key="test", s3_prefix="pre/")
    store = packets.open_store(settings, None)  # type: ignore[arg-type]  # (S3 needs no NATS)
    assert isinstance(store, packets.S3Packets)
    try:
        await store.prepare()
        await store.prepare()  # the bucket exists now
        text = '"' + "é" * (2 * 1024 * 1024) + '"'
        name = await store.put("env_1", "output", text)
        assert (await store.get(name)).decode() == text
        client = await store.client()
        listed = await client.list_objects_v2(Bucket="slipstream-store-test")
        assert [o["Key"] for o in listed["Contents"]] == ["pre/" + name]
        await store.delete(name)
        with pytest.raises(packets.PacketNotFound):
            await store.get(name)
    finally:
        await store.close()
    unreachable = packets.open_store(CommonSettings(packet_store="s3", s3_endpoint_url="http://127.0.0.1:9",
                                                    s3_access_key_id="a", s3_secret_access_key="b"), None)  # type: ignore[arg-type]
    try:
        with pytest.raises(packets.StoreUnavailable):
            await unreachable.put("env_1", "payload", "{}", attempts=1)
    finally:
        await unreachable.close()
