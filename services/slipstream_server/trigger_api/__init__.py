"""trigger-api: the HTTP API that records runs in Postgres and announces them on JetStream."""
