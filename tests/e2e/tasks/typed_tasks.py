"""Typed tasks for tests/e2e/test_typed.py: examples/typed.py (msgspec Structs) and a pydantic pair."""

from __future__ import annotations

from typing import Any

import pydantic
import slipstream.batch
from slipstream import TaskContext, task

from examples.typed import charge, checkout


class Invoice(pydantic.BaseModel):
    number: str
    total: float


class Paid(pydantic.BaseModel):
    number: str
    paid: bool


@task(id="pay-invoice")
async def pay_invoice(invoice: Invoice, ctx: TaskContext) -> Paid:
    return Paid(number=invoice.number, paid=invoice.total > 0)


@task(id="invoice-parent")
async def invoice_parent(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    paid = (await pay_invoice.trigger_and_wait(Invoice(number="A1", total=9.5))).unwrap()
    batch = await pay_invoice.batch_trigger_and_wait([{"payload": Invoice(number="B2", total=0)}])
    # Several tasks in one batch: each result decoded into its own task's type.
    mixed = await slipstream.batch.trigger_by_task_and_wait([
        {"task": pay_invoice, "payload": Invoice(number="C3", total=1)},
        {"task": charge, "payload": {"id": "o9", "amount_cents": 5}},
    ])
    return {"type": type(paid).__name__, "paid": paid.paid, "batch": [type(r.output).__name__ for r in batch.runs],
            "by_task": [type(r.output).__name__ for r in mixed.runs]}


__all__ = ["charge", "checkout", "invoice_parent", "pay_invoice"]
