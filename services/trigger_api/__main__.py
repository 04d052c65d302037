"""Entry point: `python -m trigger_api`."""

from __future__ import annotations

import asyncio
import logging
import os

from slipstream_platform.service import run_service
from slipstream_platform.settings import TriggerApiSettings, load_settings

from trigger_api.app import setup


def main() -> None:
    settings = load_settings(TriggerApiSettings, os.environ)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s trigger-api %(levelname)s %(name)s: %(message)s")
    asyncio.run(run_service("trigger-api", settings, setup, pool_size=20))


if __name__ == "__main__":
    main()
