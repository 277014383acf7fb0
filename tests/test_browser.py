"""The demo's pages in a real browser: headless Chromium, driven by Playwright.

Playwright launches Debian's chromium (``apt-get install chromium``) by its path, so
no ``playwright install`` download is needed. Without chromium or playwright these
tests are skipped, with the reason and how to enable them; with ``CI=true`` they fail.
"""

import contextlib
import http.server
import json
import os
import threading
import uuid

import pytest

from .conftest import ROOT, start_server, timeout
from .test_example import run_demo

pytestmark = [pytest.mark.server, pytest.mark.browser]

#: The browser to drive; DJWS_CHROMIUM points at another Chromium build.
CHROMIUM = os.environ.get("DJWS_CHROMIUM", "/usr/bin/chromium")
#: Big enough for the pages and a chat side by side, as in docs/images/.
VIEWPORT = {"width": 1200, "height": 800}
#: Environment of a server subprocess that serves the demo instead of the test project.
DEMO_ENV = {
    "DJANGO_SETTINGS_MODULE": "example_project.settings",
    "PYTHONPATH": os.pathsep.join([str(ROOT / "example"), str(ROOT)]),
    "WEBSOCKET_BROKER_URL": "",
}


def browser_problem() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed; install it with `.venv/bin/pip install -e '.[test]'`"
    if not os.access(CHROMIUM, os.X_OK):
        return (
            f"no Chromium at {CHROMIUM}; install it with `apt-get install chromium`"
            " (or set DJWS_CHROMIUM to a Chromium binary)"
        )
    return None


