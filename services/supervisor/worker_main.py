"""Entry point of a worker process: `python -m supervisor.worker_main FD MODULE`."""

from __future__ import annotations

import sys

from slipstream._runtime import serve

if __name__ == "__main__":
    sys.exit(serve(int(sys.argv[1]), sys.argv[2]))
