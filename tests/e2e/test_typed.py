"""Typed payloads and outputs at run time: Structs and pydantic models there and back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from slipstream import runs, sync, tasks

from examples.typed import Order, Receipt, charge, checkout
from tests.conftest import eventually
from tests.e2e.tasks.typed_tasks import Invoice, Paid, invoice_parent, pay_invoice

pytestmark = pytest.mark.e2e


async def finished(handle: Any) -> Any:
    async def probe() -> Any:
        run = await runs.retrieve(handle)
        return run if run.is_completed else None

    return await eventually(probe, timeout=30)


async def test_structs_go_out_encoded_and_come_back_decoded(sdk: None) -> None:
    run = await finished(await charge.trigger(Order(id="o1", amount_cents=500)))
    assert run.status == "COMPLETED" and run.output == Receipt(order_id="o1", charged_cents=500)
    assert run.payload == {"id": "o1", "amount_cents": 500}  # the wire form: JSON
    parent = await finished(await checkout.trigger(Order(id="o2", amount_cents=700)))
    assert parent.output == 700  # the child's Receipt was unwrapped as a Receipt in the parent
    by_id = await runs.retrieve(parent.id)  # by id: no task to decode with, plain JSON
    assert by_id.output == 700
    handle = await asyncio.to_thread(charge.trigger_sync, Order(id="o3", amount_cents=1))
    await finished(handle)
    assert (await asyncio.to_thread(sync.runs.retrieve, handle)).output == Receipt(order_id="o3", charged_cents=1)


async def test_pydantic_models_too(sdk: None) -> None:
    run = await finished(await pay_invoice.trigger(Invoice(number="X", total=3.0)))
    assert isinstance(run.output, Paid) and run.output.paid
    parent = await finished(await invoice_parent.trigger({}))
    assert parent.output == {"type": "Paid", "paid": True, "batch": ["Paid"], "by_task": ["Paid", "Receipt"]}


async def test_a_payload_that_does_not_decode_fails_without_retry(sdk: None) -> None:
    run = await finished(await tasks.trigger("charge-order", {"id": 1}))
    assert run.status == "FAILED" and run.attempt_count == 1
    assert run.error.name == "TaskPayloadParsedError" and "payload type" in run.error.message
    assert "$.id" in run.error.message
