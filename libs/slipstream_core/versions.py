"""The version a worker registers under when `worker --version` is not given: a hash of its
task module's source, so that changed task code is a new version and the same code is the same;
and the forms of versions and region names."""

from __future__ import annotations

import hashlib
import importlib.util
import re
from pathlib import Path

VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
# A region a worker serves (`worker --region`) and a trigger names (`region`), e.g. eu-central-1.
REGION = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def code_version(module: str) -> str:
    """`code-` and 12 hex digits of the SHA-256 of the module's source files (every .py file of
    a package, by relative path), found without importing it; `unknown` if it cannot be found."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return "unknown"
    origin = Path(spec.origin)
    root = origin.parent if spec.submodule_search_locations else None
    files = sorted(root.rglob("*.py")) if root is not None else [origin]
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root) if root is not None else path.name).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return "code-" + digest.hexdigest()[:12]
