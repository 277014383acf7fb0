"""Screenshots of the demo for the docs: ``.venv/bin/python example/screenshots.py``.

Serves the demo with runserver on a free port, drives it in headless Chromium (Debian's
``apt-get install chromium``, through Playwright, as tests/test_browser.py does) and
writes to docs/images/:

- ``demo-index.png``: the whole index page after a round trip on each card;
- ``demo-chat.png``: two users of one chat room, side by side, after a short talk.
"""

import base64
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_browser import CHROMIUM, browser_problem  # noqa: E402
from tests.test_example import run_demo  # noqa: E402

IMAGES = ROOT / "docs" / "images"
WIDTH, HEIGHT = 1200, 800
WAIT = 10_000  # ms


def index(browser, base):
    page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
    page.goto(f"{base}/")
    for card in ("echo", "lower"):
        page.wait_for_selector(f"#{card}-status[data-state='open']", timeout=WAIT)
    page.fill("#echo-input", "Hello, WebSocket!")
    page.press("#echo-input", "Enter")
    page.wait_for_selector("#echo-log li.received", timeout=WAIT)
    page.fill("#lower-input", "Plain DJANGO Views")
    page.press("#lower-input", "Enter")
    page.wait_for_selector("#lower-log li.received", timeout=WAIT)
    page.click("#lower-http-send")
    page.wait_for_selector("#lower-http-result:not([hidden])", timeout=WAIT)
    page.locator(":focus").blur()
    page.mouse.move(0, 0)  # no hover effect on the last button clicked
    page.screenshot(path=IMAGES / "demo-index.png", full_page=True)
    page.close()


def chat(browser, base):
    # Each user in a browser context of their own, half the width each.
    size = {"width": WIDTH // 2, "height": HEIGHT}
    url = f"{base}/chat/lobby/"
    users = {}
    for nick in ("ann", "bob"):
        page = browser.new_context(viewport=size).new_page()
        page.goto(url)
        page.fill("#nick-input", nick)
        page.click("#nick-join")
        page.wait_for_selector("#chat-form:not([hidden])", timeout=WAIT)
        users[nick] = page
    talk = [
        ("ann", "Hi bob! Each line goes through a plain Django view."),
        ("bob", "And comes back to everyone in the room through broadcast_json()."),
        ("ann", "Open a third tab and it joins in too."),
    ]
    for number, (nick, text) in enumerate(talk, 1):
        users[nick].fill("#chat-input", text)
        users[nick].press("#chat-input", "Enter")
        for page in users.values():
            page.wait_for_function(
                f"document.querySelectorAll('#chat-log li.message').length >= {number}",
                timeout=WAIT,
            )
    shots = []
    for page in users.values():
        page.locator(":focus").blur()
        shots.append(base64.b64encode(page.screenshot()).decode())
    # Side by side: the two screenshots in one page, shot again.
    composite = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
    images = "".join(f'<img src="data:image/png;base64,{shot}">' for shot in shots)
    composite.set_content(
        # Each at its own size (no scaling), a 1px line drawn over the seam.
        "<style>body{margin:0;display:flex}img{display:block}"
        "img+img{box-shadow:-1px 0 0 #d8dee4}</style>" + images
    )
    composite.screenshot(path=IMAGES / "demo-chat.png")
    composite.close()
    for page in users.values():
        page.context.close()


def main():
    problem = browser_problem()
    if problem is not None:
        sys.exit(f"Cannot take screenshots: {problem}")
    from playwright.sync_api import sync_playwright

    IMAGES.mkdir(parents=True, exist_ok=True)
    with run_demo("runserver") as port, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            base = f"http://127.0.0.1:{port}"
            index(browser, base)
            chat(browser, base)
        finally:
            browser.close()
    for name in ("demo-index.png", "demo-chat.png"):
        print(IMAGES / name)


if __name__ == "__main__":
    main()
