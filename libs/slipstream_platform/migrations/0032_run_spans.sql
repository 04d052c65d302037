-- Run spans: with SLIPSTREAM_OTEL_EXPORTER=postgres every service (and, through its supervisor,
-- every worker process) keeps its finished spans here, so that the runs API and the dashboard
-- can show a run's trace: GET /api/v1/runs/{id}/spans reads the spans of the trace named by the
-- run's `traceparent`. `run_id` is the run a span is about (its `run` attribute, or that of its
-- parent span in the same process); spans are never written for a trace we did not start or
-- continue. Written in batches by each process, off the path of the run.

CREATE TABLE run_spans (
    trace_id        text NOT NULL,
    span_id         text NOT NULL,
    parent_span_id  text,
    run_id          text,
    name            text NOT NULL,
    service         text NOT NULL,
    started_at      timestamptz NOT NULL,
    ended_at        timestamptz NOT NULL,
    duration_ns     bigint NOT NULL,
    status          text NOT NULL,
    attributes      jsonb NOT NULL DEFAULT '{}',
    events          jsonb NOT NULL DEFAULT '[]',
    PRIMARY KEY (trace_id, span_id)
);