@contextlib.contextmanager
def chromium():
    """A headless Chromium; skips the test (fails it with CI=true) when there is none."""
    problem = browser_problem()
    if problem is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"browser tests cannot run in CI: {problem}")
        pytest.skip(f"browser tests skipped: {problem}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def browser():
    with chromium() as running:
        yield running


@pytest.fixture
def new_page(browser):
    """Open pages, each in a browser context of its own (a user of its own)."""
    contexts = []

    def open_page(url):
        context = browser.new_context(viewport=VIEWPORT)
        context.set_default_timeout(ms(10))
        contexts.append(context)
        page = context.new_page()
        page.goto(url)
        return page

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture(scope="module", params=["runserver", "uvicorn"])
def demo(request, browser):
    """The demo as `make demo` and `make demo-asgi` serve it: its base URL."""
    with run_demo(request.param) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def demo_with_log(browser):
    """The demo under runserver, as a conftest Server, whose log the test can read."""
    server = start_server("runserver", extra_env=DEMO_ENV)
    yield server
    server.stop()


def ms(seconds):
    """A timeout for Playwright, in milliseconds, scaled like the others."""
    return timeout(seconds) * 1000


def expect(locator):
    from playwright.sync_api import expect

    return expect(locator)


def join(page, nick):
    """Pick ``nick`` on a chat page and wait until the room welcomes it."""
    page.fill("#nick-input", nick)
    page.click("#nick-join")
    expect(page.locator("#chat-status")).to_have_text(f"connected as {nick}", timeout=ms(5))
    expect(page.locator("#chat-form")).to_be_visible()
    expect(page.locator("#nick-form")).to_be_hidden()


def say(page, text):
    page.fill("#chat-input", text)
    page.press("#chat-input", "Enter")


def notices(page):
    return page.locator("#chat-log li.info .text")


def messages(page):
    return page.locator("#chat-log li.message")


def test_two_tabs_of_a_chat_room_talk_and_see_joins_and_leaves(demo, new_page):
    """Two users in one room: each sees the other come, talk and go, with the head count."""
    url = f"{demo}/chat/browser-{uuid.uuid4().hex[:8]}/"
    ann = new_page(url)
    # Before joining, only the nickname form shows.
    expect(ann.locator("#chat-status")).to_have_text("not connected")
    expect(ann.locator("#nick-form")).to_be_visible()
    expect(ann.locator("#chat-form")).to_be_hidden()
    join(ann, "ann")
    expect(notices(ann)).to_have_text(["ann joined"], timeout=ms(5))
    expect(ann.locator("#chat-count")).to_have_text("1 person here")

    bob = new_page(url)
    join(bob, "bob")
    for page in (ann, bob):
        expect(notices(page).last).to_have_text("bob joined", timeout=ms(5))
        expect(page.locator("#chat-count")).to_have_text("2 people here")

    # Markup typed by a user is shown as text, not rendered.
    say(ann, "hi bob, <b>bold</b> & co")
    for page in (ann, bob):
        expect(messages(page)).to_have_count(1, timeout=ms(5))
        expect(messages(page).locator(".nick")).to_have_text("ann")
        expect(messages(page).locator(".text")).to_have_text("hi bob, <b>bold</b> & co")
        assert page.locator("#chat-log b").count() == 0
    expect(ann.locator("#chat-input")).to_have_value("")
    expect(messages(ann)).to_have_class("message mine")
    expect(messages(bob)).to_have_class("message")

    say(bob, "hello ann")
    for page in (ann, bob):
        expect(messages(page).locator(".text")).to_have_text(
            ["hi bob, <b>bold</b> & co", "hello ann"], timeout=ms(5)
        )

    bob.close()
    expect(notices(ann).last).to_have_text("bob left", timeout=ms(5))
    expect(ann.locator("#chat-count")).to_have_text("1 person here")
    expect(ann.locator("#chat-status")).to_have_attribute("data-state", "open")


def test_the_echo_card_round_trip(demo, new_page):
    """Type, send, and the echo view's answer is logged under what was sent."""
    page = new_page(f"{demo}/")
    expect(page.locator("#echo-status")).to_have_attribute("data-state", "open", timeout=ms(5))
    page.fill("#echo-input", "Hello from Chromium <i>!</i>")
    page.click("#echo-send")
    log = page.locator("#echo-log li")
    expect(log).to_have_class(["sent", "received"], timeout=ms(5))
    expect(log.locator(".text")).to_have_text(["Hello from Chromium <i>!</i>"] * 2)
    expect(page.locator("#echo-input")).to_have_value("")


def test_the_lower_case_card_over_websocket_and_http(demo, new_page):
    """The same view answers the card's WebSocket and its plain GET form."""
    page = new_page(f"{demo}/")
    expect(page.locator("#lower-status")).to_have_attribute("data-state", "open", timeout=ms(5))
    page.fill("#lower-input", "SHOUTING")
    page.press("#lower-input", "Enter")
    expect(page.locator("#lower-log li.received .text")).to_have_text("shouting", timeout=ms(5))
    page.click("#lower-http-send")
    expect(page.locator("#lower-http-output")).to_have_text("hello world", timeout=ms(5))


#: A page of another origin that tries the demo's WebSocket and reports what happened.
FOREIGN_PAGE = """<!doctype html>
<title>another origin</title>
<script>
  const events = [];
  const socket = new WebSocket(%(url)s);
  socket.addEventListener("open", () => events.push("open"));
  socket.addEventListener("error", () => events.push("error"));
  socket.addEventListener("close", (event) => {
    events.push("close");
    window.outcome = { events: events, code: event.code, wasClean: event.wasClean };
  });
</script>
"""


@contextlib.contextmanager
def serve_page(html):
    """Serve ``html`` at / from a second local HTTP server; yield its origin."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_page_of_another_origin_is_refused(demo_with_log, new_page):
    """A page from another port cannot open the demo's WebSocket: 403, and the JS sees it fail."""
    target = f"ws://127.0.0.1:{demo_with_log.port}/ws/echo/"
    with serve_page(FOREIGN_PAGE % {"url": json.dumps(target)}) as origin:
        sockets, errors = [], []

        def watch(socket):
            sockets.append(socket.url)
            socket.on("socketerror", lambda error: errors.append(error))

        page = new_page("about:blank")
        page.on("websocket", watch)
        page.goto(f"{origin}/")
        outcome = page.wait_for_function("window.outcome", timeout=ms(10)).json_value()

    assert outcome == {"events": ["error", "close"], "code": 1006, "wasClean": False}
    # The browser tried, and the server answered the handshake with 403.
    assert sockets == [target]
    assert len(errors) == 1 and "Unexpected response code: 403" in errors[0], errors
    log = demo_with_log.wait_for_log("Refused WebSocket to /ws/echo/")
    assert f"Origin '{origin}' is not allowed to open a WebSocket here" in log
    assert '"GET /ws/echo/ HTTP/1.1" 403' in log
