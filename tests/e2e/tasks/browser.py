"""The browser example's task, served by the test worker for tests/e2e/test_browser_example.py."""

from examples.browser.tasks import browser_progress

__all__ = ["browser_progress"]
