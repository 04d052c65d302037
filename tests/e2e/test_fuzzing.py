"""The HTTP API under schemathesis (a client we did not write), driven by /openapi.json: no 5xx,
every error a JSON {"error"}, no schema-valid request rejected and no schema-violating request
accepted (tests/e2e/schemathesis.toml says which answers count as a refusal by rule). `make test`
runs it with 15 examples per operation and a fixed seed; `make fuzz` with 200 and a new seed
each time (SLIPSTREAM_FUZZ_EXAMPLES, SLIPSTREAM_FUZZ_SEED). The full report is in the test's
output folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Platform

pytestmark = pytest.mark.e2e


def test_schemathesis_finds_nothing(platform: Platform, tmp_path: Path) -> None:
    # A project of its own: what the fuzzer changes (limits, pauses, schedules) touches no other test.
    key = platform.local.bootstrap("fuzzing")["DEVELOPMENT"]
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert cli is not None, "schemathesis is in the test extra: make install"
    examples = os.environ.get("SLIPSTREAM_FUZZ_EXAMPLES", "15")
    done = subprocess.run(
        [cli, "--config-file", str(Path(__file__).with_name("schemathesis.toml")), "run",
         f"{platform.api_url}/openapi.json", "--url", platform.api_url,
         "-H", f"Authorization: Bearer {key}", "--checks", "all", "--max-examples", examples,
         "--phases", "examples,coverage,fuzzing", "--seed", os.environ.get("SLIPSTREAM_FUZZ_SEED", "1"),
         "--generation-database", "none",
         "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=1200, check=False, cwd=tmp_path,
        env={**os.environ, "NO_COLOR": "1"})
    (tmp_path / "schemathesis.txt").write_text(done.stdout + done.stderr)
    report = done.stdout[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
