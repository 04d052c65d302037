"""Entry point: `python -m queue_manager`."""

from __future__ import annotations

import asyncio
import logging
import os

from slipstream_platform.service import run_service
from slipstream_platform.settings import QueueManagerSettings, load_settings

from queue_manager.dispatch import setup


def main() -> None:
    settings = load_settings(QueueManagerSettings, os.environ)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s queue-manager %(levelname)s %(name)s: %(message)s")
    asyncio.run(run_service("queue-manager", settings, setup))


if __name__ == "__main__":
    main()
