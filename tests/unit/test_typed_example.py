"""`mypy --strict` accepts examples/typed.py, whose `assert_type`s pin what the SDK's types say."""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_strict_checks_the_typed_example(monkeypatch: pytest.MonkeyPatch) -> None:
    # The editable install is an import hook mypy does not follow: point it at the sources.
    monkeypatch.setenv("MYPYPATH", f"{ROOT / 'libs'}:{ROOT / 'proto'}")
    out, err, status = api.run(["--strict", "--no-incremental", "--follow-imports=silent",
                                str(ROOT / "examples" / "typed.py")])
    assert status == 0, out + err
