"""Entry point: `python -m slipstream_server.trigger_api`."""

from __future__ import annotations

import os

from slipstream_platform.service import serve_forever
from slipstream_platform.settings import TriggerApiSettings

from slipstream_server.trigger_api.app import setup


def main() -> None:
    serve_forever("trigger-api", TriggerApiSettings, setup, os.environ, pool_size=20)


if __name__ == "__main__":
    main()
