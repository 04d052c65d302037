"""The version a worker registers under by default: a hash of its task code."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from slipstream_core.versions import VERSION, code_version


def test_the_default_version_follows_the_task_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    package = tmp_path / "vtasks"
    package.mkdir()
    (package / "__init__.py").write_text("from vtasks.jobs import *\n")
    (package / "jobs.py").write_text("def a():\n    return 1\n")
    (tmp_path / "vsingle.py").write_text("x = 1\n")
    first = code_version("vtasks")
    assert VERSION.match(first) and first.startswith("code-") and first == code_version("vtasks")
    (package / "jobs.py").write_text("def a():\n    return 2\n")
    assert code_version("vtasks") != first
    single = code_version("vsingle")
    (tmp_path / "vsingle.py").write_text("x = 2\n")
    assert code_version("vsingle") != single
    assert code_version("no_such_module_here") == "unknown"
    assert "vtasks" not in sys.modules  # found, not imported


@pytest.mark.parametrize("text", ["", "-x", "a b", "v" * 65, "v1/2"])
def test_a_version_that_is_not_one_is_refused(text: str) -> None:
    assert not VERSION.match(text)


@pytest.mark.parametrize("text", ["1", "v1.2.3", "20261202.1", "code-abc", "2026_12+build"])
def test_versions_users_write_are_accepted(text: str) -> None:
    assert VERSION.match(text)
