"""Entry point: `python -m supervisor` (or `slipstream worker --tasks MODULE`)."""

from __future__ import annotations

import asyncio
import logging
import os

from slipstream_platform.service import run_service
from slipstream_platform.settings import SupervisorSettings, load_settings

from supervisor.attempts import setup


def main() -> None:
    settings = load_settings(SupervisorSettings, os.environ)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s supervisor %(levelname)s %(name)s: %(message)s")
    asyncio.run(run_service("supervisor", settings, setup))


if __name__ == "__main__":
    main()
