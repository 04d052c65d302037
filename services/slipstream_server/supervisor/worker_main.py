"""Entry point of a worker process: `python -m slipstream_server.supervisor.worker_main FD MODULE`."""

from __future__ import annotations

import os
import sys

from slipstream._runtime import serve
from slipstream_platform.settings import loop_factory

if __name__ == "__main__":
    # The supervisor checked SLIPSTREAM_EVENT_LOOP when it started; its processes inherit it.
    sys.exit(serve(int(sys.argv[1]), sys.argv[2], loop_factory(os.environ.get("SLIPSTREAM_EVENT_LOOP", "uvloop"))))
