"""Schema tasks: client-side validation, worker-side parsing, different input and output types."""

from __future__ import annotations

import aiohttp
import msgspec
import pydantic
import pytest
from slipstream import tasks

from tests.e2e.tasks.schemas import typed_function, typed_pydantic, typed_struct
from tests.e2e.test_runs import finished, trigger

pytestmark = pytest.mark.e2e


async def test_a_struct_schema_coerces_and_fills_defaults(sdk: None, http: aiohttp.ClientSession) -> None:
    handle = await typed_struct.trigger({"age": "30", "dob": "2020-01-01T00:00:00Z"})
    run = await finished(http, handle.id)
    assert run["status"] == "COMPLETED"
    assert run["output"] == {"name": "John", "age": 30, "year": 2020, "type": "Person"}
    # The run keeps the payload as it was triggered.
    assert run["payload"] == {"age": "30", "dob": "2020-01-01T00:00:00Z"}


async def test_the_task_handle_validates_before_any_run_exists(sdk: None) -> None:
    with pytest.raises(msgspec.ValidationError):
        await typed_struct.trigger({"dob": "2020-01-01"})
    with pytest.raises(pydantic.ValidationError):
        await typed_pydantic.trigger({"quantity": 2})
    with pytest.raises(ValueError, match="not an even number"):
        await typed_function.trigger(3)


async def test_triggering_by_id_fails_the_run_without_retrying(sdk: None, http: aiohttp.ClientSession) -> None:
    handle = await tasks.trigger("typed-pydantic", {"quantity": "many"})
    run = await finished(http, handle.id)
    assert run["status"] == "FAILED" and run["attemptCount"] == 1
    assert run["error"]["name"] == "TaskPayloadParsedError"
    assert "sku" in run["error"]["message"]


async def test_pydantic_and_function_schemas_run(http: aiohttp.ClientSession) -> None:
    run = await finished(http, await trigger(http, "typed-pydantic", {"payload": {"sku": "A1"}}))
    assert run["output"] == {"sku": "A1", "quantity": 1, "type": "Order"}
    half = await finished(http, await trigger(http, "typed-function", {"payload": 42}))
    assert half["output"] == 21


async def test_a_schema_task_as_an_llm_tool(sdk: None) -> None:
    tool = typed_struct.to_tool()
    assert tool["type"] == "function" and tool["function"]["name"] == "typed-struct"
    assert tool["function"]["description"] == "Describe a person"
    schema = tool["function"]["parameters"]
    person = schema["$defs"]["Person"]
    assert set(person["required"]) == {"age", "dob"} and "name" in person["properties"]
    assert typed_pydantic.to_tool()["function"]["parameters"]["required"] == ["sku"]
    output = await typed_struct.run_tool('{"age": 41, "dob": "1985-06-01T00:00:00Z", "name": "Ada"}')
    assert output == {"name": "Ada", "age": 41, "year": 1985, "type": "Person"}
