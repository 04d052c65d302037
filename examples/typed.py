"""Typed tasks: the payload and the output are msgspec Structs (pydantic models work the same),
and their types carry to triggers, handles and results. `mypy --strict` checks this file
(tests/unit/test_typed_example.py)."""

from __future__ import annotations

from typing import assert_type

import msgspec
from slipstream import RunHandle, TaskContext, TaskRunResult, runs, task


class Order(msgspec.Struct):
    id: str
    amount_cents: int


class Receipt(msgspec.Struct):
    order_id: str
    charged_cents: int


@task(id="charge-order")
async def charge(order: Order, ctx: TaskContext) -> Receipt:
    # The payload arrives as an Order (decoded from JSON); the Receipt is encoded on the way out.
    return Receipt(order_id=order.id, charged_cents=order.amount_cents)


@task(id="checkout")
async def checkout(order: Order, ctx: TaskContext) -> int:
    result = await charge.trigger_and_wait(order)
    assert_type(result, TaskRunResult[Receipt])
    receipt = result.unwrap()  # a Receipt, not a dict
    assert_type(receipt, Receipt)
    return receipt.charged_cents


async def place(order: Order) -> Receipt | None:
    """From a backend: trigger, then read the run with its output typed."""
    handle = await charge.trigger(order)
    assert_type(handle, RunHandle[Receipt])
    run = await runs.retrieve(handle)
    return run.output
