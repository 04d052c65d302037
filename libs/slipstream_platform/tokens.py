"""Public access tokens: JWTs a browser may hold, and who may do what with a credential.

A token is signed (HS256, PyJWT) with the hash of the secret key whose request minted it (the
database keeps only hashes, migration 0033), of the environment it names in `sub`: only the
platform mints it, and when that key expires after a rotation, every token it signed is void.
Its `scopes` say what it may do; a secret key may do everything (ADR 0011).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterable

import asyncpg
import jwt
import msgspec
from jwt.algorithms import HMACAlgorithm
from jwt.api_jws import PyJWS

from slipstream_platform.http import HttpError
from slipstream_platform.store import environments
from slipstream_platform.store.environments import Environment

ALGORITHM = "HS256"
# Trigger and batch answers carry a read token for what they made (the seed's x-trigger-jwt).
HEADER = "x-slipstream-jwt"
# A read scope on its own (`read:runs`) covers every resource of its kind.
READ_KINDS = ("runs", "tags", "batch", "tasks")
_SCOPE = re.compile(r"(read|trigger):(runs|tags|batch|tasks)(?::(.{1,256}))?|read:all|write:all", re.DOTALL)
MAX_SCOPES = 100
MAX_LIFETIME = 366 * 86400


class Denied(HttpError):
    """The credential is not good (401) or does not reach this (403)."""


class Access(msgspec.Struct, frozen=True):
    """What a request may do: everything (a secret key, `scopes` None) or its token's scopes."""

    environment: Environment
    scopes: frozenset[str] | None = None
    jti: str | None = None  # set on one-shot trigger tokens
    expires_at: float = 0.0
    key: str = ""  # the hash of the secret key behind the request: it signs the tokens it is answered with

    def mint(self, scopes: list[str], lifetime: float = 3600.0) -> str:
        """A token of this environment for scopes the platform made (one hour by default): every
        trigger answer carries one, so this skips `check_scopes`."""
        issued = int(time.time())
        return _sign({"sub": self.environment.id, "pub": True, "scopes": scopes, "iat": issued,
                      "exp": issued + int(lifetime)}, self.key)

    @property
    def is_secret(self) -> bool:
        return self.scopes is None

    def require_secret(self) -> None:
        if self.scopes is not None:
            raise Denied(403, "a public access token cannot call this endpoint: it needs the secret key")

    def can_read(self, *, run_id: str | None = None, task: str | None = None, tags: Iterable[str] = (),
                 batch_id: str | None = None) -> bool:
        """Whether the token reads a run with these fields (any scope that matches one)."""
        s = self.scopes
        if s is None or "read:all" in s or "write:all" in s or "read:runs" in s:
            return True
        return ((run_id is not None and f"read:runs:{run_id}" in s)
                or (task is not None and ("read:tasks" in s or f"read:tasks:{task}" in s))
                or (batch_id is not None and ("read:batch" in s or f"read:batch:{batch_id}" in s))
                or any(f"read:tags:{t}" in s for t in tags) or (bool(tags) and "read:tags" in s))

    def require_read(self, scope: str, **fields: object) -> None:
        """403 naming `scope` unless the token reads a run with `fields`."""
        if not self.can_read(**fields):  # type: ignore[arg-type]
            raise Denied(403, f"this public access token's scopes do not include {scope}")

    def require_kind(self, kind: str, value: str) -> None:
        """403 unless the token reads every run of a tag or batch (`read:tags:<tag>`)."""
        s = self.scopes
        if s is None or "read:all" in s or "write:all" in s or "read:runs" in s:
            return
        if f"read:{kind}" not in s and f"read:{kind}:{value}" not in s:
            raise Denied(403, f"this public access token's scopes do not include read:{kind}:{value}")

    def require_trigger(self, task_id: str) -> None:
        s = self.scopes
        if s is None or "write:all" in s or "trigger:tasks" in s or f"trigger:tasks:{task_id}" in s:
            return
        raise Denied(403, f"this public access token's scopes do not include trigger:tasks:{task_id}")


def check_scopes(scopes: list[str]) -> list[str]:
    """The scopes, deduplicated in order; ValueError naming the first bad one."""
    if not scopes:
        raise ValueError("a public access token needs at least one scope, such as read:runs:<run id>")
    if len(scopes) > MAX_SCOPES:
        raise ValueError(f"a public access token has at most {MAX_SCOPES} scopes, not {len(scopes)}")
    for scope in scopes:
        m = _SCOPE.fullmatch(scope)
        if m is None or "\x00" in scope or (m.group(1) == "trigger" and m.group(2) != "tasks"):
            raise ValueError(
                f"scope {scope[:300]!r} is not one of read:runs[:<id>], read:tags[:<tag>], read:batch[:<id>],"
                " read:tasks[:<id>], trigger:tasks[:<id>], read:all, write:all")
    return list(dict.fromkeys(scopes))


def mint(environment: Environment, signing_key: str, scopes: list[str], lifetime: float, *,
         one_shot: bool = False, now: float | None = None) -> tuple[str, float]:
    """A signed token for the environment and its expiry (epoch seconds)."""
    if not 0 < lifetime <= MAX_LIFETIME:
        raise ValueError(f"a public access token lives between 1 second and {MAX_LIFETIME // 86400} days")
    issued = int(now if now is not None else time.time())
    expires = issued + max(1, int(lifetime))
    claims: dict[str, object] = {"sub": environment.id, "pub": True, "scopes": check_scopes(scopes),
                                 "iat": issued, "exp": expires}
    if one_shot:
        claims["jti"] = secrets.token_hex(12)
    return _sign(claims, signing_key), float(expires)


