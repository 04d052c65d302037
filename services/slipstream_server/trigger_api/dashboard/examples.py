"""An example payload from a JSON Schema, for the Test page of a schema task with no runs yet."""

from __future__ import annotations

from typing import Any

_PLAIN: dict[str, Any] = {"string": "", "integer": 0, "number": 0, "boolean": False, "array": [], "null": None}


def example(schema: dict[str, Any], root: dict[str, Any] | None = None, depth: int = 0) -> Any:
    """A value for the schema, preferring its default, examples, const and enum; every property
    of an object, so that the form shows what may be given. `$ref`s into `$defs` are followed."""
    root = root if root is not None else schema
    if depth > 8:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return example(target, root, depth + 1)
    for key in ("default", "const"):
        if key in schema:
            return schema[key]
    if schema.get("examples"):
        return schema["examples"][0]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return example(options[0], root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        properties: dict[str, Any] = schema.get("properties", {})
        return {name: example(value, root, depth + 1) for name, value in properties.items()}
    if kind == "array" and isinstance(schema.get("items"), dict) and schema.get("minItems", 0) > 0:
        return [example(schema["items"], root, depth + 1)]
    return _PLAIN.get(str(kind), None)
