"""Wiring of the supervisor: register as a worker, take dispatches, run attempts, report.

Postgres is told first (DEQUEUED -> EXECUTING, then the outcome), JetStream after. A
dispatch that arrives twice, or for a run that was requeued meanwhile, starts nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import asyncpg
import msgspec
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from slipstream_platform import ipc, telemetry
from slipstream_platform.db import UNAVAILABLE
from slipstream_platform.errors import SettingsError
from slipstream_platform.ids import new_id
from slipstream_platform.scheduling import sync_schedules
from slipstream_platform.service import Service
from slipstream_platform.settings import SupervisorSettings
from slipstream_platform.store import environments, workers
from slipstream_platform.store import logs as log_store
from slipstream_platform.store import runs as run_store
from slipstream_platform.store import waitpoints as waitpoint_store
from slipstream_platform.store.runs import Transition
from slipstream_platform.triggering import TriggerRejected, plan_run, trigger_run
from slipstream_proto import CancelRun, DispatchRun, QueueSignal, RunUpdated, TriggerOptions, decode_event
from slipstream_proto.events import (
    DISPATCH_STREAM,
    dispatch_subject,
    queue_signal_subject,
    run_updated_subject,
)
from slipstream_proto.machines import DEFAULT_MACHINE, MACHINE_PRESETS

from supervisor.processes import WorkerProcess, child_environment

log = logging.getLogger(__name__)
_tracer = telemetry.tracer(__name__)
T = TypeVar("T")



class _NotExecuting(Exception):
    """Rolls back a suspension whose run is no longer executing (it was canceled)."""


def crash_error(code: int | None) -> str:
    """The error of an attempt whose worker process died."""
    signal_note = f" (killed by signal {-code})" if code is not None and code < 0 else ""
    return json.dumps({
        "name": "TaskProcessCrashedError",
        "message": f"the worker process running this attempt exited with code {code}{signal_note}",
    })


class Supervisor:
    """One registered worker: its processes, its dispatch inbox and its in-flight attempts."""

    def __init__(self, service: Service[SupervisorSettings], environment: environments.Environment) -> None:
        self.service = service
        self.settings = service.settings
        self.environment = environment
        self.worker_id = new_id("worker")
        self.inbox: asyncio.Queue[tuple[DispatchRun, dict[str, str]]] = asyncio.Queue()
        self.processes: list[WorkerProcess] = []
        self.manifest: dict[str, dict] = {}  # type: ignore[type-arg]
        self.declared_queues: list[dict[str, Any]] = []
        self.in_flight = 0
        self.executing: dict[str, int] = {}  # run id -> slot
        # Cancels that arrived before their run was registered as executing here, with when.
        self.early_cancels: dict[str, float] = {}
        self.canceling: set[str] = set()  # executing runs whose process was told to cancel
        self._background: set[asyncio.Task[None]] = set()
        self.draining = False
        self.idle = asyncio.Event()
        self.idle.set()

    async def start_processes(self) -> None:
        env = child_environment(self.settings.api_url, self.settings.secret_key, self.settings.realtime_url)
        self.processes = [WorkerProcess(self.settings.tasks, env) for _ in range(self.settings.concurrency)]
        readies = await asyncio.gather(*(p.start() for p in self.processes), return_exceptions=True)
        for ready in readies:
            if isinstance(ready, BaseException):
                await asyncio.gather(*(p.stop() for p in self.processes))
                raise ready
        first = readies[0]
        assert isinstance(first, ipc.Ready)
        self.manifest = {t["id"]: t for t in first.tasks}
        self.declared_queues = first.queues
        if not self.manifest:
            log.warning("module %r defines no tasks", self.settings.tasks)

    async def register(self) -> None:
        async with self.service.pool.acquire() as conn, conn.transaction():
            await workers.register(
                conn,
                worker_id=self.worker_id,
                environment_id=self.environment.id,
                task_ids=sorted(self.manifest),
                manifest_json=json.dumps(list(self.manifest.values())),
                capacity=self.settings.concurrency,
                version=self.settings.version,
                hostname=socket.gethostname(),
            )
            await sync_schedules(conn, self.environment, list(self.manifest.values()), self.declared_queues)
            promoted = await run_store.promote_pending_version(conn, self.environment.id)
        await self.announce(promoted, signal="worker")
        log.info("worker %s serves %d task(s) in %s with %d process(es)", self.worker_id,
                 len(self.manifest), self.environment.type, len(self.processes))

    async def announce(self, changed: list[Transition], signal: str | None = None) -> None:
        items: list[tuple[str, RunUpdated | QueueSignal]] = [
            (
                run_updated_subject(t.environment_id, t.run_id),
                RunUpdated(run_id=t.run_id, environment_id=t.environment_id, status=t.status,
                           updated_at=t.updated_at),
            )
            for t in changed
        ]
        if signal is not None:
            items.append((queue_signal_subject(self.environment.id),
                          QueueSignal(environment_id=self.environment.id, reason=signal)))  # type: ignore[arg-type]
        await self.service.bus.notify(items)  # type: ignore[arg-type]

    async def on_dispatch(self, msg: Msg) -> None:
        try:
            event = decode_event(msg.data)
            if isinstance(event, DispatchRun):
                self.inbox.put_nowait((event, dict(msg.headers or {})))
            elif isinstance(event, CancelRun):
                await self.cancel(event.run_id)
        except Exception:
            log.exception("bad message on %s", msg.subject)
        await msg.ack()

    async def cancel(self, run_id: str) -> None:
        """Signal a canceled run's process; kill it if the run is still going after the grace."""
        slot = self.executing.get(run_id)
        if slot is None:
            # Not executing here (yet): if its attempt is about to start, it is canceled right after. An entry
            # for a run that never starts here is forgotten after a minute.
            now = asyncio.get_running_loop().time()
            for stale in [r for r, at in self.early_cancels.items() if now - at > 60]:
                del self.early_cancels[stale]
            self.early_cancels[run_id] = now
            return
        if run_id in self.canceling:
            return
        self.canceling.add(run_id)
        process = self.processes[slot]
        await process.cancel(run_id)

        async def kill_after_grace() -> None:
            await asyncio.sleep(self.settings.cancel_grace)
            if self.executing.get(run_id) == slot and self.processes[slot] is process:
                log.warning("run %s still running %.0fs after cancel; killing its process", run_id,
                            self.settings.cancel_grace)
                process.kill()

        task = asyncio.create_task(kill_after_grace())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def runner(self, slot: int) -> None:
        """Take dispatches one at a time and run them in this slot's process."""
        while True:
            dispatch, headers = await self.inbox.get()
            if self.draining:
                continue
            self.in_flight += 1
            self.idle.clear()
            try:
                with _tracer.start_as_current_span(
                    "attempt", context=telemetry.extract(headers), attributes={"run": dispatch.run_id}
                ):
                    await self.run_attempt(slot, dispatch)
            except Exception:
                log.exception("attempt of %s failed in the supervisor", dispatch.run_id)
            finally:
                self.in_flight -= 1
                if self.in_flight == 0:
                    self.idle.set()

    async def run_attempt(self, slot: int, dispatch: DispatchRun) -> None:
        task = self.manifest.get(dispatch.task_identifier)
        started = await run_store.start_attempt(
            self.service.pool,
            run_id=dispatch.run_id,
            worker_id=self.worker_id,
            default_max_attempts=task["retry"]["max_attempts"] if task else 1,
            default_max_duration=task.get("maxDuration") if task else None,
            default_machine=(task.get("machine") if task else None) or DEFAULT_MACHINE,
        )
        if started is None:
            return
        run, attempt_id = started
        try:
            await self.execute_started(slot, task, run, attempt_id)
        except Exception as exc:
            # A fault of the platform, not of the task: the run must still end.
            log.exception("attempt %d of %s failed in the supervisor", run["attempt_count"], run["id"])
            error = json.dumps({"name": "SystemFailureError", "message": f"the supervisor failed: {exc!r}"})
            changed = await self.persist(partial(
                run_store.fail_attempt, run_id=run["id"], attempt_number=run["attempt_count"],
                error_json=error, retry_at=None, final_status="SYSTEM_FAILURE"))
            await self.announce([changed] if changed else [], signal="released")
            await self.replace_process(slot)

    async def execute_started(
        self, slot: int, task: dict[str, Any] | None, run: asyncpg.Record, attempt_id: str
    ) -> None:
        """Run a started attempt in the slot's process and record how it ended."""
        await self.announce([Transition(run["id"], run["environment_id"], run["status"], run["updated_at"])])
        max_duration = run["max_duration"]
        timeout = max(0.001, max_duration - run["executed_seconds"]) if max_duration else None
        process = self.processes[slot]
        logs: list[dict[str, Any]] = []
        journal: list[ipc.JournalEntry] = []
        if run["resuming"] or run["attempt_count"] > 1:
            journal = [
                ipc.JournalEntry(seq=w["seq"], type=w["type"], task_id=w["task_id"], result_json=w["result"])
                for w in await waitpoint_store.journal(self.service.pool, run["id"])
            ]
        message = ipc.Execute(
            run_id=run["id"],
            task_id=run["task_identifier"],
            payload_json=run["payload"],
            attempt_id=attempt_id,
            attempt_number=run["attempt_count"],
            max_attempts=run["max_attempts"],
            created_at=run["created_at"].isoformat(),
            tags=list(run["tags"]),
            environment_id=self.environment.id,
            environment_type=self.environment.type,
            timeout_seconds=timeout,
            max_duration=max_duration,
            machine=run["machine"],
            queue=run["queue"],
            journal=journal,
            resuming=run["resuming"],
        )
        watchdog_fired = False
        # The attempt is written to the process before the run counts as executing here, so a
        # cancel always reaches the process after it.
        sent = process.send(message)
        self.executing[run["id"]] = slot
        if self.early_cancels.pop(run["id"], None) is not None:
            # Canceled between its start and now: the run and attempt are CANCELED already.
            await self.cancel(run["id"])
        flusher = asyncio.create_task(self.flush_logs(run["id"], run["attempt_count"], logs))
        preset = MACHINE_PRESETS.get(run["machine"]) or MACHINE_PRESETS[DEFAULT_MACHINE]
        memory = asyncio.create_task(self.watch_memory(process, preset.memory_bytes))
        try:
            # The worker stops an async task itself at the deadline; a task that does not
            # yield (sync code) is stopped by killing its process a little later.
            outcome = await asyncio.wait_for(
                process.outcome(logs), None if timeout is None else timeout + self.settings.watchdog_grace
            ) if sent else None
        except TimeoutError:
            watchdog_fired = True
            process.kill()
            outcome = None
        finally:
            self.executing.pop(run["id"], None)
            self.canceling.discard(run["id"])
            for helper in (flusher, memory):
                helper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await helper
        peak = memory.result() if memory.done() and not memory.cancelled() else None
        number = run["attempt_count"]
        if outcome is None and not watchdog_fired and self.draining:
            # Killed at the end of the shutdown grace: the worker is marked stopped next, and
            # the sweeper retries the run elsewhere as a stalled attempt.
            return
        if outcome is not None and outcome.suspend is not None and peak is None:
            if logs:
                await self.persist(partial(log_store.insert, run_id=run["id"], attempt_number=number, lines=logs))
            await self.suspend(run, outcome.suspend)
            return
        write: Callable[[asyncpg.Pool], Awaitable[Transition | None]]
        if peak is not None:
            write = self.out_of_memory(run, task, preset.name, peak)
        elif watchdog_fired:
            error = json.dumps({"name": "MaxDurationExceededError",
                                "message": f"the run exceeded its max_duration of {max_duration}s"})
            write = partial(run_store.fail_attempt, run_id=run["id"], attempt_number=number,
                            error_json=error, retry_at=None, final_status="TIMED_OUT")
        elif outcome is None:
            code = await process.exit_code()
            write = partial(run_store.fail_attempt, run_id=run["id"], attempt_number=number,
                            error_json=crash_error(code), retry_at=None, final_status="CRASHED")
        elif outcome.ok:
            write = partial(run_store.complete_attempt, run_id=run["id"], attempt_number=number,
                            output_json=outcome.output_json or "null")
        else:
            retry_at = None
            if outcome.retry_delay_ms is not None:
                retry_at = datetime.now(UTC) + timedelta(milliseconds=outcome.retry_delay_ms)
            write = partial(run_store.fail_attempt, run_id=run["id"], attempt_number=number,
                            error_json=outcome.error_json or "{}", retry_at=retry_at,
                            final_status=outcome.final_status or "FAILED")
        if logs:
            await self.persist(partial(log_store.insert, run_id=run["id"], attempt_number=number, lines=logs))
        changed = await self.persist(write)
        await self.announce([changed] if changed else [], signal="released")
        if outcome is None or outcome.replace_process:
            await self.replace_process(slot)

    async def suspend(self, run: asyncpg.Record, wait: ipc.WaitRequest) -> None:
        """Record the waitpoint (and create the child run) and move the run to WAITING, atomically."""
        changed: list[Transition] = []
        try:
            async with self.service.pool.acquire() as conn, conn.transaction():
                child_id = None
                if wait.type == "RUN":
                    assert wait.task_id is not None
                    options = msgspec.json.decode(wait.options_json or "{}", type=TriggerOptions)
                    plan = plan_run(wait.task_id, msgspec.json.decode(wait.payload_json or "null"), options,
                                    environment_type=self.environment.type, now=datetime.now(UTC))
                    served = await workers.serves_task(conn, self.environment.id, wait.task_id)
                    # An idempotency or debounce key may make the child an existing run: wait for it.
                    child = await trigger_run(conn, plan, environment_id=self.environment.id, served=served,
                                              parent=run, traceparent=run["traceparent"])
                    child_id = child.run_id
                    if child.transition is not None:
                        changed.append(child.transition)
                await waitpoint_store.create(
                    conn, run_id=run["id"], seq=wait.seq, type=wait.type,
                    resume_at=datetime.fromtimestamp(wait.resume_at, UTC) if wait.resume_at is not None else None,
                    child_run_id=child_id,
                )
                waiting = await run_store.suspend(conn, run_id=run["id"], attempt_number=run["attempt_count"])
                if waiting is None:
                    raise _NotExecuting
                changed.append(waiting)
        except _NotExecuting:
            return  # canceled meanwhile: nothing to wait for
        except TriggerRejected as exc:
            error = json.dumps({"name": "TriggerError", "message": f"trigger_and_wait({wait.task_id!r}): {exc}"})
            failed = await run_store.fail_attempt(self.service.pool, run_id=run["id"],
                                                  attempt_number=run["attempt_count"], error_json=error,
                                                  retry_at=None)
            changed = [failed] if failed else []
        await self.announce(changed, signal="released")

    async def watch_memory(self, process: WorkerProcess, limit: int) -> int:
        """Kill the process once its resident memory passes `limit`; return what it used."""
        while True:
            await asyncio.sleep(self.settings.memory_poll_interval)
            used = process.resident_bytes()
            if used is not None and used > limit:
                process.kill()
                return used

    def out_of_memory(
        self, run: asyncpg.Record, task: dict[str, Any] | None, machine: str, used: int
    ) -> Callable[[asyncpg.Pool], Awaitable[Transition | None]]:
        """CRASHED with an out-of-memory error, or a retry on the bigger preset the task names."""
        limit = MACHINE_PRESETS[machine].memory_bytes
        error = json.dumps({
            "name": "TaskRunOutOfMemoryError",
            "message": f"the worker process used {used // 2**20} MB, over the {limit // 2**20} MB"
            f" of machine {machine!r}",
        })
        bigger = ((task or {}).get("retry", {}).get("out_of_memory") or {}).get("machine")
        if bigger and bigger != machine and run["attempt_count"] < run["max_attempts"]:
            return partial(run_store.fail_attempt, run_id=run["id"], attempt_number=run["attempt_count"],
                           error_json=error, retry_at=datetime.now(UTC), attempt_status="CRASHED",
                           retry_machine=bigger)
        return partial(run_store.fail_attempt, run_id=run["id"], attempt_number=run["attempt_count"],
                       error_json=error, retry_at=None, final_status="CRASHED")

    async def flush_logs(self, run_id: str, attempt_number: int, logs: list[dict[str, Any]]) -> None:
        """Store a running attempt's log lines every half second, so they can be read live."""
        while True:
            await asyncio.sleep(0.5)
            if not logs:
                continue
            batch = logs[:]
            try:
                await log_store.insert(self.service.pool, run_id, attempt_number, batch)
            except UNAVAILABLE as exc:
                log.warning("storing log lines failed (%r); keeping them for the next try", exc)
                continue
            del logs[: len(batch)]

    async def persist(self, write: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
        """Write to Postgres, retrying while it is unreachable.

        If the supervisor stops before an outcome is recorded, the run is left EXECUTING on
        a stopped worker, and the scheduler's sweeper retries it.
        """
        delay = 0.1
        while True:
            try:
                return await write(self.service.pool)
            except UNAVAILABLE as exc:
                if self.service.stop.is_set():
                    raise
                log.warning("writing to Postgres failed (%r); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def replace_process(self, slot: int) -> None:
        """Start a fresh process in the slot of one that died (retrying until it starts)."""
        old = self.processes[slot]
        await old.stop(grace=0)
        while True:
            replacement = WorkerProcess(old.module, old.env)
            try:
                await replacement.start()
            except Exception:
                log.exception("restarting worker process %d failed; trying again in 5s", slot)
                await asyncio.sleep(5)
                continue
            self.processes[slot] = replacement
            return

    async def heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval)
            try:
                alive = await workers.heartbeat(self.service.pool, self.worker_id)
            except Exception:
                log.exception("heartbeat failed")
                continue
            if not alive:
                if self.draining:
                    return  # our own shutdown marked it stopped
                log.error("worker %s was declared stopped (missed heartbeats); exiting", self.worker_id)
                self.service.stop.set()
                return
            await self.cancel_lost()

    async def cancel_lost(self) -> None:
        """Cancel the executing runs that Postgres says are CANCELED: their CancelRun was lost
        (it is sent once, without an ack), so the heartbeat repairs it."""
        try:
            canceled = await run_store.canceled_among(self.service.pool, list(self.executing))
        except Exception:
            log.exception("checking for canceled runs failed")
            return
        for run_id in canceled:
            if run_id not in self.canceling:
                log.warning("run %s was canceled but no cancel message arrived; canceling it now", run_id)
                await self.cancel(run_id)

    async def shutdown(self) -> None:
        """Stop taking work, let running attempts finish (up to the grace), hand back the rest."""
        self.draining = True
        try:
            await asyncio.wait_for(self.idle.wait(), self.settings.shutdown_grace)
        except TimeoutError:
            log.warning("attempts still running after %.0fs; killing them", self.settings.shutdown_grace)
            for process in self.processes:
                process.kill()
        await workers.stop(self.service.pool, self.worker_id)
        requeued = await run_store.requeue_dequeued(self.service.pool, worker_id=self.worker_id)
        await self.announce(requeued, signal="requeued")
        await asyncio.gather(*(p.stop() for p in self.processes), return_exceptions=True)
        try:
            await self.service.bus.js.delete_consumer(DISPATCH_STREAM.name, self.worker_id)
        except Exception as exc:
            log.debug("could not delete consumer %s: %r", self.worker_id, exc)


async def setup(service: Service[SupervisorSettings]) -> None:
    """Start the processes, subscribe to this worker's dispatches, register, run."""
    settings = service.settings
    if not settings.tasks:
        raise SettingsError("SLIPSTREAM_TASKS is not set: name the module with your tasks, e.g. 'examples'")
    environment = await environments.by_api_key(service.pool, settings.secret_key)
    if environment is None:
        raise SettingsError("SLIPSTREAM_SECRET_KEY does not belong to any environment")
    supervisor = Supervisor(service, environment)
    await supervisor.start_processes()
    sub = await service.bus.js.subscribe(
        dispatch_subject(supervisor.worker_id),
        durable=supervisor.worker_id,
        stream=DISPATCH_STREAM.name,
        cb=supervisor.on_dispatch,
        manual_ack=True,
        config=ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=30,
            inactive_threshold=3600,
        ),
    )
    await supervisor.register()

    async def stop() -> None:
        await sub.unsubscribe()
        await supervisor.shutdown()

    service.on_shutdown.append(stop)
    for slot in range(settings.concurrency):
        service.spawn(supervisor.runner(slot), f"runner-{slot}")
    service.spawn(supervisor.heartbeat(), "heartbeat")
