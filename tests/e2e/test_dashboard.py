"""The dashboard, as a user drives it: in a real headless Chromium (Debian's chromium and
chromedriver, installed by `make browser`), and at the HTTP level for what a browser hides
(cookies, CSRF, redirects). Screenshots of each page go to the test's output folder."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from slipstream import runs, tasks

from tests.conftest import eventually
from tests.e2e.conftest import Platform
from tests.e2e.test_browser_example import _chromium

pytestmark = pytest.mark.e2e


async def test_sign_in_keeps_the_key_in_an_httponly_cookie_and_forms_need_the_csrf_token(
        platform: Platform) -> None:
    base = platform.api_url + "/dashboard"
    # unsafe: keep cookies of an IP address (127.0.0.1), as browsers do.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(base + "/runs?status=QUEUED", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"].startswith("/dashboard/login?next=")
        async with browser.post(base + "/login", data={"key": platform.key}, allow_redirects=False,
                                headers={"Origin": "https://evil.example"}) as r:
            assert r.status == 403 and "Set-Cookie" not in r.headers  # no login CSRF
        async with browser.post(base + "/login", data={"key": "sk_dev_wrong", "next": "/dashboard/runs"}) as r:
            assert r.status == 401 and "not a secret key" in await r.text()
        async with browser.post(base + "/login", data={"key": platform.key, "next": "https://evil.example/"},
                                allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/dashboard/runs"  # never another site
            cookie = r.headers["Set-Cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/dashboard" in cookie
            assert platform.key not in r.headers["Location"]
        async with browser.get(base + "/runs") as r:
            page = await r.text()
            assert r.status == 200 and "<h1>Runs</h1>" in page
            assert platform.key not in page  # the page's scripts get a public access token only
            assert 'data-token="' in page
        handle = await _trigger_delayed(platform)
        async with browser.post(f"{base}/runs/{handle}/cancel", data={"csrf": "forged"}) as r:
            assert r.status == 403 and "CSRF" in await r.text()
        async with browser.get(f"{base}/runs/{handle}?flash=Paste+your+key+at+evil.example") as r:
            page = await r.text()
            token = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
            assert "class=\"flash\"" not in page  # banners are fixed texts, never the URL's
            assert "default-src 'self'" in r.headers["Content-Security-Policy"]
        assert token is not None
        async with browser.post(f"{base}/runs/{handle}/cancel", data={"csrf": token[1]},
                                headers={"Origin": "https://evil.example"}) as r:
            assert r.status == 403  # the right token from another site is refused too
        async with browser.post(f"{base}/runs/{handle}/cancel", data={"csrf": token[1]},
                                allow_redirects=False) as r:
            assert r.status == 303
        async with browser.get(f"{base}/runs/run_does_not_exist") as r:
            assert r.status == 404 and "The API answered 404" in await r.text()
        async with browser.get(base + "/cron", params={"cron": "0 9 * * 1-5", "timezone": "Europe/Paris"}) as r:
            preview = await r.json()
        assert preview["description"] == "at 09:00 on Monday to Friday (Europe/Paris)" and len(preview["next"]) == 5
        async with browser.get(base + "/cron", params={"cron": "0 0 30 2 *"}) as r:
            assert r.status == 422 and "error" in await r.json()  # February 30th never comes


async def _trigger_delayed(platform: Platform) -> str:
    async with aiohttp.ClientSession(headers=platform.headers()) as api:
        async with api.post(platform.api_url + "/api/v1/tasks/echo/trigger",
                            json={"payload": {"later": True}, "options": {"delay": "1h"}}) as r:
            return str((await r.json())["id"])


class Browser:
    """Selenium's blocking calls, run off the event loop."""

    def __init__(self, driver: Any, base: str, shots: Path) -> None:
        self.driver = driver
        self.base = base
        self.shots = shots

    async def __call__(self, fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def open(self, path: str) -> None:
        await self(self.driver.get, self.base + path)

    async def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return await self(self.driver.find_element, By.CSS_SELECTOR, css)

    async def text(self, css: str) -> str:
        element = await self.find(css)
        return str(await self(lambda: element.text))

    async def click(self, css: str) -> None:
        element = await self.find(css)
        await self(element.click)

    async def type(self, css: str, text: str, clear: bool = True) -> None:
        element = await self.find(css)
        if clear:
            await self(element.clear)
        await self(element.send_keys, text)

    async def shot(self, name: str) -> None:
        await self(self.driver.save_screenshot, str(self.shots / f"{name}.png"))

    async def path(self) -> str:
        url = str(await self(lambda: self.driver.current_url))
        return url.removeprefix(self.base.rsplit("/dashboard", 1)[0])


@pytest.fixture
async def browser(platform: Platform, tmp_path: Path) -> AsyncIterator[Browser]:
    driver = await asyncio.to_thread(_chromium)
    await asyncio.to_thread(driver.set_window_size, 1280, 900)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    try:
        yield Browser(driver, platform.api_url + "/dashboard", shots)
    finally:
        await asyncio.to_thread(driver.quit)


async def test_the_dashboard_in_a_real_browser(browser: Browser, platform: Platform, sdk: None) -> None:
    tag = f"dash-{uuid.uuid4().hex[:8]}"
    # Sign in.
    await browser.open("/runs")
    assert (await browser.path()).startswith("/dashboard/login")
    await browser.shot("login")
    await browser.type("#key", platform.key)
    await browser.click("#sign-in")
    await eventually(lambda: _shows(browser, "h1", "Runs"), timeout=20, interval=0.1, message="not signed in")

    # A schema task that never ran: the Test page starts from an example of its schema.
    await browser.open("/test?task=dashboard-invite")
    prefilled = await browser(lambda: browser.driver.find_element("css selector", "#payload").get_property("value"))
    assert '"seats": 1' in prefilled and '"role": "member"' in prefilled and '"email": ""' in prefilled

    # Test page: trigger echo with an edited payload and a tag, land on its live run page.
    await browser.open("/test?task=echo")
    await browser.shot("test")
    await browser.type("#payload", '{"from": "the dashboard"}')
    await browser.type("input[name=tags]", tag)
    await browser.click("#trigger")
    run_path = await eventually(lambda: _path_on(browser, "/dashboard/runs/run_"), timeout=30, interval=0.1,
                                message="the trigger did not land on the run page")
    run_id = run_path.rsplit("/", 1)[1]

    async def completed() -> bool:
        return await browser.text("#run-status") == "COMPLETED"

    await eventually(completed, timeout=60, interval=0.2, message="the run page did not show COMPLETED")
    await eventually(lambda: _shows(browser, "#output", "the dashboard"), timeout=30, interval=0.2,
                     message="the output did not show")
    assert "No log lines yet." in await browser.text("#logs") or "Time" in await browser.text("#logs")
    await browser.shot("run")
    run = await runs.retrieve(run_id)
    assert run.payload == {"from": "the dashboard"} and run.tags == [tag]

    # A run's trace: its attempts' spans, its own span and the child it waited for, on one time axis.
    traced = await tasks.trigger("traced", {})
    await eventually(lambda: _status_is(traced.id, "COMPLETED"), message="the traced run completed")

    async def trace_shown() -> bool:
        await browser.open(f"/runs/{traced.id}")
        text = await browser.text("#trace")
        return all(name in text for name in ("trigger", "attempt", "run traced", "own work", "run echo"))

    await eventually(trace_shown, timeout=30, interval=0.5, message="the run page did not show the trace")
    await browser(lambda: browser.driver.execute_script("document.getElementById('trace').scrollIntoView()"))
    await browser.shot("run-trace")

    # The runs list, filtered by the tag, shows it.
    await browser.open(f"/runs?tag={tag}")
    assert run_id in await browser.text("table")
    await browser.shot("runs")
    # A run triggered while the list is open appears in it, and its status changes live.
    newer = await tasks.trigger("echo", {"n": 2}, tags=[tag])
    await eventually(lambda: _shows(browser, f'[data-run="{newer.id}"] [data-field=status]', "COMPLETED"),
                     timeout=30, interval=0.2, message="the new run did not appear COMPLETED without a reload")

    # Cancel a delayed run.
    delayed = await tasks.trigger("echo", {"later": True}, delay="1h")
    await browser.open(f"/runs/{delayed.id}")
    assert await browser.text("#run-status") == "DELAYED"
    await browser.click("#cancel")
    await eventually(lambda: _status_is(delayed.id, "CANCELED"), message="the delayed run was canceled")

    # Replay a failed run: a new run of the same task and payload.
    failed = await tasks.trigger("aborts", {"n": 1})
    await eventually(lambda: _status_is(failed.id, "FAILED"), message="the run failed")
    await browser.open(f"/runs/{failed.id}")
    assert "giving up on purpose" in await browser.text("#error")
    await browser.click("#replay")
    replayed = await eventually(lambda: _path_on(browser, "/dashboard/runs/run_", not_=failed.id), timeout=30,
                                interval=0.1, message="the replay did not land on the new run's page")
    replay_id = replayed.rsplit("/", 1)[1]
    assert replay_id != failed.id and (await runs.retrieve(replay_id)).replayed_from_run_id == failed.id

    # Create a schedule (the form previews the cron in words), then delete it.
    dedup = f"dash-{uuid.uuid4().hex[:6]}"
    await browser.open("/schedules")
    await browser.find("select[name=task] option[value=per-tenant-report]")
    await browser.click("select[name=task] option[value=per-tenant-report]")
    await browser.type("#cron", "0 9 * * 1-5")
    await browser.type("input[name=deduplication_key]", dedup)
    await eventually(lambda: _shows(browser, "#cron-preview", "Monday to Friday"), timeout=10, interval=0.2,
                     message="the cron preview did not show")
    await browser.click("#create-schedule")
    await eventually(lambda: _shows(browser, "#schedules", dedup), timeout=20, interval=0.1,
                     message="the new schedule did not show")
    await browser.shot("schedules")
    listed = await browser.find("#schedules")
    schedule_id = await browser(lambda: next(
        r.get_attribute("data-schedule") for r in listed.find_elements("css selector", "tr[data-schedule]")
        if dedup in r.text))
    # Edit it: the same schedule, a new cron.
    await browser.click(f"tr[data-schedule='{schedule_id}'] a.edit")
    await browser.type("#cron", "30 8 * * *")
    await browser.click("#create-schedule")
    await eventually(lambda: _shows(browser, f"tr[data-schedule='{schedule_id}']", "at 08:30 every day (UTC)"),
                     timeout=20, interval=0.1, message="the edit did not show")
    await browser(browser.driver.execute_script, "window.confirm = () => true;")  # the Delete button asks
    await browser.click(f"tr[data-schedule='{schedule_id}'] button.danger")

    async def deleted() -> bool:
        return not await _shows(browser, "#schedules", dedup) and await _shows(browser, "#schedules", "Task")

    await eventually(deleted, timeout=20, interval=0.1, message="the schedule was not deleted")

    # Pause a queue, then resume it.
    await browser.open("/queues")
    await browser.shot("queues")
    paused = "tr[data-queue='task/pausable'] [data-field=paused]"
    await browser.click("tr[data-queue='task/pausable'] button")
    await eventually(lambda: _shows(browser, paused, "yes"), timeout=20, interval=0.1, message="not paused")
    await browser.click("tr[data-queue='task/pausable'] button")
    await eventually(lambda: _shows(browser, paused, "no"), timeout=20, interval=0.1, message="not resumed")
    await browser.type("input[name=concurrency_limit]", "77")
    await browser.click("#save-limits")
    await eventually(lambda: _shows(browser, "main", "at most 77 runs at once"), timeout=20, interval=0.1,
                     message="the limit was not saved")
    await browser.type("input[name=concurrency_limit]", "100")
    await browser.click("#save-limits")
    await eventually(lambda: _shows(browser, "main", "at most 100 runs at once"), timeout=20, interval=0.1,
                     message="the limit was not put back")

    # Environments: the key masked, never whole on the page.
    await browser.open("/environments")
    await browser.shot("environments")
    page = await browser(lambda: browser.driver.page_source)
    assert platform.key not in page and platform.key[-4:] in page

    # A phone's width: the runs page still lays out (no horizontal scroll of the page itself).
    await browser(browser.driver.set_window_size, 390, 844)
    await browser.open("/runs")
    await browser.shot("runs-phone")
    width = await browser(browser.driver.execute_script, "return document.documentElement.scrollWidth")
    assert width <= 420


async def _path_on(browser: Browser, prefix: str, not_: str = "") -> str | None:
    path = (await browser.path()).split("?")[0]
    if path.startswith(prefix) and not (not_ and path.endswith(not_)):
        return path
    return None


async def _shows(browser: Browser, css: str, text: str) -> bool:
    try:
        return text in await browser.text(css)
    except Exception:
        return False


async def _status_is(run_id: str, status: str) -> bool:
    return (await runs.retrieve(run_id)).status == status
