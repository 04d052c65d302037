"""Supervisor <-> worker frames: a 4-byte length and a msgpack body, over a socket pair."""

from __future__ import annotations

import asyncio
import socket
import struct
import typing
from collections.abc import Iterator

import pytest
from slipstream_core import ipc
from slipstream_core.definitions import QueueDefinition, TaskDefinition

SAMPLES: list[ipc.Message] = [
    ipc.Ready(pid=4242, tasks=[TaskDefinition(id="hello-world", queue=QueueDefinition(name="task/hello-world"))],
              queues=[QueueDefinition(name="paid", concurrency_limit=2, rate_limit=10, rate_period=60.0)]),
    ipc.LoadFailed(error="ModuleNotFoundError: No module named 'examples'"),
    ipc.Execute(
        run_id="run_1",
        task_id="hello-world",
        payload_json='{"name": "Ada"}',
        attempt_id="att_1",
        attempt_number=1,
        max_attempts=3,
        created_at="2024-05-01T12:00:00+00:00",
        tags=["user:1"],
        environment_id="env_1",
        environment_type="DEVELOPMENT",
    ),
    ipc.LogLine(
        run_id="run_1", attempt_number=1, level="info", message="hello", attributes={"n": 1}, timestamp=1714564800.5
    ),
    ipc.Spans(spans=[ipc.SpanRecord(
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736", span_id="00f067aa0ba902b7", parent_span_id=None, run_id="run_1",
        name="run echo", service="worker", start_ns=1714564800500000000, end_ns=1714564800600000000, status="OK",
        attributes={"attempt": 1}, events=[],
    )]),
    ipc.Cancel(run_id="run_1"),
    ipc.Outcome(run_id="run_1", attempt_number=1, ok=False, error_json='{"message": "boom"}', retry_delay_ms=1500),
]


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket.socketpair()
    with left, right:
        yield left, right


def test_samples_cover_every_message_type() -> None:
    assert {type(m) for m in SAMPLES} == set(typing.get_args(ipc.Message))


async def read_all(receiver: socket.socket, n: int) -> list[ipc.Message | None]:
    """Read n messages as a process does: on its event loop, from its end of the pair."""
    reader, writer = await asyncio.open_connection(sock=receiver)
    try:
        return [await ipc.read(reader) for _ in range(n)]
    finally:
        writer.close()


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
async def test_frame_round_trips_over_a_socket(message: ipc.Message, pair: tuple[socket.socket, socket.socket]) -> None:
    sender, receiver = pair
    sender.sendall(ipc.frame(message))
    [received] = await read_all(receiver, 1)
    assert type(received) is type(message)
    assert received == message


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_frame_is_a_big_endian_length_and_the_body(message: ipc.Message) -> None:
    data = ipc.frame(message)
    (length,) = struct.unpack(">I", data[:4])
    assert length == len(data) - 4 > 0


async def test_frames_sent_back_to_back_are_read_one_at_a_time(pair: tuple[socket.socket, socket.socket]) -> None:
    sender, receiver = pair
    sender.sendall(b"".join(ipc.frame(m) for m in SAMPLES))
    assert await read_all(receiver, len(SAMPLES)) == SAMPLES


async def test_read_returns_none_after_the_peer_closes(pair: tuple[socket.socket, socket.socket]) -> None:
    sender, receiver = pair
    sender.sendall(ipc.frame(SAMPLES[0]))
    sender.close()
    assert await read_all(receiver, 2) == [SAMPLES[0], None]


@pytest.mark.parametrize("cut", [2, 10], ids=["in-header", "in-body"])
async def test_read_returns_none_for_a_frame_cut_short(cut: int, pair: tuple[socket.socket, socket.socket]) -> None:
    sender, receiver = pair
    sender.sendall(ipc.frame(SAMPLES[2])[:cut])
    sender.close()
    assert await read_all(receiver, 1) == [None]


async def test_async_read_round_trips_and_returns_none_at_eof() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"".join(ipc.frame(m) for m in SAMPLES) + ipc.frame(SAMPLES[0])[:3])
    reader.feed_eof()
    assert [await ipc.read(reader) for _ in SAMPLES] == SAMPLES
    assert await ipc.read(reader) is None
