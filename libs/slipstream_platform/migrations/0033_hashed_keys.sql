-- Secret keys are kept as SHA-256 hashes, never as the keys themselves: a key is shown once,
-- when it is made (`slipstream migrate --bootstrap`, `slipstream keys rotate`), and a copy of
-- the database gives nobody a key. `display` keeps its prefix and last four characters to tell
-- keys apart. An environment may have several keys: rotating one gives the old ones an
-- `expires_at` (the grace period) instead of deleting them, so clients move over without
-- downtime. Public access tokens are signed with the hash of the key whose request minted them
-- (the key itself is no longer at hand), so they die with that key. Tokens signed before this
-- migration (with the raw key) are void.

CREATE TABLE api_keys (
    key_hash        text PRIMARY KEY,
    environment_id  text NOT NULL REFERENCES environments (id),
    display         text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at      timestamptz
);
CREATE INDEX api_keys_by_environment ON api_keys (environment_id, created_at DESC);

INSERT INTO api_keys (key_hash, environment_id, display, created_at)
SELECT encode(sha256(convert_to(api_key, 'UTF8')), 'hex'), id,
       substring(api_key FROM '^sk_[a-z]+_') || '…' || right(api_key, 4), created_at
FROM environments;

ALTER TABLE environments DROP COLUMN api_key;
