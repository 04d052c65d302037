"""The CLI's commands that talk to the API through the SDK (SLIPSTREAM_API_URL and
SLIPSTREAM_SECRET_KEY): trigger, runs, schedules, deploy, deployments, regions. Read commands take
`--json`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec

_encoder = msgspec.json.Encoder()


def _print_json(value: Any) -> None:
    print(_encoder.encode(value).decode())


def _payload(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"slipstream: --payload is not JSON ({exc.msg} at position {exc.pos})") from None


def _run(coro: Callable[[], Coroutine[Any, Any, None]]) -> int:
    asyncio.run(coro())
    return 0


def trigger(args: argparse.Namespace) -> int:
    from slipstream import runs, tasks

    async def go() -> None:
        options: dict[str, Any] = {}
        if args.tag:
            options["tags"] = args.tag
        if args.delay:
            options["delay"] = args.delay
        if args.idempotency_key:
            options["idempotency_key"] = args.idempotency_key
        handle = await tasks.trigger(args.task, _payload(args.payload), **options)
        if not args.wait:
            if args.json:
                _print_json({"id": handle.id, "isCached": handle.is_cached,
                             "publicAccessToken": handle.public_access_token})
            else:
                print(handle.id + (" (an existing run)" if handle.is_cached else ""))
            return
        await _watch(handle.id, args.json, runs)

    return _run(go)


async def _watch(run_id: str, as_json: bool, runs: Any) -> None:
    last = None
    async for run in runs.subscribe_to_run(run_id):
        if as_json:
            _print_json(run)
            continue
        if run.status != last:
            print(f"{run.id}  {run.status}", flush=True)
            last = run.status
        if run.is_completed:
            if run.is_success:
                print(json.dumps(run.output))
            elif run.error is not None:
                print(f"{run.error.name}: {run.error.message}", file=sys.stderr)


def runs_command(args: argparse.Namespace) -> int:
    from slipstream import runs

    async def go() -> None:
        if args.action == "list":
            page = await runs.list(status=args.status, task_identifier=args.task, tag=args.tag, period=args.period,
                                   limit=args.limit)
            if args.json:
                _print_json({"data": page.data, "next": page.next_cursor})
                return
            print(f"{'id':32} {'task':24} {'status':16} {'created':27} tags")
            for r in page.data:
                print(f"{r.id:32} {r.task_identifier[:24]:24} {r.status:16} {r.created_at.isoformat():27}"
                      f" {','.join(r.tags)}".rstrip())
            if page.has_next_page():
                print(f"(more: --after {page.next_cursor})")
            return
        if not args.run_id:
            raise SystemExit(f"slipstream: runs {args.action} needs a run id, e.g. run_01...")
        if args.action == "get":
            run = await runs.retrieve(args.run_id)
            if args.json:
                _print_json(run)
            else:
                print(f"{run.id}  {run.task_identifier}  {run.status}  attempts {run.attempt_count}")
                print(f"  created {run.created_at.isoformat()}  finished "
                      f"{run.finished_at.isoformat() if run.finished_at else '-'}")
                if run.output is not None:
                    print(f"  output: {json.dumps(run.output)}")
                if run.error is not None:
                    print(f"  error: {run.error.name}: {run.error.message}")
        elif args.action == "logs":
            lines = await runs.logs(args.run_id)
            if args.json:
                _print_json(lines)
            for line in [] if args.json else lines:
                print(f"{line.timestamp.isoformat()} attempt {line.attempt_number} {line.level} {line.message}")
        elif args.action == "cancel":
            answer = await runs.cancel(args.run_id)
            _print_json({"id": answer.id}) if args.json else print(f"canceled {answer.id}")
        elif args.action == "replay":
            answer = await runs.replay(args.run_id)
            _print_json({"id": answer.id}) if args.json else print(answer.id)
        elif args.action == "watch":
            await _watch(args.run_id, args.json, runs)

    return _run(go)


def schedules_command(args: argparse.Namespace) -> int:
    from slipstream import schedules

    async def go() -> None:
        if args.action == "list":
            page = await schedules.list(page=args.page, per_page=args.per_page)
            if args.json:
                _print_json(page)
                return
            print(f"{'id':32} {'task':24} {'cron':16} {'timezone':16} {'next run':27} active")
            for s in page.data:
                nxt = s.next_run.isoformat() if s.next_run else "-"
                print(f"{s.id:32} {s.task[:24]:24} {s.generator.expression:16} {s.timezone:16} {nxt:27}"
                      f" {'yes' if s.active else 'no'}")
        elif args.action == "create":
            if not (args.task and args.cron and args.dedup):
                raise SystemExit("slipstream: schedules create needs --task, --cron and --dedup")
            made = await schedules.create(task=args.task, cron=args.cron, deduplication_key=args.dedup,
                                          timezone=args.timezone, external_id=args.external_id)
            _print_json(made) if args.json else print(made.id)
        elif args.action == "delete":
            if not args.id:
                raise SystemExit("slipstream: schedules delete needs a schedule id")
            await schedules.delete(args.id)
            _print_json({"id": args.id, "deleted": True}) if args.json else print(f"deleted {args.id}")

    return _run(go)


def deploy_command(args: argparse.Namespace) -> int:
    import time

    from slipstream import deployments

    async def go() -> None:
        if args.module:
            made = await deployments.deploy(args.module, args.version)
        elif args.version:
            made = await deployments.promote(args.version)
        else:
            raise SystemExit("slipstream: deploy needs a task module (to register and promote its tasks) or --version")
        if not args.wait:
            _print_json(made) if args.json else print(f"{made.version} is current ({len(made.tasks)} task(s),"
                                                      f" {made.live_workers} live worker(s))")
            return
        # Live status until the new version has a worker and every other version has drained.
        deadline = time.monotonic() + args.timeout
        last = None
        while True:
            listed = await deployments.list()
            mine = next(d for d in listed if d.version == made.version)
            draining = [d for d in listed if d.status == "DRAINING"]
            state = (mine.live_workers, tuple((d.version, d.unfinished_runs, d.live_workers) for d in draining))
            if state != last:
                last = state
                if args.json:
                    _print_json({"version": mine.version, "liveWorkers": mine.live_workers,
                                 "draining": [{"version": d.version, "unfinishedRuns": d.unfinished_runs,
                                               "liveWorkers": d.live_workers} for d in draining]})
                else:
                    old = ", ".join(f"{d.version}: {d.unfinished_runs} unfinished run(s)" for d in draining)
                    print(f"{mine.version}: {mine.live_workers} live worker(s); draining: {old or 'none'}", flush=True)
            if mine.live_workers > 0 and not draining:
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"slipstream: not done after {args.timeout:.0f}s (a worker of {made.version}"
                                 " must run, and older versions finish their runs)")
            await asyncio.sleep(1.0)

    return _run(go)


def deployments_command(args: argparse.Namespace) -> int:
    from slipstream import deployments

    async def go() -> None:
        if args.action == "get":
            if not args.version:
                raise SystemExit("slipstream: deployments get needs a version")
            found = [await deployments.retrieve(args.version)]
        else:
            found = await deployments.list()
        if args.json:
            _print_json(found[0] if args.action == "get" else {"data": found})
            return
        print(f"{'version':24} {'status':9} {'workers':>7} {'unfinished':>10} {'tasks':>5} promoted")
        for d in found:
            promoted = d.promoted_at.isoformat() if d.promoted_at else "-"
            print(f"{d.version[:24]:24} {d.status:9} {d.live_workers:7} {d.unfinished_runs:10} {len(d.tasks):5}"
                  f" {promoted}")

    return _run(go)


def regions_command(args: argparse.Namespace) -> int:
    from slipstream import regions

    async def go() -> None:
        if args.action == "default":
            if not args.name:
                raise SystemExit("slipstream: regions default needs a region name, e.g. eu-1")
            changed = await regions.set_default(args.name)
            _print_json(changed) if args.json else print(f"default region: {changed.default_region}")
            return
        found = await regions.list()
        if args.json:
            _print_json({"data": found})
            return
        for r in found:
            print(f"{r.name:24} {'default' if r.is_default else '':7} {r.live_workers} live worker(s)")

    return _run(go)


def add_commands(commands: Any) -> None:
    p = commands.add_parser("trigger", help="trigger a task; --wait follows it to its end")
    p.add_argument("task")
    p.add_argument("--payload", default="null", help="JSON (default null)")
    p.add_argument("--tag", action="append", help="a tag (again for more)")
    p.add_argument("--delay", help="e.g. 10m, or an ISO time")
    p.add_argument("--idempotency-key")
    p.add_argument("--wait", action="store_true", help="print each status until the run ends, then its output")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=trigger)

    p = commands.add_parser("runs", help="list runs, or get, follow (watch), cancel, replay one, or read its logs")
    p.add_argument("action", choices=["list", "get", "logs", "cancel", "replay", "watch"])
    p.add_argument("run_id", nargs="?")
    p.add_argument("--status", action="append", help="a status (again for more)")
    p.add_argument("--task", action="append", help="a task id (again for more)")
    p.add_argument("--tag", action="append")
    p.add_argument("--period", help="created within, e.g. 1h or 7d")
    p.add_argument("--limit", type=int, default=25)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=runs_command)

    p = commands.add_parser("schedules", help="list, create or delete schedules")
    p.add_argument("action", choices=["list", "create", "delete"])
    p.add_argument("id", nargs="?")
    p.add_argument("--task")
    p.add_argument("--cron")
    p.add_argument("--dedup", help="the deduplication key (create is an upsert by it)")
    p.add_argument("--timezone", default="UTC")
    p.add_argument("--external-id")
    p.add_argument("--page", type=int, default=1)
    p.add_argument("--per-page", type=int, default=10)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=schedules_command)

    p = commands.add_parser("deploy", help="register a task module's tasks as a version and make it current;"
                                           " --wait follows the old versions' drain")
    p.add_argument("module", nargs="?", help="module (or package) with your @task functions; without it,"
                                             " --version promotes a version a worker registered")
    p.add_argument("--version", help="the version (default: a hash of the module's source, as a worker's)")
    p.add_argument("--wait", action="store_true",
                   help="print the drain's progress until a worker of the version runs and old versions are done")
    p.add_argument("--timeout", type=float, default=3600, help="seconds --wait waits at most (default 3600)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=deploy_command)

    p = commands.add_parser("deployments", help="list the environment's versions, or get one")
    p.add_argument("action", nargs="?", choices=["list", "get"], default="list")
    p.add_argument("version", nargs="?")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=deployments_command)

    p = commands.add_parser("regions", help="list the environment's regions, or set the default one")
    p.add_argument("action", nargs="?", choices=["list", "default"], default="list")
    p.add_argument("name", nargs="?")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=regions_command)
