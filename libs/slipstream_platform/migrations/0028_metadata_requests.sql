-- Metadata requests applied, by request id: a request the SDK sends again (its answer was
-- lost) changes nothing the second time. trigger-api forgets ids after a day.

CREATE TABLE metadata_requests (
    run_id text NOT NULL,
    request_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, request_id)
);

CREATE INDEX metadata_requests_by_age ON metadata_requests (created_at);
