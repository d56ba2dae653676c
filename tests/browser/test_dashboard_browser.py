"""The dashboard in a real headless Chromium (Debian `chromium` and
`chromium-driver`, driven by Selenium): a workflow seen progressing live,
one cancelled from its page, the list updating by itself, the steps' output
appearing as it comes and the usage. Screenshots go to
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

import multiagents
from integration.helpers import make_config, serving
from multiagents import Client, RetryPolicy, WorkerExecutionError, WorkflowBuilder, worker
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


async def screenshot(driver: WebDriver, name: str, at: str = "") -> None:
    """The window, at the top of the page or with element `at` on top."""
    ARTIFACTS.mkdir(exist_ok=True)
    if at:
        driver.execute_script(f"document.querySelector('{at}').scrollIntoView()")
    else:
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


def epoch_text(step: str, attempt: int = 0) -> Callable[[WebDriver], str]:
    """The text the output card shows for an attempt of a step (0: its
    latest, as a loaded machine may see a lost session's step run again)."""
    which = f'[data-step="{step}"]' + (f'[data-attempt="{attempt}"]' if attempt else "")
    script = (
        f"const blocks = document.querySelectorAll('#output .o-epoch{which}');"
        "return blocks.length ? blocks[blocks.length - 1].querySelector('pre').textContent : ''"
    )
    return lambda driver: str(driver.execute_script(script))


def stream_ended(driver: WebDriver) -> str:
    """ "1" once the page's live stream sent its end."""
    return str(driver.execute_script("return document.getElementById('live').dataset.ended"))


def text(selector: str) -> Callable[[WebDriver], str]:
    script = f"return document.querySelector('{selector}')?.textContent ?? ''"
    return lambda driver: str(driver.execute_script(script))


async def test_the_steps_output_appears_live_each_attempt_apart_then_the_usage(
    browser: WebDriver, dashboard_server: Server, uid: str
) -> None:
    server = dashboard_server
    assert server.dashboard is not None
    base = server.dashboard.url.rstrip("/")
    gates = [asyncio.Event() for _ in range(3)]
    hostile = "<script>window.pwned = true</script><b>not bold</b> "
    essay_text = "".join(f"paragraph {i:03d}: the agent keeps on writing\n" for i in range(200))

    @worker(f"{uid}_write")
    async def write(ctx: dict[str, Any]) -> dict[str, Any]:
        attempt = multiagents.current_command().attempt  # type: ignore[union-attr]
        if attempt == 1:
            await multiagents.emit("a first draft that goes nowhere")
            multiagents.report_usage(input_tokens=500, output_tokens=20, model="demo/model",
                                     cost_usd=0.0005)  # fmt: skip
            await gates[0].wait()
            raise WorkerExecutionError("draft rejected")
        await multiagents.emit("Dear reader, ")
        await gates[1].wait()
        await multiagents.emit(hostile)
        await gates[2].wait()
        await multiagents.emit("goodbye.")
        multiagents.report_usage(input_tokens=1200, output_tokens=350, model="demo/model",
                                 cost_usd=0.0042)  # fmt: skip
        return {}

    @worker(f"{uid}_essay")
    async def essay(ctx: dict[str, Any]) -> dict[str, Any]:
        for n, i in enumerate(range(0, len(essay_text), 400)):
            # Kinds alternate: the SDK would merge text chunks ready together.
            await multiagents.emit(essay_text[i : i + 400], kind="log" if n % 2 else "token")
        return {}

    letter = (
        WorkflowBuilder(f"{uid}-letter")
        .add_step("write", write.name, retry=RetryPolicy(max_attempts=2, initial_interval=0.05))
        .add_step("essay", essay.name)
        .build()
    )
    async with serving(server, write, essay), Client(server.address) as client:
        await client.register_workflow(letter)
        tx = await client.execute_workflow(letter.name, {})

        # 1. The first attempt's text, as it comes.
        await asyncio.to_thread(browser.get, f"{base}/executions/{tx}")
        await until(browser, shows(epoch_text("write", 1), "a first draft that goes nowhere"),
                    "the first attempt's text")  # fmt: skip
        browser.execute_script("window.loadedOnce = true")
        # 2. It fails and is retried: the second attempt's text in a block of
        # its own, the first set apart (folded, marked superseded).
        gates[0].set()
        await until(browser, shows(epoch_text("write", 2), "Dear reader, "), "the second attempt")
        first = browser.find_element(
            By.CSS_SELECTOR, '.o-epoch[data-step="write"][data-attempt="1"]'
        )
        assert "superseded" in str(first.get_attribute("class"))
        assert "superseded: attempt 2 started over" in first.text
        # 3. Each chunk appended live, markup shown as text and never run.
        gates[1].set()
        await until(browser, shows(epoch_text("write", 2), "Dear reader, " + hostile), "markup")
        assert browser.execute_script("return window.pwned") is None
        assert browser.find_elements(By.CSS_SELECTOR, "#output b, #output script") == []
        gates[2].set()
        await until(browser, shows(epoch_text("write", 2), f"Dear reader, {hostile}goodbye."),
                    "the last chunk")  # fmt: skip
        # 4. The end: the usage each attempt reported, per step and in total.
        await until(browser, shows(state, "completed"), "the execution completed")
        # The stream ends after the last output.
        await until(browser, shows(stream_ended, "1"), "the end of the stream")
        row = text('#usage tr[data-usage="write"]')(browser)
        assert "demo/model" in row and "1,700" in row and "370" in row and "$0.004700" in row
        assert text("#usage-tokens")(browser) == "2,070"
        assert text("#usage-cost")(browser) == "$0.004700"
        assert epoch_text("essay")(browser).endswith("paragraph 199: the agent keeps on writing\n")
        assert essay_text.endswith(epoch_text("essay")(browser))
        # The text is followed to its end, through the renders of the rest of the page.
        # (At least one re-render after the first: how many more depends on
        # how the status changes batch, 3 in CI, more on an idle machine.)
        renders = browser.execute_script("return document.getElementById('live').dataset.updates")
        assert int(renders) >= 2
        at_end = (
            "const pre = [...document.querySelectorAll('.o-epoch[data-step=essay] pre')].pop();"
            "return pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4"
        )
        assert browser.execute_script(at_end), "the output card scrolled back"
        assert browser.execute_script("return window.loadedOnce") is True, "the page reloaded"
        await screenshot(browser, "dashboard-execution-output.png", "#output")

        # 5. A late page load: the backlog, each attempt apart, the long one cut.
        await asyncio.to_thread(browser.get, f"{base}/executions/{tx}")
        await until(browser, shows(epoch_text("write", 2), f"Dear reader, {hostile}goodbye."),
                    "the backlog")  # fmt: skip
        await until(browser, lambda d: essay_text.endswith(epoch_text("essay")(d)),
                    "the end of the long output")  # fmt: skip
        assert 2_000 <= len(epoch_text("essay")(browser)) <= 4_000
        assert epoch_text("write", 1)(browser) == "a first draft that goes nowhere"
        more = browser.find_elements(By.CSS_SELECTOR, '.o-epoch[data-step="essay"] .o-expand')[-1]
        assert more.is_displayed()
        await screenshot(browser, "dashboard-execution-output-late.png", "#output")
        more.click()
        await until(browser, shows(epoch_text("essay"), essay_text), "the whole output")
        assert not more.is_displayed()

        # 6. The list: each execution's tokens and cost.
        await asyncio.to_thread(browser.get, f"{base}/executions?workflow={letter.name}")
        await until(browser, has_row(tx), "the execution in the list")
        cell = text(f'tr[data-tx="{tx}"] .usage-cell')(browser)
        assert cell == "2,070 tokens · $0.004700"
        await screenshot(browser, "dashboard-executions-usage.png")
