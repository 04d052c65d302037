"""The engine of `slipstream.sync`: the async SDK run on one event loop in a daemon thread.

Every sync call hands its coroutine to that loop and waits for the answer, so the sync
client has exactly the async client's behaviour (retries, request ids, typed errors) and one
pool of keep-alive connections per process, shared by all threads. The caller's context
variables go with the call (a sync task's triggers are children of its run). Calling from a
thread that runs an event loop of its own blocks that thread only: the work happens on the
bridge's loop, so there is no deadlock. A forked child starts its own loop on first use.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class _Bridge:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.pid = 0

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self.lock:
            if self.loop is None or self.pid != os.getpid() or self.thread is None or not self.thread.is_alive():
                loop = asyncio.new_event_loop()
                started = threading.Event()
                thread = threading.Thread(target=self._serve, args=(loop, started), name="slipstream-sync",
                                          daemon=True)
                thread.start()
                started.wait()
                self.loop, self.thread, self.pid = loop, thread, os.getpid()
            return self.loop

    @staticmethod
    def _serve(loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        loop.run_forever()

    def call(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(*args, **kwargs)` on the bridge's loop and return its result (or raise its error)."""
        if threading.current_thread() is self.thread:
            raise RuntimeError("slipstream.sync was called from inside the async SDK's own loop: await the"
                               " async function instead")
        loop = self._running_loop()
        context = contextvars.copy_context()
        done: concurrent.futures.Future[T] = concurrent.futures.Future()
        tasks: list[asyncio.Task[T]] = []

        def start() -> None:
            async def run() -> T:
                return await fn(*args, **kwargs)

            task = loop.create_task(run(), context=context)
            tasks.append(task)
            task.add_done_callback(lambda t: _settle(t, done))

        loop.call_soon_threadsafe(start)
        try:
            return done.result()
        except BaseException:
            if not done.done():  # interrupted (KeyboardInterrupt): stop the call too
                loop.call_soon_threadsafe(lambda: [t.cancel() for t in tasks])
            raise

    def iterate(self, fn: Callable[P, AsyncIterator[T]], *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        """Iterate `fn(*args, **kwargs)`, an async iterator, from this thread."""
        made: list[AsyncIterator[T]] = []

        async def make() -> None:
            made.append(fn(*args, **kwargs).__aiter__())

        self.call(make)
        iterator = made[0]
        try:
            while True:
                try:
                    yield self.call(iterator.__anext__)
                except StopAsyncIteration:
                    return
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None:
                self.call(close)

    def close(self) -> None:
        """Close the connections and stop the loop (a later call starts a new one)."""
        with self.lock:
            loop, thread = self.loop, self.thread
            self.loop = self.thread = None
        if loop is None or thread is None or not thread.is_alive() or self.pid != os.getpid():
            return
        from slipstream._client import aclose

        asyncio.run_coroutine_threadsafe(aclose(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


def _settle(task: asyncio.Task[T], done: concurrent.futures.Future[T]) -> None:
    if task.cancelled():
        done.cancel()
    elif task.exception() is not None:
        done.set_exception(task.exception())
    else:
        done.set_result(task.result())


bridge = _Bridge()


def _forget_in_child() -> None:
    # The thread does not exist in a forked child (and the lock may have been held): start over.
    bridge.lock = threading.Lock()
    bridge.loop = bridge.thread = None


os.register_at_fork(after_in_child=_forget_in_child)
