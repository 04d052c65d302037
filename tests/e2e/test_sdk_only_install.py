"""`pip install slipstream` alone, in a fresh venv: the SDK without the platform's dependencies,
triggering and reading a run of the test platform, async and sync."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.e2e.conftest import Platform

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
SERVER_ONLY = {"asyncpg", "nats-py", "opentelemetry-sdk", "opentelemetry-api", "pyjwt", "uvloop"}

SCRIPT = textwrap.dedent('''
    import asyncio, json, sys
    import slipstream
    from slipstream import runs, tasks
    from slipstream import sync

    async def main():
        slipstream.configure(api_url=sys.argv[1], secret_key=sys.argv[2], realtime_url=sys.argv[3])
        handle = await tasks.trigger("echo", {"from": "sdk-only"})
        statuses = [run.status async for run in runs.subscribe_to_run(handle.id)]
        return handle.id, statuses

    run_id, statuses = asyncio.run(main())
    again = sync.tasks.trigger("echo", {"from": "sync"})
    print(json.dumps({"run": run_id, "statuses": statuses, "output": sync.runs.retrieve(run_id).output,
                      "sync": again.id}))
''')


@pytest.fixture(scope="module")
def sdk_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sdk-only")
    source = folder / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("libs", "proto", "services"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(source)], check=True,
                   timeout=600)
    return venv


def test_the_sdk_alone_triggers_and_follows_a_run(sdk_venv: Path, platform: Platform) -> None:
    listed = subprocess.run([str(sdk_venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
                            capture_output=True, text=True, check=True)
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "slipstream" in installed and "msgspec" in installed
    assert not installed & SERVER_ONLY, installed & SERVER_ONLY
    out = subprocess.run([str(sdk_venv / "bin" / "python"), "-c", SCRIPT, platform.api_url, platform.key,
                          platform.realtime_url], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["statuses"][-1] == "COMPLETED" and got["output"]["payload"] == {"from": "sdk-only"}
    assert got["sync"].startswith("run_")
    # The platform's commands say what to install instead of failing with a traceback.
    dev = subprocess.run([str(sdk_venv / "bin" / "slipstream"), "dev", "--tasks", "x"], capture_output=True,
                         text=True, timeout=60, check=False)
    assert dev.returncode == 1 and "pip install 'slipstream[server,embedded]'" in dev.stderr
    assert "Traceback" not in dev.stderr
