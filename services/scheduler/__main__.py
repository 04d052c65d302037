"""Entry point: `python -m scheduler`."""

from __future__ import annotations

import asyncio
import logging
import os

from slipstream_platform.service import run_service
from slipstream_platform.settings import SchedulerSettings, load_settings

from scheduler.loops import setup


def main() -> None:
    settings = load_settings(SchedulerSettings, os.environ)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s scheduler %(levelname)s %(name)s: %(message)s")
    asyncio.run(run_service("scheduler", settings, setup))


if __name__ == "__main__":
    main()
