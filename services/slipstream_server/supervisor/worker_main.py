"""Entry point of a worker process: `python -m slipstream_server.supervisor.worker_main FD MODULE`."""

from __future__ import annotations

import os
import sys

from slipstream._runtime import send_spans, serve
from slipstream_platform import telemetry
from slipstream_platform.settings import loop_factory

if __name__ == "__main__":
    # The supervisor checked SLIPSTREAM_EVENT_LOOP and the exporter when it started; its processes inherit them.
    # Spans for the postgres exporter go to the supervisor, which stores them.
    telemetry.setup("worker", os.environ.get("SLIPSTREAM_OTEL_EXPORTER", "none"), on_spans=send_spans)
    try:
        code = serve(int(sys.argv[1]), sys.argv[2], loop_factory(os.environ.get("SLIPSTREAM_EVENT_LOOP", "uvloop")))
    finally:
        telemetry.shutdown()
    sys.exit(code)
