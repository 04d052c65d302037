"""Large payloads and outputs ("packets"), kept outside the run row (ADR 0012).

A payload or output whose JSON is over 512 KB is stored as an object in the JetStream Object
Store of the platform's NATS (bucket `slipstream-packets`); the run row keeps the object's
name (`payload_packet`, `output_packet`) and SQL NULL in `payload` / `output`. An object is
written before the row that names it, so a row never names a missing object; an object whose
row was never written (the insert failed, or a cached trigger) is deleted at once.

Readers outside the platform get a presigned URL instead of the value: trigger-api serves
`GET /api/v1/packets/{name}?expires=&signature=`, signed with the environment's secret key.

With SLIPSTREAM_PACKET_STORE=s3 the objects go to an S3-compatible bucket instead (aiobotocore;
endpoint, bucket, region and keys from SLIPSTREAM_S3_*); names, order and URLs are the same.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import quote

from nats.js import JetStreamContext, api
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.object_store import ObjectStore

from slipstream_platform.errors import SettingsError
from slipstream_platform.ids import new_id
from slipstream_platform.settings import CommonSettings

BUCKET = "slipstream-packets"
STREAM = f"OBJ_{BUCKET}"  # the stream behind the bucket
INLINE_BYTES = 512 * 1024  # up to this much JSON stays in the row
PAYLOAD_LIMIT = 10 * 1024 * 1024
OUTPUT_LIMIT = 100 * 1024 * 1024
# Objects go in chunks of this size (nats-py's default is 128 KB: one acknowledged publish each).
CHUNK_BYTES = 512 * 1024
URL_SECONDS = 3600


def json_bytes(text: str) -> int:
    """The UTF-8 size of JSON text (`isascii` is a flag CPython keeps: no scan)."""
    return len(text) if text.isascii() else len(text.encode())


def too_large(text: str | None) -> bool:
    """Whether JSON text goes to the store rather than the row."""
    return text is not None and len(text) > INLINE_BYTES // 4 and json_bytes(text) > INLINE_BYTES


def describe(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MB ({limit} bytes)"


class StoreUnavailable(Exception):
    """The payload store could not be written or read."""


class PacketNotFound(Exception):
    """No object of that name."""


async def ensure_bucket(js: JetStreamContext, replicas: int = 1) -> None:
    """Create the Object Store bucket (file storage, `replicas` copies) if it is missing."""
    try:
        await js.object_store(BUCKET)
    except (BucketNotFoundError, NotFoundError):
        await js.create_object_store(BUCKET, config=api.ObjectStoreConfig(
            description="payloads and outputs over 512 KB (ADR 0012)", storage=api.StorageType.FILE,
            replicas=replicas))


class PacketStore:
    """Where the platform's packets live; `put` and `get` retry a failing store 3 times."""

    async def put(self, environment_id: str, kind: str, text: str, *, attempts: int = 3) -> str:
        """Store JSON text; the object's name (`<environment>/<packet id>/<kind>`)."""
        name = f"{environment_id}/{new_id('packet')}/{kind}"
        data = text.encode()
        await _retrying(lambda: self._write(name, data), attempts,
                        f"the payload store did not take {len(data)} bytes")
        return name

    async def get(self, name: str, *, attempts: int = 3) -> bytes:
        """An object's bytes; PacketNotFound if there is none."""
        return await _retrying(lambda: self._read(name), attempts, f"the payload store could not read {name}")

    async def delete(self, name: str) -> None:
        """Forget an object nobody names (best effort)."""
        with contextlib.suppress(Exception):
            await self._delete(name)

    async def prepare(self) -> None:
        """Make sure the store can be used (at start-up)."""

    async def close(self) -> None:
        """Let go of connections (the process is stopping)."""

    async def _write(self, name: str, data: bytes) -> None:
        raise NotImplementedError

    async def _read(self, name: str) -> bytes:
        raise NotImplementedError

    async def _delete(self, name: str) -> None:
        raise NotImplementedError


