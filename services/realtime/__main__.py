"""Entry point: `python -m realtime`."""

from __future__ import annotations

import asyncio
import logging
import os

from slipstream_platform.service import run_service
from slipstream_platform.settings import RealtimeSettings, load_settings

from realtime.subscriptions import setup


def main() -> None:
    settings = load_settings(RealtimeSettings, os.environ)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s realtime %(levelname)s %(name)s: %(message)s")
    asyncio.run(run_service("realtime", settings, setup))


if __name__ == "__main__":
    main()
