-- One-shot trigger tokens that have triggered once (ADR 0011). A row lives until the token
-- would have expired anyway; trigger-api deletes it after that.

CREATE TABLE spent_tokens (
    jti text PRIMARY KEY,
    environment_id text NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL
);

CREATE INDEX spent_tokens_by_expiry ON spent_tokens (expires_at);
