-- Batches of more than 1,000 items, sent in chunks (the SDK streams an iterable): a batch may
-- stay open for more items (`sealed` false, status PENDING) until its last chunk seals it.
-- Each chunk's request id is kept with where its runs start, so a retried chunk returns them.

ALTER TABLE batches ADD COLUMN sealed boolean NOT NULL DEFAULT true;

CREATE TABLE batch_chunks (
    batch_id    text NOT NULL REFERENCES batches (id),
    request_id  text NOT NULL,
    first_index integer NOT NULL,
    item_count  integer NOT NULL,
    PRIMARY KEY (batch_id, request_id)
);
