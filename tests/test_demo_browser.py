"""The demo page in a real browser: `build_demo` served on a free loopback port, opened in headless Chromium
(Debian's package, driven by Playwright), a history picked from the list and typed, the button pressed, and the
recommended titles read back from the page equal `GenerativeRecommender.recommend`'s for that history; a screenshot
of the page is saved beside the test's files."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from hf_genrec.serving.demo import build_demo, launch_demo

from .test_demo import tiny_recommender

CHROMIUM = Path("/usr/bin/chromium")
#: headless, and none of the background calls (updates, sync, QUIC probes) a machine without a network waits on
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

pytestmark = pytest.mark.skipif(
    not CHROMIUM.is_file(),
    reason="needs Debian's Chromium at /usr/bin/chromium: `sudo apt-get install chromium` (CI's .ci/run installs it)",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served(monkeypatch):
    """(the recommender, the page's URL): the demo served by Gradio in this process's threads."""
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    recommender = tiny_recommender()
    demo = build_demo(recommender, title="Tiny films")
    port = free_port()
    launch_demo(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield recommender, f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def test_a_history_picked_and_typed_gets_the_recommended_titles(served, tmp_path):
    from playwright.sync_api import sync_playwright

    recommender, url = served
    picked, typed = ["i3", "i17"], ["i25", "i8"]
    (expected,) = recommender.recommend([picked + typed], k=recommender.config.top_k)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(20_000)
            page.goto(url)
            picker = page.locator("#genrec-pick input")
            for item in picked:  # type into the picker's filter, then click the one option it leaves
                title = recommender.item_titles[item]
                picker.fill(title)
                page.get_by_role("option", name=f"{title} ({item})", exact=True).click()
            page.locator("#genrec-typed textarea, #genrec-typed input").first.fill(", ".join(typed))
            page.locator("#genrec-recommend").click()
            titles = page.locator("#genrec-recommendations td.genrec-title")
            titles.first.wait_for()
            shown = titles.all_inner_texts()
            history = page.locator("#genrec-history td.genrec-item").all_inner_texts()
            why = page.locator("#genrec-recommendations td.genrec-why").all_inner_texts()
            page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)

            # an unknown id: the page says so in place of the results
            page.locator("#genrec-typed textarea, #genrec-typed input").first.fill("no-such-item")
            page.locator("#genrec-recommend").click()
            page.locator("#genrec-recommendations .genrec-message").wait_for()
            message = page.locator("#genrec-recommendations .genrec-message").inner_text()
        finally:
            browser.close()
    assert shown == [recommender.item_titles[item] for item, _ in expected]
    assert history == picked + typed
    assert len(why) == len(expected) and all(text.strip() for text in why)
    assert "'no-such-item'" in message and "not in the catalogue" in message
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    if os.environ.get("HF_GENREC_DEMO_SCREENSHOT"):  # where a person wants to look at it
        Path(os.environ["HF_GENREC_DEMO_SCREENSHOT"]).write_bytes((tmp_path / "demo.png").read_bytes())
