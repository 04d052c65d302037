"""The CLI against the platform, as a shell user runs it: `--json` read back, errors in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from tests.e2e.conftest import Platform

pytestmark = pytest.mark.e2e


def cli(platform: Platform, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SLIPSTREAM_API_URL": platform.api_url, "SLIPSTREAM_SECRET_KEY": key or platform.key,
           "SLIPSTREAM_REALTIME_URL": platform.realtime_url}
    return subprocess.run([sys.executable, "-m", "slipstream_cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


def json_of(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_trigger_get_watch_list_logs_replay_cancel(platform: Platform) -> None:
    made = json_of(cli(platform, "trigger", "echo", "--payload", '{"name": "cli"}', "--tag", "cli", "--json"))
    run_id = made["id"]
    assert run_id.startswith("run_") and made["isCached"] is False
    watched = cli(platform, "runs", "watch", run_id)
    assert watched.returncode == 0 and f"{run_id}  COMPLETED" in watched.stdout
    run = json_of(cli(platform, "runs", "get", run_id, "--json"))
    assert run["status"] == "COMPLETED" and run["output"]["payload"] == {"name": "cli"}
    listed = json_of(cli(platform, "runs", "list", "--tag", "cli", "--limit", "5", "--json"))
    assert run_id in [r["id"] for r in listed["data"]]
    assert isinstance(json_of(cli(platform, "runs", "logs", run_id, "--json")), list)
    again = json_of(cli(platform, "runs", "replay", run_id, "--json"))["id"]
    assert again != run_id
    delayed = json_of(cli(platform, "trigger", "echo", "--delay", "1h", "--json"))["id"]
    assert json_of(cli(platform, "runs", "cancel", delayed, "--json")) == {"id": delayed}
    assert json_of(cli(platform, "runs", "get", delayed, "--json"))["status"] == "CANCELED"
    waited = cli(platform, "trigger", "echo", "--payload", "[1]", "--wait")
    assert waited.returncode == 0 and "COMPLETED" in waited.stdout and '"payload": [1]' in waited.stdout


def test_schedules_and_plain_output(platform: Platform) -> None:
    made = json_of(cli(platform, "schedules", "create", "--task", "per-tenant-report", "--cron", "*/5 * * * *",
                       "--dedup", "cli-test", "--json"))
    listed = json_of(cli(platform, "schedules", "list", "--per-page", "50", "--json"))
    assert made["id"] in [s["id"] for s in listed["data"]]
    table = cli(platform, "schedules", "list", "--per-page", "50")
    assert table.returncode == 0 and made["id"] in table.stdout
    assert json_of(cli(platform, "schedules", "delete", made["id"], "--json")) == {"id": made["id"], "deleted": True}


def test_errors_are_one_line_with_exit_code_1(platform: Platform) -> None:
    missing = cli(platform, "runs", "get", "run_doesnotexist")
    assert missing.returncode == 1 and missing.stderr.strip() == "slipstream: 404: Run not found"
    bad_key = cli(platform, "runs", "list", key="sk_dev_wrong")
    assert bad_key.returncode == 1 and "401" in bad_key.stderr and "Traceback" not in bad_key.stderr
    bad_payload = cli(platform, "trigger", "echo", "--payload", "{nope")
    assert bad_payload.returncode == 1 and bad_payload.stderr.startswith("slipstream: --payload is not JSON")
    no_id = cli(platform, "runs", "get")
    assert no_id.returncode == 1 and "needs a run id" in no_id.stderr
    version = cli(platform, "--version")
    assert version.returncode == 0 and version.stdout.startswith("slipstream ")


async def test_keys_are_shown_once_and_rotate_with_a_grace_period(platform: Platform) -> None:
    import aiohttp

    from tests.conftest import eventually

    db = ["--database-url", platform.local.database_url]
    made = cli(platform, "migrate", *db, "--bootstrap", "rotation-cli")
    assert made.returncode == 0, made.stderr
    keys = dict(line.split(": ", 1) for line in made.stdout.splitlines() if line.startswith(("DEV", "PRO")))
    old = keys["PRODUCTION"]
    assert old.startswith("sk_prod_") and "shown only once" in made.stdout
    again = cli(platform, "migrate", *db, "--bootstrap", "rotation-cli")
    assert "PRODUCTION: exists" in again.stdout and old not in again.stdout

    rotated = cli(platform, "keys", "rotate", "PRODUCTION", "--project", "rotation-cli", "--grace", "1h", *db)
    assert rotated.returncode == 0, rotated.stderr
    new = rotated.stdout.split("new PRODUCTION key: ", 1)[1].split()[0]
    assert new.startswith("sk_prod_") and new != old
    assert f"sk_prod_…{old[-4:]}" in rotated.stdout and "expires" in rotated.stdout

    async def status_with(key: str) -> int:
        async with aiohttp.ClientSession(base_url=platform.api_url) as client, \
                client.get("/api/v1/runs", headers=platform.headers(key)) as response:
            return response.status

    assert await status_with(old) == 200 and await status_with(new) == 200  # both, during the grace
    ended = cli(platform, "keys", "rotate", "PRODUCTION", "--project", "rotation-cli", "--grace", "0s", *db)
    assert ended.returncode == 0, ended.stderr

    async def refused() -> bool:  # trigger-api remembers a key for 5 s
        return await status_with(old) == 401 and await status_with(new) == 401

    await eventually(refused, timeout=20, interval=0.5, message="the rotated-out keys still worked")
    added = cli(platform, "keys", "create", "PRODUCTION", "--project", "rotation-cli", *db)
    extra = added.stdout.split("new PRODUCTION key: ", 1)[1].split()[0]
    assert await status_with(extra) == 200  # a key more; the others as they were
    listed = cli(platform, "keys", "list", "PRODUCTION", "--project", "rotation-cli", *db)
    assert listed.returncode == 0 and listed.stdout.count("expired") == 2 and old not in listed.stdout
    assert listed.stdout.count("valid") == 2
    wrong = cli(platform, "keys", "rotate", "NOWHERE", *db)
    assert wrong.returncode == 2 and "use one of DEVELOPMENT, STAGING, PRODUCTION, PREVIEW" in wrong.stderr