class NatsPackets(PacketStore):
    """Packets in the JetStream Object Store of the platform's NATS (the default)."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self._bucket: ObjectStore | None = None

    async def bucket(self) -> ObjectStore:
        if self._bucket is None:
            self._bucket = await self.js.object_store(BUCKET)
        return self._bucket

    async def _write(self, name: str, data: bytes) -> None:
        meta = api.ObjectMeta(name=name, options=api.ObjectMetaOptions(max_chunk_size=CHUNK_BYTES))
        await (await self.bucket()).put(name, data, meta=meta)

    async def _read(self, name: str) -> bytes:
        # One direct get per chunk: nats-py's `get` reads them through an ordered consumer
        # (520 ms for 9 MB here, against 26 ms). Checked against the object's digest.
        try:
            info = await (await self.bucket()).get_info(name)
        except NotFoundError:
            raise PacketNotFound(name) from None
        subject = f"$O.{BUCKET}.C.{info.nuid}"
        chunks: list[bytes] = []
        seq = 0
        for _ in range(info.chunks or 0):
            msg = await self.js.get_msg(STREAM, seq=seq + 1, subject=subject, next=True, direct=True)
            chunks.append(msg.data or b"")
            seq = msg.seq or seq + 1
        data = b"".join(chunks)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode()
        if len(data) != (info.size or 0) or (info.digest or "").split("=", 1)[-1] != digest:
            raise ValueError(f"object {name} does not match its digest")
        return data

    async def _delete(self, name: str) -> None:
        await (await self.bucket()).delete(name)


class S3Packets(PacketStore):
    """Packets in an S3-compatible bucket (aiobotocore), for SLIPSTREAM_PACKET_STORE=s3."""

    def __init__(self, settings: CommonSettings) -> None:
        self.settings = settings
        self.bucket = settings.s3_bucket
        self.prefix = settings.s3_prefix
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._opening = asyncio.Lock()

    async def client(self) -> Any:
        async with self._opening:
            if self._client is None:
                from aiobotocore.config import AioConfig
                from aiobotocore.session import get_session

                s = self.settings
                # Our own 3 tries wrap each call: botocore's retries stay few.
                config = AioConfig(connect_timeout=5, read_timeout=60, retries={"max_attempts": 2, "mode": "standard"})
                self._client = await self._stack.enter_async_context(get_session().create_client(
                    "s3", endpoint_url=s.s3_endpoint_url or None, region_name=s.s3_region,
                    aws_access_key_id=s.s3_access_key_id or None,
                    aws_secret_access_key=s.s3_secret_access_key or None, config=config))
        return self._client

    async def prepare(self) -> None:
        """Create the bucket if it is missing (keys that may not create it need it made already)."""
        client = await self.client()
        try:
            await client.head_bucket(Bucket=self.bucket)
        except client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                raise
            await client.create_bucket(Bucket=self.bucket)

    async def _write(self, name: str, data: bytes) -> None:
        await (await self.client()).put_object(Bucket=self.bucket, Key=self.prefix + name, Body=data,
                                               ContentType="application/json")

    async def _read(self, name: str) -> bytes:
        client = await self.client()
        try:
            answer = await client.get_object(Bucket=self.bucket, Key=self.prefix + name)
        except client.exceptions.NoSuchKey:
            raise PacketNotFound(name) from None
        async with answer["Body"] as body:
            data: bytes = await body.read()
        return data

    async def _delete(self, name: str) -> None:
        await (await self.client()).delete_object(Bucket=self.bucket, Key=self.prefix + name)

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None


def open_store(settings: CommonSettings, js: JetStreamContext) -> PacketStore:
    """The store the settings name (SLIPSTREAM_PACKET_STORE)."""
    if settings.packet_store == "s3":
        try:
            import aiobotocore  # noqa: F401
        except ImportError:
            raise SettingsError("SLIPSTREAM_PACKET_STORE=s3 needs aiobotocore: pip install 'slipstream[s3]'") \
                from None
        return S3Packets(settings)
    return NatsPackets(js)


T = TypeVar("T")


async def _retrying(call: Callable[[], Awaitable[T]], attempts: int, failure: str) -> T:
    """`call()`, tried `attempts` times with a short back-off; StoreUnavailable naming `failure`
    after the last (PacketNotFound is an answer, not a failure: raised at once)."""
    for attempt in range(attempts):
        try:
            return await call()
        except PacketNotFound:
            raise
        except Exception as exc:
            if attempt == attempts - 1:
                raise StoreUnavailable(f"{failure}: {exc!r}") from exc
            await asyncio.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def environment_of(name: str) -> str:
    return name.split("/", 1)[0]


def signature(secret_key: str, name: str, expires: int) -> str:
    return hmac.new(secret_key.encode(), f"{name}\n{expires}".encode(), hashlib.sha256).hexdigest()


def presigned_url(base_url: str, secret_key: str, name: str, *, now: float | None = None,
                  seconds: int = URL_SECONDS) -> str:
    """A URL that reads the object until it expires, with no key."""
    expires = int((now if now is not None else time.time()) + seconds)
    return (f"{base_url.rstrip('/')}/api/v1/packets/{quote(name, safe='/')}"
            f"?expires={expires}&signature={signature(secret_key, name, expires)}")


def check_signature(secret_key: str, name: str, expires: str, given: str, *, now: float | None = None) -> str | None:
    """None when the URL is good; else what is wrong with it."""
    try:
        at = int(expires)
    except ValueError:
        return "the URL's expires is not a number"
    if not hmac.compare_digest(signature(secret_key, name, at), given):
        return "the URL's signature does not match"
    if at < (now if now is not None else time.time()):
        return "the URL has expired"
    return None
