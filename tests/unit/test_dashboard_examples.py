"""The Test page's example payloads from JSON Schemas (msgspec's and pydantic's)."""

from __future__ import annotations

import msgspec
import pydantic
from slipstream._schema import json_schema_for
from slipstream_server.trigger_api.dashboard.examples import example


class Address(msgspec.Struct):
    city: str
    zip: str | None = None


class Person(msgspec.Struct):
    name: str
    age: int
    address: Address
    tags: list[str] = []
    kind: str = "human"


class Order(pydantic.BaseModel):
    sku: str
    quantity: int = 1
    gift: bool = False


def test_a_msgspec_schema_gives_every_field_with_its_default() -> None:
    assert example(json_schema_for(Person)) == {
        "name": "", "age": 0, "address": {"city": "", "zip": None}, "tags": [], "kind": "human"}


def test_a_pydantic_schema_too() -> None:
    assert example(json_schema_for(Order)) == {"sku": "", "quantity": 1, "gift": False}


def test_enums_examples_and_unknown_shapes() -> None:
    assert example({"enum": ["a", "b"]}) == "a"
    assert example({"type": "string", "examples": ["x@example.com"]}) == "x@example.com"
    assert example({"type": ["null", "integer"]}) == 0
    assert example({}) is None
