"""Scopes of public access tokens: what each one reaches, and the SDK's spelling of them."""

from __future__ import annotations

import jwt
import pytest
from slipstream.auth import scope_strings
from slipstream.errors import TokenScopeError
from slipstream_platform.store.environments import Environment
from slipstream_platform.tokens import Access, Denied, check_scopes, mint

ENV = Environment(id="env_1", project_id="proj_1", type="DEVELOPMENT", concurrency_limit=10)


def access(*scopes: str) -> Access:
    return Access(ENV, frozenset(scopes))


def test_the_seed_shape_becomes_scope_strings() -> None:
    assert scope_strings({"read": {"runs": ["run_1", "run_2"], "tags": "t", "batch": True, "tasks": False}}) == [
        "read:runs:run_1", "read:runs:run_2", "read:tags:t", "read:batch"]
    assert scope_strings({"read": True, "write": True}) == ["read:all", "write:all"]
    assert scope_strings({"trigger": {"tasks": ["a"]}}) == ["trigger:tasks:a"]
    assert scope_strings(["read:runs:x"]) == ["read:runs:x"] and scope_strings("read:all") == ["read:all"]
    with pytest.raises(TokenScopeError, match="no kind 'runs'"):
        scope_strings({"trigger": {"runs": ["x"]}})
    with pytest.raises(TokenScopeError, match="scopes\\['admin'\\]"):
        scope_strings({"admin": {"runs": True}})


def test_scopes_are_checked_and_deduplicated() -> None:
    assert check_scopes(["read:runs:a", "read:runs:a", "read:all"]) == ["read:runs:a", "read:all"]
    for bad in ("read", "read:runs:", "write:runs:a", "trigger:runs:a", "read:tags:" + "x" * 257, "read:all:x"):
        with pytest.raises(ValueError, match="is not one of"):
            check_scopes([bad])
    with pytest.raises(ValueError, match="at most 100"):
        check_scopes([f"read:runs:{i}" for i in range(101)])


def test_each_scope_reads_what_it_names_and_nothing_else() -> None:
    run = {"run_id": "run_1", "task": "email", "tags": ["t1"], "batch_id": "batch_1"}
    for scope in ("read:runs:run_1", "read:tasks:email", "read:tags:t1", "read:batch:batch_1", "read:runs",
                  "read:tasks", "read:batch", "read:all", "write:all"):
        assert access(scope).can_read(**run), scope  # type: ignore[arg-type]
    for scope in ("read:runs:run_2", "read:tasks:sms", "read:tags:t2", "read:batch:batch_2", "trigger:tasks:email"):
        assert not access(scope).can_read(**run), scope  # type: ignore[arg-type]
    assert Access(ENV).can_read(run_id="anything")  # a secret key
    with pytest.raises(Denied, match="read:tags:t2"):
        access("read:tags:t1").require_kind("tags", "t2")
    access("read:tags:t1").require_kind("tags", "t1")
    with pytest.raises(Denied, match="trigger:tasks:sms") as denied:
        access("trigger:tasks:email", "read:all").require_trigger("sms")
    assert denied.value.status == 403
    access("trigger:tasks").require_trigger("sms")
    access("write:all").require_trigger("sms")
    with pytest.raises(Denied, match="needs the secret key"):
        access("read:all").require_secret()


def test_minted_tokens_carry_the_environment_scopes_and_expiry() -> None:
    token, expires = mint(ENV, "sk_dev_" + "k" * 32, ["read:runs:run_1"], 60, one_shot=True, now=1_000_000)
    claims = jwt.decode(token, "sk_dev_" + "k" * 32, algorithms=["HS256"], options={"verify_exp": False})
    assert claims["sub"] == "env_1" and claims["scopes"] == ["read:runs:run_1"] and claims["pub"] is True
    assert claims["exp"] == expires == 1_000_060 and len(claims["jti"]) == 24
    with pytest.raises(ValueError, match="between 1 second"):
        mint(ENV, "k", ["read:all"], 400 * 86400)
