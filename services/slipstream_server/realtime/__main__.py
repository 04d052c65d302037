"""Entry point: `python -m slipstream_server.realtime`."""

from __future__ import annotations

import os

from slipstream_platform.service import serve_forever
from slipstream_platform.settings import RealtimeSettings

from slipstream_server.realtime.subscriptions import setup


def main() -> None:
    serve_forever("realtime", RealtimeSettings, setup, os.environ)


if __name__ == "__main__":
    main()
