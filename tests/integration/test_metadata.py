"""Metadata operations in Postgres (migration 0025) against the SDK's own view of them
(`slipstream.metadata._apply`): an attempt's `current()` is what Postgres stores."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slipstream.metadata import _apply

keys = st.sampled_from(["a", "b", "$.a.x", "$.n.m.k", "list"])
# jsonb refuses NUL (so does the SDK) and a lone surrogate (which msgspec cannot encode, nor the API decode)
texts = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=3)
values = st.one_of(st.none(), st.integers(-5, 5), texts, st.lists(st.integers(0, 3), max_size=3),
                   st.dictionaries(st.sampled_from(["x", "y"]), st.integers(0, 3), max_size=2))
ops = st.one_of(
    st.builds(lambda k, v: {"type": "set", "key": k, "value": v}, keys, values),
    st.builds(lambda k: {"type": "delete", "key": k}, keys),
    st.builds(lambda k, v: {"type": "append", "key": k, "value": v}, keys, values),
    st.builds(lambda k, v: {"type": "remove", "key": k, "value": v}, keys, values),
    st.builds(lambda k, v: {"type": "increment", "key": k, "value": v}, keys, st.integers(-3, 3)),
    st.builds(lambda k, v: {"type": "decrement", "key": k, "value": v}, keys, st.integers(-3, 3)),
    st.builds(lambda v: {"type": "update", "value": v}, st.dictionaries(st.sampled_from(["a", "z"]), values,
                                                                         max_size=2)),
    st.builds(lambda v: {"type": "replace", "value": v}, st.dictionaries(st.sampled_from(["a", "q"]), values,
                                                                          max_size=2)),
)


async def in_postgres(pool: asyncpg.Pool, doc: dict[str, Any], sequence: list[dict[str, Any]]) -> Any:
    return json.loads(await pool.fetchval("SELECT slipstream_metadata_apply($1::jsonb, $2::jsonb)::text",
                                          json.dumps(doc), json.dumps(sequence)))


@pytest.mark.parametrize(("doc", "sequence", "expected"), [
    ({}, [{"type": "set", "key": "$.a.b.c", "value": 1}], {"a": {"b": {"c": 1}}}),
    ({"a": 5}, [{"type": "set", "key": "$.a.b", "value": 1}], {"a": {"b": 1}}),
    ({"l": 1}, [{"type": "append", "key": "l", "value": 2}], {"l": [1, 2]}),
    ({"l": [1, 2, 1]}, [{"type": "remove", "key": "l", "value": 1}], {"l": [2]}),
    ({"n": "x"}, [{"type": "increment", "key": "n", "value": 2}], {"n": 2}),
    ({"a": 1, "b": 2}, [{"type": "update", "value": {"b": 3, "c": 4}}], {"a": 1, "b": 3, "c": 4}),
    ({"a": 1}, [{"type": "replace", "value": {"z": 0}}, {"type": "delete", "key": "$.z"}], {}),
])
async def test_operations(pool: asyncpg.Pool, doc: dict[str, Any], sequence: list[dict[str, Any]],
                          expected: Any) -> None:
    assert await in_postgres(pool, doc, sequence) == expected
    local = doc
    for op in sequence:
        local = _apply(local, op)
    assert local == expected


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=st.lists(ops, max_size=8))
async def test_the_sdk_sees_what_postgres_stores(pool: asyncpg.Pool, sequence: list[dict[str, Any]]) -> None:
    local: dict[str, Any] = {}
    for op in sequence:
        local = _apply(local, op)
    assert await in_postgres(pool, {}, sequence) == local
