"""Wiring of the supervisor: register as a worker, take runs, run attempts, report.

A supervisor takes its own runs (ADR 0009): on a queue signal of its environment, when a
slot frees while runs wait, and every sweep interval, one statement claims ready runs for
its free slots within every limit and starts them (`claims.take`: QUEUED -> EXECUTING).
Postgres is told first (the take, then the end), JetStream after. The attempts that end
together are recorded with one statement (store/attempts.py); how an attempt ends is decided
in `slipstream_platform.lifecycle`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

import msgspec
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from slipstream_core import ipc
from slipstream_core.definitions import QueueDefinition, TaskDefinition, encode_tasks
from slipstream_core.versions import REGION, VERSION, code_version
from slipstream_platform import lifecycle, logformat, metrics, packets, takes, telemetry
from slipstream_platform.batching import MAX_WAIT_ITEMS, BatchItem, plan_batch, trigger_batch
from slipstream_platform.bus import patiently
from slipstream_platform.db import UNAVAILABLE
from slipstream_platform.errors import SettingsError
from slipstream_platform.ids import new_id
from slipstream_platform.scheduling import sync_schedules
from slipstream_platform.service import Service
from slipstream_platform.settings import SupervisorSettings
from slipstream_platform.store import attempts, claims, deployments, environments, workers
from slipstream_platform.store import batches as batch_store
from slipstream_platform.store import logs as log_store
from slipstream_platform.store import runs as run_store
from slipstream_platform.store import waitpoints as waitpoint_store
from slipstream_platform.store.attempts import AttemptEnd, StartedAttempt
from slipstream_platform.store.runs import Transition
from slipstream_platform.triggering import Parent, TriggerRejected, offload, plan_run, trigger_run
from slipstream_proto import FINAL_STATUSES, CancelRun, QueueSignal, TriggerOptions, decode_event
from slipstream_proto.events import DISPATCH_STREAM, QueueReason, dispatch_subject, queue_signals_of
from slipstream_proto.machines import MACHINE_PRESETS

from slipstream_server.supervisor.processes import WorkerProcess, child_environment

log = logging.getLogger(__name__)
_tracer = telemetry.tracer(__name__)
T = TypeVar("T")
# How long a status change that wakes nobody may wait to go out with others (Bus.announce): a
# supervisor starting and ending runs one at a time otherwise writes to NATS twice a run.
STATUS_DELAY = 0.005


class _NotExecuting(Exception):
    """Rolls back a suspension whose run is no longer executing (it was canceled)."""


class Supervisor:
    """One registered worker: its processes, its free slots and its in-flight attempts."""

    def __init__(self, service: Service[SupervisorSettings], environment: environments.Environment) -> None:
        self.service = service
        self.settings = service.settings
        self.environment = environment
        self.packets = packets.open_store(service.settings, service.nc.jetstream())
        self.worker_id = new_id("worker")
        self.version = self.settings.version or code_version(self.settings.tasks)
        if not VERSION.match(self.version):
            raise SettingsError(f"SLIPSTREAM_VERSION {self.version[:80]!r} is not a version: use 1-64 letters,"
                                " digits and . _ + - (starting with a letter or digit)")
        self.region = self.settings.region or None
        if self.region is not None and not REGION.match(self.region):
            raise SettingsError(f"SLIPSTREAM_REGION {self.region[:80]!r} is not a region name: use 1-64 lowercase"
                                " letters, digits and . _ - (starting with a letter or digit)")
        self.free: list[int] = []  # slots whose process is idle
        # Attempts a take started beyond the free slots (Postgres counted a slot free before
        # its attempt let go of it): each gets the next slot that frees.
        self.pending: list[StartedAttempt] = []
        self.processes: list[WorkerProcess] = []
        self.tasks: dict[str, TaskDefinition] = {}
        self.defaults = lifecycle.task_defaults([])
        self.wakes = takes.Wakes(self.worker_id, environment.id)  # when to take
        self.declared_queues: list[QueueDefinition] = []
        self.busy = 0  # slots taken
        self.executing: dict[str, int] = {}  # run id -> slot
        # Runs started here whose end is not recorded yet; the heartbeat retries any other
        # EXECUTING run of this worker (its end could not be recorded).
        # (A count per run: a retry may start while the attempt before it is still replacing its process.)
        self.owned: collections.Counter[str] = collections.Counter()
        # Cancels that arrived before their run was registered as executing here, with when.
        self.early_cancels: dict[str, float] = {}
        self.canceling: set[str] = set()  # executing runs whose process was told to cancel
        # Ends waiting for the next group commit, each with the future its attempt awaits.
        self.ends: list[tuple[AttemptEnd, asyncio.Future[None]]] = []
        self.ends_ready = asyncio.Event()
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
        self.tasks = {t.id: t for t in first.tasks}
        self.defaults = lifecycle.task_defaults(self.tasks[task_id] for task_id in sorted(self.tasks))
        self.declared_queues = first.queues
        if not self.tasks:
            log.warning("module %r defines no tasks", self.settings.tasks)
        self.free = list(range(len(self.processes)))

    async def register(self) -> None:
        manifest = encode_tasks(list(self.tasks.values()))
        async with self.service.pool.acquire() as conn, conn.transaction():
            await workers.register(
                conn,
                worker_id=self.worker_id,
                environment_id=self.environment.id,
                task_ids=sorted(self.tasks),
                manifest_json=manifest,
                capacity=self.settings.concurrency,
                version=self.version,
                hostname=socket.gethostname(),
                region=self.region,
            )
            await deployments.register(conn, self.environment.id, self.version, sorted(self.tasks), manifest,
                                       msgspec.json.encode(self.declared_queues or []).decode())
            # Only a current worker's catalog is the truth for schedules and queues: a worker of
            # an older version still draining must not bring back what a deploy removed.
            current = await deployments.is_current(conn, self.environment.id, self.version)
            if current:
                await sync_schedules(conn, self.environment, list(self.tasks.values()), self.declared_queues)
            promoted = await run_store.promote_pending_version(conn, self.environment.id)
        await self.announce(promoted, "worker", [self.environment.id])
        log.info("worker %s (version %s%s, region %s) serves %d task(s) in %s with %d process(es)", self.worker_id,
                 self.version, "" if current else ", not current: it drains", self.region or "default",
                 len(self.tasks), self.environment.type, len(self.processes))

    async def on_dispatch(self, msg: Msg) -> None:
        try:
            event = decode_event(msg.data)
            if isinstance(event, CancelRun):
                await self.cancel(event.run_id)
        except Exception:
            log.exception("bad message on %s", msg.subject)
        await msg.ack()

    async def on_signal(self, msg: Msg) -> None:
        """A queue signal of this environment: runs may be ready."""
        try:
            event = decode_event(msg.data)
        except Exception:
            log.exception("bad message on %s", msg.subject)
            return
        if isinstance(event, QueueSignal):
            self.wakes.signal(event)

    async def announce(self, transitions: list[Transition], reason: QueueReason | None = None,
                       environments: Iterable[str] = (), *, waiting: list[str] | None = None) -> None:
        """Publish as `Bus.announce`, and wake the taker here for what wakes this environment's
        supervisors (it skips its own signals). `waiting`: the runs that wait, when they are all
        known: then a take that got them all need not take again."""
        environments = list(environments)
        await self.service.bus.announce(transitions, reason, environments)
        if reason is not None:
            mine = self.environment.id
            self.wakes.announced([t.run_id for t in transitions if t.status == "QUEUED" and t.environment_id == mine],
                                 mine in environments, waiting)

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

        self._spawn(kill_after_grace())

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _release(self, slot: int) -> None:
        """Give a freed slot to the next pending attempt, or back to the free slots."""
        if self.pending:
            self._run(slot, self.pending.pop(0))
            return
        self.busy -= 1
        self.free.append(slot)
        if self.busy == 0:
            self.idle.set()
        self.wakes.slot_freed()

    def _run(self, slot: int, started: StartedAttempt) -> None:
        # An attempt that needs nothing from Postgres first (its payload is at hand, no journal
        # to replay) and no span to parent its worker's (tracing off) is written to its process
        # now, before the loop turns: the task that follows waits for its outcome. Stamped:
        # take returned -> written 0.34 -> 0.19 ms (docs/benchmarks.md).
        sent: bool | None = None
        if started.payload_json is not None and not lifecycle.needs_journal(started) and not telemetry.enabled():
            try:
                sent = self._send(slot, started, [])
            except Exception:
                log.exception("handing %s to its process failed; the attempt tries again", started.run_id)
        self._spawn(self.attempt(slot, started, sent))

    def _send(self, slot: int, started: StartedAttempt, journal: list[ipc.JournalEntry]) -> bool:
        """Write the attempt to the slot's process, then count the run as executing here (in
        that order, so a cancel always reaches the process after it); False if it is gone."""
        if started.attempt_number == 1 and not started.resuming:
            metrics.child(metrics.trigger_to_start, started.task_identifier).observe(
                max(0.0, (datetime.now(UTC) - started.created_at).total_seconds()))
        sent = self.processes[slot].send(lifecycle.execute_message(started, self.environment.type, journal,
                                                                   telemetry.traceparent()))
        self.executing[started.run_id] = slot
        return sent

    async def taker(self) -> None:
        """Take ready runs for the free slots whenever some may wait: on a queue signal, when a
        slot frees after a take that left runs, and every sweep interval (a lost signal)."""
        wakes = self.wakes
        while True:
            # (asyncio.timeout, not wait_for: no task to start and finish at every signal)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.sweep_interval):
                    await wakes.wanted.wait()
            wakes.wanted.clear()  # (no free slot: a slot that frees wakes it again while runs wait)
            while not self.draining and self.free:  # (no attempt is pending while a slot is free)
                asked = len(self.free)
                wakes.begin()
                try:
                    took = await self.persist(partial(claims.take, worker_id=self.worker_id,
                                                      environment_id=self.environment.id, tasks=self.defaults,
                                                      capacity=self.settings.concurrency))
                except Exception:
                    wakes.failed()
                    log.exception("taking runs failed; trying again at the next signal or sweep")
                    break
                again = wakes.took([a.run_id for a in took.started],
                                   full=took.more or len(took.started) >= asked)
                metrics.child(metrics.takes, "yes" if took.started else "no").inc()
                self.hand_out(took.started)
                if took.rated:
                    # A rate window may be full now: the queue-manager learns when it frees.
                    await self.announce([a.transition for a in took.started], "rated", [self.environment.id])
                else:
                    await self.announce([a.transition for a in took.started])
                if not again:
                    break

    def hand_out(self, started: list[StartedAttempt]) -> None:
        """Run what a take started: in free slots, the rest as slots free."""
        for attempt in started:
            if attempt.run_id in self.executing:
                # Taken again while its execution goes on here: its earlier take was lost with
                # Postgres (ADR 0008). The execution going on records its end under this same
                # attempt number, so it is not started twice here.
                log.warning("run %s was taken again while executing here (its take was lost); "
                            "the execution going on finishes it", attempt.run_id)
                continue
            self.owned[attempt.run_id] += 1  # ours from now on, pending or not (recover_orphans)
            if self.free:
                self.busy += 1
                self.idle.clear()
                self._run(self.free.pop(), attempt)
            else:
                self.pending.append(attempt)

    async def attempt(self, slot: int, started: StartedAttempt, sent: bool | None = None) -> None:
        """Run one started attempt in its slot's process (`sent`: written to it already, or
        not: None), then free the slot."""
        logformat.current_run.set(started.run_id)  # this task's own context: its log lines name the run
        trace = {"traceparent": started.traceparent} if started.traceparent else None
        try:
            with _tracer.start_as_current_span(
                "attempt", context=telemetry.extract(trace), attributes={"run": started.run_id}
            ):
                await self.run_attempt(slot, started, sent)
        except Exception as exc:
            # A fault of the platform, not of the task: the run must still end.
            log.exception("attempt %d of %s failed in the supervisor", started.attempt_number, started.run_id)
            with contextlib.suppress(Exception):
                await self.finish(lifecycle.system_failure(started, exc))
            await self.replace_process(slot)
        finally:
            self.owned[started.run_id] -= 1
            if self.owned[started.run_id] <= 0:
                del self.owned[started.run_id]
            self._release(slot)

    async def run_attempt(self, slot: int, started: StartedAttempt, sent: bool | None = None) -> None:
        """Run a started attempt in the slot's process (unless `_run` wrote it there already)
        and record how it ended."""
        task = self.tasks.get(started.task_identifier)
        process = self.processes[slot]
        logs: list[dict[str, Any]] = []
        if sent is None:
            journal: list[ipc.JournalEntry] = []
            if started.payload_json is None:  # over 512 KB: in the payload store (ADR 0012)
                started = msgspec.structs.replace(started, payload_json=await self.stored_payload(started.run_id))
            if lifecycle.needs_journal(started):
                journal = [
                    ipc.JournalEntry(seq=w["seq"], type=w["type"], task_id=w["task_id"],
                                     result_json=await self.with_stored_outputs(w["result"]))
                    for w in await self.persist(lambda pool: waitpoint_store.journal(pool, started.run_id))
                ]
            sent = self._send(slot, started, journal)
        began = time.monotonic()
        timeout = lifecycle.time_left(started)
        run_id = started.run_id
        if self.early_cancels.pop(run_id, None) is not None:
            # Canceled between its start and now: the run and attempt are CANCELED already.
            await self.cancel(run_id)
        flusher = asyncio.create_task(self.flush_logs(run_id, started.attempt_number, logs))
        memory = asyncio.create_task(self.watch_memory(process, MACHINE_PRESETS[lifecycle.preset_of(started)]
                                                       .memory_bytes))
        watchdog_fired = False
        try:
            # The worker stops an async task itself at the deadline; a task that does not
            # yield (sync code) is stopped by killing its process a little later.
            outcome = None
            if sent:
                async with asyncio.timeout(None if timeout is None else timeout + self.settings.watchdog_grace):
                    outcome = await process.outcome(logs)
        except TimeoutError:
            watchdog_fired = True
            process.kill()
            outcome = None
        finally:
            self.executing.pop(run_id, None)
            self.canceling.discard(run_id)
            for helper in (flusher, memory):
                helper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await helper
        used = memory.result() if memory.done() and not memory.cancelled() else None
        if outcome is None and not watchdog_fired and self.draining:
            # Killed at the end of the shutdown grace: the worker is marked stopped next, and
            # the sweeper retries the run elsewhere as a stalled attempt.
            return
        if logs:
            await self.persist(partial(log_store.insert, run_id=run_id, attempt_number=started.attempt_number,
                                       lines=logs))
        if outcome is not None and outcome.suspend is not None and used is None:
            await self.suspend(started, outcome.suspend)
            return
        exit_code = None
        if outcome is None and not watchdog_fired and used is None:
            exit_code = await process.exit_code()
        seen = lifecycle.Observed(outcome=outcome, exit_code=exit_code, watchdog_fired=watchdog_fired,
                                  memory_used=used)
        end = lifecycle.end_of_attempt(started, task, seen, datetime.now(UTC))
        if end.output_json is not None and packets.too_large(end.output_json):
            end = await self.store_output(started, end)
        await self.finish(end)
        metrics.child(metrics.attempt_duration, started.task_identifier, end.attempt_status).observe(
            time.monotonic() - began)
        if end.status in FINAL_STATUSES:
            metrics.child(metrics.runs_finished, started.task_identifier, end.status).inc()
        if outcome is None or outcome.replace_process:
            await self.replace_process(slot)

    async def stored_payload(self, run_id: str) -> str:
        """The payload of a run whose payload is in the payload store."""
        name = await self.persist(lambda pool: pool.fetchval("SELECT payload_packet FROM runs WHERE id = $1", run_id))
        if name is None:
            return "null"
        return (await self.packets.get(name)).decode()

    async def with_stored_outputs(self, result_json: str | None) -> str | None:
        """A wait's result with the children's outputs that are in the payload store put back."""
        if result_json is None or '"output_packet"' not in result_json:
            return result_json
        result = msgspec.json.decode(result_json)
        for child in result.get("runs", [result]):
            name = child.pop("output_packet", None)
            if name is not None:
                child["output"] = msgspec.Raw(await self.packets.get(name))
        return msgspec.json.encode(result).decode()

    async def store_output(self, started: StartedAttempt, end: AttemptEnd) -> AttemptEnd:
        """The end with its output (over 512 KB) in the payload store; a system failure if it cannot be stored."""
        assert end.output_json is not None
        try:
            name = await self.packets.put(self.environment.id, "output", end.output_json)
        except packets.StoreUnavailable as exc:
            log.error("the output of %s could not be stored: %s", started.run_id, exc)
            return lifecycle.system_failure(started, exc)
        return msgspec.structs.replace(end, output_json=None, output_packet=name)

    async def finish(self, end: AttemptEnd) -> None:
        """Record an attempt's end with the next group commit; return once it is committed."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ends.append((end, done))
        self.ends_ready.set()
        await done

    async def finisher(self) -> None:
        """Write the ends that are waiting, all in one statement, as soon as the last write is done."""
        while True:
            await self.ends_ready.wait()
            self.ends_ready.clear()
            batch, self.ends = self.ends, []
            if not batch:
                continue
            try:
                finished = await self.persist(partial(attempts.finish_each, ends=[end for end, _ in batch],
                                                      unavailable=UNAVAILABLE))
            except Exception as exc:
                for _, done in batch:
                    done.set_exception(exc)
                continue
            resumed: list[Transition] = []
            if finished.children:
                # Their parents need not wait for the scheduler's next tick (which stays the safety net).
                try:
                    resumed = await waitpoint_store.resume_parents(self.service.pool, finished.children)
                except Exception:
                    log.exception("resuming the parents of %d run(s) failed; the scheduler will",
                                  len(finished.children))
            # Freed slots matter only if runs wait: then every supervisor of the environment may
            # take (a retry that is ready at once, or a resumed parent, is QUEUED: that signals by itself).
            # (Named, unless as many as are named wait: then more may.)
            await self.announce(finished.changed + resumed, "released",
                                [self.environment.id] if finished.waiting else [],
                                waiting=finished.waiting if len(finished.waiting) < attempts.WAITING_NAMED else None)
            for end, done in batch:
                failed = finished.failed.get(end.run_id)
                if failed is None:
                    done.set_result(None)
                else:
                    done.set_exception(failed)

    async def suspend(self, started: StartedAttempt, wait: ipc.WaitRequest) -> None:
        """Record the waitpoint (and create the child run) and move the run to WAITING, atomically.
        While Postgres is unreachable the transaction is tried again; if an earlier try committed
        after all (its answer was lost), the waitpoint is there, and nothing is made twice."""
        delay = 0.1
        retried = False
        while True:
            changed: list[Transition] = []
            try:
                if retried and await waitpoint_store.exists(self.service.pool, started.run_id, wait.seq):
                    break  # the lost try committed: the children are made, the run WAITING
                async with self.service.pool.acquire() as conn, conn.transaction():
                    child_id = batch_id = None
                    if wait.type == "BATCH" and wait.batch_id is not None:
                        refused = await batch_store.waited_by(conn, self.environment.id, wait.batch_id,
                                                              started.run_id)
                        if refused is not None:
                            raise TriggerRejected(422, refused)
                        batch_id = wait.batch_id
                    elif wait.type == "BATCH":
                        if wait.items_json is None:
                            raise TriggerRejected(422, "a BATCH wait names its items or its batch, and this one"
                                                       " names neither")
                        items = msgspec.json.decode(wait.items_json, type=list[BatchItem])
                        plans = plan_batch(items, environment_type=self.environment.type, now=datetime.now(UTC),
                                           max_items=MAX_WAIT_ITEMS)
                        plans = await offload(self.packets, plans, self.environment.id)
                        # The children's traces hang under this attempt, as if triggered through the API.
                        with _tracer.start_as_current_span("batch", attributes={"items": len(plans)}) as span:
                            made = await trigger_batch(
                                conn, plans, environment_id=self.environment.id, task_identifier=None,
                                parent=Parent(started.run_id, started.root_run_id, started.depth),
                                traceparent=telemetry.traceparent() or started.traceparent)
                            span.set_attribute("batch", made.batch_id)
                        batch_id = made.batch_id
                        changed += made.transitions
                    if wait.type == "RUN":
                        assert wait.task_id is not None
                        options = msgspec.json.decode(wait.options_json or "{}", type=TriggerOptions)
                        plan = plan_run(wait.task_id, msgspec.json.decode(wait.payload_json or "null"), options,
                                        environment_type=self.environment.type, now=datetime.now(UTC))
                        plan = (await offload(self.packets, [plan], self.environment.id))[0]
                        served = await workers.serves_task(conn, self.environment.id, wait.task_id)
                        # An idempotency or debounce key may make the child an existing run: wait for it.
                        with _tracer.start_as_current_span("trigger", attributes={"task": wait.task_id}) as span:
                            child = await trigger_run(conn, plan, environment_id=self.environment.id, served=served,
                                                      parent=Parent(started.run_id, started.root_run_id, started.depth),
                                                      traceparent=telemetry.traceparent() or started.traceparent)
                            span.set_attribute("run", child.run_id)
                        child_id = child.run_id
                        if child.transition is not None:
                            changed.append(child.transition)
                    await waitpoint_store.create(
                        conn, run_id=started.run_id, seq=wait.seq, type=wait.type,
                        resume_at=datetime.fromtimestamp(wait.resume_at, UTC) if wait.resume_at is not None else None,
                        child_run_id=child_id, batch_id=batch_id,
                    )
                    waiting = await attempts.suspend(conn, run_id=started.run_id, attempt_number=started.attempt_number)
                    if waiting is None:
                        raise _NotExecuting
                    changed.append(waiting)
                break
            except _NotExecuting:
                return  # canceled meanwhile: nothing to wait for
            except TriggerRejected as exc:
                await self.finish(lifecycle.trigger_failure(started, wait.task_id, str(exc)))
                return
            except UNAVAILABLE as exc:
                if self.service.stop.is_set():
                    raise
                log.warning("recording the wait of %s failed (%r); retrying in %.1fs", started.run_id, exc, delay)
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)
                retried = True
        await self.announce(changed, "released", [self.environment.id])
        if wait.type in ("RUN", "BATCH"):
            # What it waits for may have ended before the wait was recorded (a cached child that
            # finished, a streamed batch's quick runs): their ends found nothing to resume.
            try:
                resumed = await waitpoint_store.resume_if_done(self.service.pool, started.run_id)
                await self.announce(resumed, "released")
            except Exception:
                log.exception("resuming %s at once failed; the scheduler's tick will", started.run_id)

    async def watch_memory(self, process: WorkerProcess, limit: int) -> int:
        """Kill the process once its resident memory passes `limit`; return what it used."""
        while True:
            await asyncio.sleep(self.settings.memory_poll_interval)
            used = process.resident_bytes()
            if used is not None and used > limit:
                process.kill()
                return used

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

    async def persist(self, write: Callable[[Any], Awaitable[T]]) -> T:
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
            await self.recover_orphans()

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

    async def recover_orphans(self) -> None:
        """Retry the runs Postgres says are EXECUTING here that this supervisor no longer runs
        (their end could not be recorded, for example when Postgres crashed)."""
        try:
            recovered = await run_store.recover_orphans(
                self.service.pool, worker_id=self.worker_id, keep=list(self.owned),
                older_than_seconds=max(5.0, 3 * self.settings.heartbeat_interval))
        except Exception:
            log.exception("checking for orphaned runs failed")
            return
        if recovered:
            log.warning("retrying %d run(s) whose end could not be recorded", len(recovered))
            await self.announce(recovered, "requeued", [self.environment.id])

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
        # The last worker of its version gone: its locked runs may go to current workers (if
        # this fails, the scheduler's sweep releases them).
        try:
            released = await deployments.unlock_orphaned(self.service.pool, self.environment.id)
            if released:
                await self.announce([], "worker", released)
        except Exception:
            log.warning("could not release the runs locked to version %s; the sweep will", self.version,
                        exc_info=True)
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
    # Starts and ends that wake nobody go to NATS together, up to 5 ms late (Bus.announce).
    service.bus.status_delay = STATUS_DELAY
    service.bus.sender = supervisor.worker_id
    await supervisor.packets.prepare()
    await supervisor.start_processes()
    signals = await service.bus.nc.subscribe(queue_signals_of(environment.id), cb=supervisor.on_signal)
    sub = await patiently(lambda: service.bus.js.subscribe(
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
    ), "subscribing to the dispatch stream")
    await supervisor.register()

    async def stop() -> None:
        await signals.unsubscribe()
        await sub.unsubscribe()
        await supervisor.shutdown()
        await supervisor.packets.close()

    service.on_shutdown.append(stop)
    service.spawn(supervisor.taker(), "taker")
    service.spawn(supervisor.finisher(), "finisher")
    service.spawn(supervisor.heartbeat(), "heartbeat")
