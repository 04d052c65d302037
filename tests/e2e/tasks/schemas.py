"""Schema tasks: a msgspec Struct, a pydantic model, and a parser function."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
import pydantic
from slipstream import TaskContext, schema_task


class Person(msgspec.Struct):
    age: int
    dob: datetime
    name: str = "John"


@schema_task(id="typed-struct", schema=Person, description="Describe a person")
async def typed_struct(payload: Person, ctx: TaskContext) -> dict[str, Any]:
    return {"name": payload.name, "age": payload.age, "year": payload.dob.year, "type": type(payload).__name__}


class Order(pydantic.BaseModel):
    sku: str
    quantity: int = 1


@schema_task(id="typed-pydantic", schema=Order)
async def typed_pydantic(payload: Order, ctx: TaskContext) -> dict[str, Any]:
    return {"sku": payload.sku, "quantity": payload.quantity, "type": type(payload).__name__}


def even_number(data: Any) -> int:
    if not isinstance(data, int) or data % 2:
        raise ValueError(f"{data!r} is not an even number")
    return data


@schema_task(id="typed-function", schema=even_number)
def typed_function(payload: int, ctx: TaskContext) -> int:
    return payload // 2


class Invite(msgspec.Struct):
    email: str
    seats: int = 1
    role: str = "member"


@schema_task(id="dashboard-invite", schema=Invite)
async def dashboard_invite(payload: Invite, ctx: TaskContext) -> dict[str, Any]:
    """Only test_dashboard triggers it: its Test page starts from the schema's example."""
    return {"invited": payload.email, "seats": payload.seats}
