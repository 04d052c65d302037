"""Entry point: `python -m slipstream_server.queue_manager`."""

from __future__ import annotations

import os

from slipstream_platform.service import serve_forever
from slipstream_platform.settings import QueueManagerSettings

from slipstream_server.queue_manager.wakeups import setup


def main() -> None:
    serve_forever("queue-manager", QueueManagerSettings, setup, os.environ)


if __name__ == "__main__":
    main()
