"""The example's backend: serves the page and mints it a one-shot trigger token.

    SLIPSTREAM_API_URL=... SLIPSTREAM_SECRET_KEY=... SLIPSTREAM_REALTIME_URL=... \\
        python -m examples.browser.server --port 8080

The secret key stays here. The page gets a token that triggers `browser-progress` once; the
trigger's answer gives it a second token that reads that run, for the live status.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from aiohttp import web
from slipstream import auth

PAGE = Path(__file__).with_name("index.html")


def make_app() -> web.Application:
    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(PAGE)

    async def token(request: web.Request) -> web.Response:
        trigger = await auth.create_trigger_token("browser-progress", expiration_time="10m")
        return web.json_response({
            "token": trigger,
            "apiUrl": os.environ["SLIPSTREAM_API_URL"].rstrip("/"),
            "realtimeUrl": os.environ.get("SLIPSTREAM_REALTIME_URL", os.environ["SLIPSTREAM_API_URL"]).rstrip("/"),
        })

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_post("/token", token)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    web.run_app(make_app(), host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
