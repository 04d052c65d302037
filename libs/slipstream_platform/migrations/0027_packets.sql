-- Large payloads and outputs (ADR 0012): over 512 KB they are stored in the JetStream Object
-- Store and the run keeps the object's name here, with SQL NULL in `payload` / `output`.

ALTER TABLE runs ADD COLUMN payload_packet text, ADD COLUMN output_packet text;
