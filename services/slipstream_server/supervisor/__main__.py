"""Entry point: `python -m slipstream_server.supervisor` (or `slipstream worker --tasks MODULE`)."""

from __future__ import annotations

import os

from slipstream_platform.service import serve_forever
from slipstream_platform.settings import SupervisorSettings

from slipstream_server.supervisor.attempts import setup


def main() -> None:
    serve_forever("supervisor", SupervisorSettings, setup, os.environ)


if __name__ == "__main__":
    main()
