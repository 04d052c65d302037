"""Entry point: `python -m slipstream_server.scheduler`."""

from __future__ import annotations

import os

from slipstream_platform.service import serve_forever
from slipstream_platform.settings import SchedulerSettings

from slipstream_server.scheduler.loops import setup


def main() -> None:
    serve_forever("scheduler", SchedulerSettings, setup, os.environ)


if __name__ == "__main__":
    main()
