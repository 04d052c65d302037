"""examples/browser: the page's steps, done as its JavaScript does them, against the platform."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from examples.browser.server import make_app
from tests.conftest import eventually
from tests.e2e.conftest import Platform

pytestmark = pytest.mark.e2e
ORIGIN = "http://127.0.0.1:8080"


@pytest.fixture
async def backend(platform: Platform, sdk: None, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    monkeypatch.setenv("SLIPSTREAM_API_URL", platform.api_url)
    monkeypatch.setenv("SLIPSTREAM_REALTIME_URL", platform.realtime_url)
    runner = web.AppRunner(make_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_the_page_triggers_and_follows_a_run_with_tokens_only(backend: str) -> None:
    async with aiohttp.ClientSession() as browser:  # holds no key: only what the page is given
        async with browser.get(backend + "/") as r:
            page = await r.text()
        assert "x-slipstream-jwt" in page and "?token=" in page
        async with browser.post(backend + "/token") as r:
            given = await r.json()
        trigger_headers = {"Authorization": f"Bearer {given['token']}", "Origin": ORIGIN}
        url = f"{given['apiUrl']}/api/v1/tasks/browser-progress/trigger"
        async with browser.post(url, json={"payload": {"name": "Ada", "steps": 3, "pause": 0.05}},
                                headers=trigger_headers) as r:
            assert r.status == 200, await r.text()
            assert "X-Slipstream-Jwt" in r.headers["Access-Control-Expose-Headers"]
            run_id = (await r.json())["id"]
            read_token = r.headers["x-slipstream-jwt"]
        async with browser.post(url, json={"payload": {}}, headers=trigger_headers) as r:
            assert r.status == 401  # the page's trigger token was spent
        seen: list[dict[str, Any]] = []
        ws_url = f"{given['realtimeUrl']}/realtime/v1/runs/{run_id}?token={read_token}"
        async with browser.ws_connect(ws_url, headers={"Origin": ORIGIN}) as ws:
            async for message in ws:
                seen.append(message.json()["run"])
    assert seen[-1]["status"] == "COMPLETED"
    assert seen[-1]["output"] == {"steps": 3, "greeting": "Hello Ada"}
    assert seen[-1]["metadata"]["progress"] == 1.0 and seen[-1]["metadata"]["step"] == "step 3 of 3"
    assert any(run["status"] == "EXECUTING" for run in seen)


def _chromium() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


async def test_the_page_works_in_a_real_browser(backend: str) -> None:
    """Headless Chromium (make browser) loads the page, clicks Run, and sees the run finish live."""
    from selenium.webdriver.common.by import By

    driver = await asyncio.to_thread(_chromium)
    try:
        await asyncio.to_thread(driver.get, backend + "/")
        await asyncio.to_thread(lambda: driver.find_element(By.ID, "run").click())

        async def finished() -> str | None:
            status = await asyncio.to_thread(lambda: driver.find_element(By.ID, "status").text)
            return status if status == "COMPLETED" else None

        await eventually(finished, timeout=60, interval=0.2, message="the page did not show COMPLETED")
        log = await asyncio.to_thread(lambda: driver.find_element(By.ID, "log").text)
        progress = await asyncio.to_thread(
            lambda: driver.find_element(By.ID, "progress").get_property("value"))
        step = await asyncio.to_thread(lambda: driver.find_element(By.ID, "step").text)
    finally:
        await asyncio.to_thread(driver.quit)
    assert "triggered run_" in log and '"greeting":"Hello Ada"' in log, log
    assert progress == 1 and step == "step 5 of 5"