class _KeyedHMAC(HMACAlgorithm):
    """HS256 that prepares each key once: PyJWT checks on every call that an HMAC key is not a
    PEM, SSH, DER or JWK key, 8 of the 14 µs a token took (measured)."""

    def __init__(self) -> None:
        super().__init__(HMACAlgorithm.SHA256)
        self._prepared: dict[str | bytes, bytes] = {}

    def prepare_key(self, key: str | bytes) -> bytes:
        prepared = self._prepared.get(key)
        if prepared is None:
            if len(self._prepared) > 10_000:
                self._prepared.clear()
            prepared = self._prepared[key] = super().prepare_key(key)
        return prepared


_signer = PyJWS(algorithms=[ALGORITHM])
_signer.unregister_algorithm(ALGORITHM)
_signer.register_algorithm(ALGORITHM, _KeyedHMAC())
_claims_encoder = msgspec.json.Encoder()


def _sign(claims: dict[str, object], secret_key: str) -> str:
    """The signed JWT of the claims (PyJWS, with the claims encoded by msgspec): 6 µs, not 17."""
    return _signer.encode(_claims_encoder.encode(claims), secret_key, algorithm=ALGORITHM)


def looks_like_token(credential: str) -> bool:
    """JWTs have three dot-separated parts; secret keys have none."""
    return credential.count(".") == 2


class Credentials:
    """Secret key or token -> Access, environments remembered for a few seconds."""

    def __init__(self, pool: asyncpg.Pool, ttl: float = 5.0) -> None:
        self.pool = pool
        self.ttl = ttl
        self.by_key: dict[str, tuple[float, Environment | None]] = {}
        self.by_id: dict[str, tuple[float, tuple[Environment, list[str]] | None]] = {}

    async def environment(self, key: str) -> Environment | None:
        now = time.monotonic()
        hit = self.by_key.get(key)
        if hit and hit[0] > now:
            return hit[1]
        env = await environments.by_api_key(self.pool, key)
        if len(self.by_key) > 10_000:
            self.by_key.clear()
        self.by_key[key] = (now + self.ttl, env)
        return env

    async def signers(self, environment_id: str) -> tuple[Environment, list[str]] | None:
        """The environment with this id and the signing secrets of its valid keys, newest first."""
        now = time.monotonic()
        hit = self.by_id.get(environment_id)
        if hit and hit[0] > now:
            return hit[1]
        found = await environments.with_signers(self.pool, environment_id)
        if len(self.by_id) > 10_000:
            self.by_id.clear()
        self.by_id[environment_id] = (now + self.ttl, found)
        return found

    async def access(self, credential: str, *, in_url: bool = False) -> Access:
        """What the credential may do; Denied(401) when it is not good.

        A secret key in a URL is refused: URLs end up in logs and browser histories.
        """
        credential = credential.strip()
        if not credential:
            raise Denied(401, "Invalid or Missing API key")
        if not looks_like_token(credential):
            if in_url:
                raise Denied(401, "secret keys are not accepted in URLs: send the key in the Authorization"
                                  " header, or give the page a public access token")
            env = await self.environment(credential)
            if env is None:
                raise Denied(401, "Invalid or Missing API key")
            return Access(env, key=environments.key_hash(credential))
        try:
            unverified = jwt.decode(credential, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise Denied(401, "invalid public access token: it is not a JWT") from None
        sub = unverified.get("sub")
        found = await self.signers(sub) if isinstance(sub, str) else None
        if found is None:
            raise Denied(401, "invalid public access token: it names no environment")
        env, keys = found
        claims: dict[str, object] | None = None
        problem = "its key has expired or was rotated out"
        for key in keys:  # one or two: the current key, and an old one during a rotation's grace
            try:
                claims = jwt.decode(credential, key, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]})
                break
            except jwt.ExpiredSignatureError:
                raise Denied(401, "the public access token has expired") from None
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as exc:
                problem = str(exc)
                break
        if claims is None:
            raise Denied(401, f"invalid public access token: {problem}")
        scopes = claims.get("scopes")
        if not claims.get("pub") or not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise Denied(401, "invalid public access token: it carries no scopes")
        jti = claims.get("jti")
        expires = claims["exp"]
        assert isinstance(expires, int | float)
        return Access(env, frozenset(scopes), jti if isinstance(jti, str) else None, float(expires), key)


async def use_once(conn: asyncpg.Connection, access: Access) -> None:
    """Spend a one-shot token (inside the caller's transaction); Denied(401) if it was spent."""
    if access.jti is None:
        return
    spent = await conn.fetchval(
        "INSERT INTO spent_tokens (jti, environment_id, expires_at) VALUES ($1, $2, to_timestamp($3))"
        " ON CONFLICT DO NOTHING RETURNING true", access.jti, access.environment.id, access.expires_at)
    if not spent:
        raise Denied(401, "this trigger token has been used: it triggers once (mint it with multiple_use=True"
                          " to trigger more)")


async def forget_spent(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    """Delete spent tokens that have expired anyway; how many."""
    done = await conn.execute("DELETE FROM spent_tokens WHERE expires_at < now()")
    return int(done.split()[-1])
