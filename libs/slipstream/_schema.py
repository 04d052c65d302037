"""Payload schemas for `schema_task`: msgspec Structs, pydantic models, or any parser function."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from slipstream.errors import TaskOptionError


def parser_for(task_id: str, schema: Any) -> Callable[[Any], Any]:
    """A function that turns a JSON payload into the run's payload, raising the schema's own error."""
    if isinstance(schema, type) and issubclass(schema, msgspec.Struct):
        def parse_struct(data: Any) -> Any:
            # Not strict: "30" becomes 30 and an ISO string a datetime, as coercing schemas do.
            return msgspec.convert(data, schema, strict=False)

        return parse_struct
    validate = getattr(schema, "model_validate", None)
    if callable(validate):  # a pydantic model
        return validate  # type: ignore[no-any-return]
    if callable(schema):
        return schema  # type: ignore[no-any-return]
    raise TaskOptionError(
        f"task {task_id!r}: schema must be a msgspec.Struct type, a pydantic model or a function"
        f" that parses the payload, not {schema!r}"
    )


def json_schema_for(schema: Any) -> dict[str, Any]:
    """The JSON Schema of a schema's input, for tool definitions."""
    if isinstance(schema, type) and issubclass(schema, msgspec.Struct):
        return msgspec.json.schema(schema)
    model_schema = getattr(schema, "model_json_schema", None)
    if callable(model_schema):
        return model_schema()  # type: ignore[no-any-return]
    declared = getattr(schema, "json_schema", None)
    if isinstance(declared, dict):
        return declared
    return {"type": "object"}
