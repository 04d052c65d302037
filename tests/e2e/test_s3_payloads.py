"""SLIPSTREAM_PACKET_STORE=s3: large payloads and outputs in an S3-compatible bucket (moto's server)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import aiohttp
import msgspec
import pytest
import slipstream
from aiobotocore.session import get_session
from slipstream import runs, tasks
from slipstream_platform.local import LocalPlatform

from tests.conftest import eventually
from tests.e2e.conftest import FAST_SWEEPS

pytestmark = pytest.mark.e2e
BUCKET = "slipstream-e2e-packets"


@pytest.fixture(scope="module")
def on_s3(tmp_path_factory: pytest.TempPathFactory, s3_server: str) -> Iterator[LocalPlatform]:
    folder = tmp_path_factory.mktemp("s3-platform")
    folder.chmod(0o755)
    env = {**FAST_SWEEPS, "SLIPSTREAM_PACKET_STORE": "s3", "SLIPSTREAM_S3_ENDPOINT_URL": s3_server,
           "SLIPSTREAM_S3_BUCKET": BUCKET, "SLIPSTREAM_S3_ACCESS_KEY_ID": "test",
           "SLIPSTREAM_S3_SECRET_ACCESS_KEY": "test"}
    local = LocalPlatform(folder, fast_unsafe=True, service_env=env)
    try:
        local.start_servers()
        key = local.bootstrap("s3")["DEVELOPMENT"]
        local.start_services("tests.e2e.tasks", key, concurrency=2)
        slipstream.configure(api_url=local.api_url, secret_key=key, realtime_url=local.realtime_url)
        yield local
    finally:
        import slipstream._config as config

        config._override = None
        local.stop()


async def test_a_large_payload_and_output_go_to_the_bucket(on_s3: LocalPlatform, s3_server: str) -> None:
    blob = "s" * (700 * 1024)
    handle = await tasks.trigger("big-echo", {"blob": blob, "out": 600 * 1024})

    async def probe() -> slipstream.Run | None:
        run = await runs.retrieve(handle.id)
        return run if run.is_completed else None

    run = await eventually(probe, timeout=60, message="the run did not finish")
    assert run.status == "COMPLETED" and run.payload is None and run.output is None
    assert run.output_presigned_url and run.output_presigned_url.startswith(on_s3.api_url)
    async with aiohttp.ClientSession() as http, http.get(run.output_presigned_url) as r:
        output = msgspec.json.decode(await r.read())
    assert output["digest"] == hashlib.sha256(blob.encode()).hexdigest() and len(output["out"]) == 600 * 1024
    async with get_session().create_client("s3", endpoint_url=s3_server, region_name="us-east-1",
                                           aws_access_key_id="test", aws_secret_access_key="test") as s3:
        keys = [o["Key"] for o in (await s3.list_objects_v2(Bucket=BUCKET))["Contents"]]
    env_id = keys[0].split("/", 1)[0]
    assert sorted(k.rsplit("/", 1)[1] for k in keys) == ["output", "payload"] and env_id.startswith("env_")
