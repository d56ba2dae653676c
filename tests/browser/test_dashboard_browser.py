"""The dashboard in a real headless Chromium (Debian `chromium` and
`chromium-driver`, driven by Selenium): a workflow seen progressing live,
one cancelled from its page, the list updating by itself. Screenshots go to
test-artifacts/ at the repository's root.

Run by `make pytest-browser` (which installs the browser when missing); a
plain `pytest` run skips these tests when no Chromium is installed, the
browser lane (MULTIAGENTS_TEST_BROWSER=1) fails instead.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from integration.helpers import make_config, serving
from multiagents import Client, WorkflowBuilder, worker
from multiagents_server.app import Server
from multiagents_server.embedded_redis import EmbeddedRedis, free_port

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
# How long the page may take to show a change (it normally takes < 1 s).
SEEN_WITHIN_S = 15

if not (CHROMIUM and CHROMEDRIVER):
    reason = "needs the chromium and chromium-driver packages (make browser-deps)"
    if os.environ.get("MULTIAGENTS_TEST_BROWSER") == "1":
        raise RuntimeError(f"the browser lane {reason}")
    pytest.skip(reason, allow_module_level=True)


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    options = Options()
    options.binary_location = CHROMIUM or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1440,1100"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
async def dashboard_server(redis_server: EmbeddedRedis) -> AsyncIterator[Server]:
    async with Server(make_config(redis_server.url, dashboard_port=free_port())) as server:
        yield server


async def until(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    """Wait (in a thread: the server runs in this event loop) for `condition`."""
    wait = WebDriverWait(driver, SEEN_WITHIN_S, poll_frequency=0.1)
    return await asyncio.to_thread(wait.until, condition, f"the page did not show {what}")


def step_status(step: str) -> Callable[[WebDriver], str]:
    # Read in one script: the live fragment may be replaced between two calls.
    script = f'return document.querySelector(\'.g-box[data-step="{step}"]\')?.dataset.status || ""'
    return lambda driver: str(driver.execute_script(script))


def shows(read: Callable[[WebDriver], str], expected: str) -> Callable[[WebDriver], bool]:
    return lambda driver: read(driver) == expected


def state(driver: WebDriver) -> str:
    return str(driver.execute_script('return document.getElementById("state")?.textContent || ""'))


def has_row(tx: str) -> Callable[[WebDriver], bool]:
    script = f"return document.querySelector('tr[data-tx=\"{tx}\"]') !== null"
    return lambda driver: bool(driver.execute_script(script))


async def screenshot(driver: WebDriver, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    driver.execute_script("window.scrollTo(0, 0)")
    assert await asyncio.to_thread(driver.save_screenshot, str(ARTIFACTS / name))


async def test_an_execution_progresses_live_and_one_is_cancelled_from_its_page(
    browser: WebDriver, dashboard_server: Server, uid: str
) -> None:
    # The browser starts first: its start blocks this thread (and the event
    # loop a running server would need).
    server = dashboard_server
    assert server.dashboard is not None
    base = server.dashboard.url.rstrip("/")
    gates = {"fetch": asyncio.Event(), "summarise": asyncio.Event()}

    @worker(f"{uid}_fetch")
    async def fetch(ctx: dict[str, Any]) -> dict[str, Any]:
        await gates["fetch"].wait()
        lines = [f"line {i}: revenue, costs and outlook" for i in range(120)]
        return {"document": {"pages": 12, "title": "Quarterly report", "lines": lines}}

    @worker(f"{uid}_summarise")
    async def summarise(ctx: dict[str, Any]) -> dict[str, Any]:
        await gates["summarise"].wait()
        return {"summary": "Revenue up 12 %"}

    @worker(f"{uid}_hang")
    async def hang(ctx: dict[str, Any]) -> dict[str, Any]:
        await asyncio.Event().wait()  # until cancelled
        return {}

    @worker(f"{uid}_undo")
    async def undo(ctx: dict[str, Any]) -> dict[str, Any]:
        return {}

    report = (
        WorkflowBuilder(f"{uid}-report")
        .add_step("fetch", fetch.name, undo.name)
        .add_step("summarise", summarise.name)
        .build()
    )
    stuck = (
        WorkflowBuilder(f"{uid}-stuck")
        .add_step("prepare", fetch.name, undo.name)
        .add_step("wait", hang.name)
        .build()
    )
    async with serving(server, fetch, summarise, hang, undo), Client(server.address) as client:
        await client.register_workflow(report)
        await client.register_workflow(stuck)
        tx = await client.execute_workflow(report.name, {"doc": "q3.pdf"}, correlation_id=uid)

        # 1. The execution page shows the first step running...
        await asyncio.to_thread(browser.get, f"{base}/executions/{tx}")
        await until(browser, shows(step_status("fetch"), "running"), "fetch running")
        browser.execute_script("window.loadedOnce = true")
        # ...then, without a reload, each step completing as it happens.
        gates["fetch"].set()
        await until(browser, shows(step_status("fetch"), "completed"), "fetch completed")
        await until(browser, shows(step_status("summarise"), "running"), "summarise running")
        # The context is cut; "Show all" loads the rest, which stays shown
        # through the next live updates.
        context = "return document.querySelector('pre[data-key=\"context\"]').textContent"
        assert "line 119" not in browser.execute_script(context)
        browser.find_element(By.CSS_SELECTOR, 'button[data-expand][data-key="context"]').click()
        await until(browser, lambda d: "line 119" in d.execute_script(context), "the whole context")
        gates["summarise"].set()
        await until(browser, shows(state, "completed"), "the execution completed")
        assert "line 119" in browser.execute_script(context)
        assert browser.execute_script("return window.loadedOnce") is True, "the page reloaded"
        bars = browser.find_elements(By.CSS_SELECTOR, ".t-row")
        assert [b.get_attribute("data-outcome") for b in bars] == ["succeeded", "succeeded"]
        assert (
            "Quarterly report"
            in browser.find_element(By.CSS_SELECTOR, 'pre[data-key="context"]').text
        )
        await screenshot(browser, "dashboard-execution-completed.png")

        # 2. Cancel one from its page: the completed step is compensated,
        # the page follows and stops offering the action.
        gates["fetch"].set()
        doomed = await client.execute_workflow(stuck.name, {})
        await asyncio.to_thread(browser.get, f"{base}/executions/{doomed}")
        await until(browser, shows(step_status("wait"), "running"), "the stuck step running")
        form = browser.find_element(By.CSS_SELECTOR, 'form[data-action="cancel"]')
        form.find_element(By.NAME, "reason").send_keys("stuck for too long")
        form.find_element(By.CSS_SELECTOR, "button").click()
        await until(browser, shows(state, "cancelled"), "the execution cancelled")
        await until(browser, shows(step_status("prepare"), "compensated"), "prepare compensated")
        final = await client.get_status(doomed)
        assert final.state == "cancelled"
        message = form.find_element(By.CSS_SELECTOR, ".form-message")
        assert "cancellation requested" in str(message.get_attribute("textContent"))
        assert not form.is_displayed(), "the cancel form is still offered"
        await screenshot(browser, "dashboard-execution-cancelled.png")

        # 3. The list: counts per state, and a new execution appearing by itself.
        await asyncio.to_thread(browser.get, f"{base}/executions?workflow={report.name}")
        await until(browser, has_row(tx), "the completed execution in the list")
        gates["fetch"].clear()
        fresh = await client.execute_workflow(report.name, {"doc": "q4.pdf"})
        await until(browser, has_row(fresh), "the new execution in the list")
        running = "return document.querySelector('[data-count=\"running\"] .n').textContent"
        assert browser.execute_script(running) == "1"
        await screenshot(browser, "dashboard-executions.png")
        gates["fetch"].set()
        gates["summarise"].set()
        await client.wait(fresh, timeout=10)
