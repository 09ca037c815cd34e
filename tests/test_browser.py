"""The web UI in a real browser: Playwright drives Debian's Chromium against a control plane on loopback.

Covered: signing in, the seed conversation on the lab node with its cards and diagnosis,
a held command approved by an approver, command output with HTML and script tags shown
as text, a viewer who cannot chat, and the chat at phone width. Screenshots of the chat
page are saved in the test's output folder (printed, and kept by pytest under its
basetemp).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, expect, sync_playwright

from chat_server.app import create_app
from chat_server.cli import uvicorn_options
from squads.settings.env import Settings
from squads.nodes.models import NodeConfig
from squads.context import AppContext
from squads.storage.db import session_scope
from tests.agent_harness import free_port, wait_for
from tools.executors.fixture import Fixture, FixtureExecutor
from squads.accounts.models import Role
from squads.accounts.service import create_user

CHROMIUM = Path("/usr/bin/chromium")
# The flags this machine's Chromium needs headless (see the tool library's env entry).
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
PASSWORD = "a long enough passphrase"
HOSTILE = "<script>window.__pwned = 1</script><b>bold?</b><img src=x onerror=\"window.__pwned = 2\">"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A control plane with the lab, one extra simulated node whose output is hostile HTML, and users."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make services` (scripts/ensure_services.py installs it)")
    root = tmp_path_factory.mktemp("browser-site")
    context = AppContext(settings=Settings(data_dir=root, config_dir=root / "config", lab=True))
    hostile = FixtureExecutor([Fixture(run="df -h", stdout=f"Filesystem Size Used Avail Use% Mounted on\n{HOSTILE}\n")])
    context.lab_nodes["html-lab"] = (NodeConfig(name="html-lab", labels={"squads.lab": "true"}), hostile)
    with session_scope(context.db.sessions) as session:
        for name, role in (("eddie", Role.ENGINEER), ("april", Role.APPROVER), ("vera", Role.VIEWER)):
            create_user(session, username=name, password=PASSWORD, role=role, actor="pytest")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(context), host="127.0.0.1", port=port, log_level="warning",
                                           **uvicorn_options()))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for("the control plane", lambda: server.started or None)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        try:
            yield launched
        finally:
            launched.close()


def signed_in(browser: Browser, site: str, username: str, **options: object) -> Page:
    page = browser.new_context(**options).new_page()  # type: ignore[arg-type]
    page.goto(f"{site}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator(".who")).to_contain_text(username)
    return page


def start_chat(page: Page, site: str, squad: str, node: str, message: str) -> None:
    page.goto(f"{site}/chat")
    page.select_option("select[name=squad]", squad)
    page.uncheck("input[name=nodes] >> nth=0")
    page.check(f"input[name=nodes][value={node}]")
    page.fill("textarea[name=message]", message)
    page.click("form[data-start] button[type=submit]")
    page.wait_for_url(f"{site}/chat/*")


def say(page: Page, text: str) -> None:
    page.fill("#say textarea[name=text]", text)
    page.click("#say button[type=submit]")
    expect(page.locator("#say .busy")).to_be_hidden(timeout=30_000)


def test_the_seed_conversation_in_the_browser(browser: Browser, site: str, tmp_path: Path) -> None:
    page = signed_in(browser, site, "eddie")
    start_chat(page, site, "k8s", "k8s-cluster-east",
               "My application pod is in a CrashLoopBackOff state. Can you check the logs?")
    expect(page.locator(".msg.squad").first).to_be_visible()
    say(page, "Pod: payment-service-7d9f8b-xyz, Namespace: production")
    cards = page.locator("article.call")
    expect(cards.first).to_contain_text("kubectl")
    expect(page.locator("#log")).to_contain_text("postgres-0")
    expect(page.locator("#log .decision.allow").first).to_contain_text("allow")
    expect(page.locator("#log")).to_contain_text("Pending")
    page.locator("article.call details summary").first.click()
    expect(page.locator("article.call pre.stdout").first).to_be_visible()
    shot = tmp_path / "chat-seed.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000


def test_a_held_command_is_approved_by_an_approver(browser: Browser, site: str, tmp_path: Path) -> None:
    engineer = signed_in(browser, site, "eddie")
    start_chat(engineer, site, "webserver", "app-web-3", "please restart apache2")
    card = engineer.locator("article.approval")
    expect(card).to_contain_text("Held for approval")
    expect(card).to_contain_text("May approve: april")
    expect(card.locator("button[value=approve]")).to_have_count(0)  # not for the one who asked
    url = engineer.url
    approver = signed_in(browser, site, "april")
    approver.goto(url)
    approver.locator("article.approval button[value=approve]").click()
    expect(approver.locator("#log")).to_contain_text("april approved", timeout=30_000)
    expect(approver.locator("#log")).to_contain_text("Approved and run")
    approver.screenshot(path=str(tmp_path / "chat-approved.png"), full_page=True)


def test_command_output_with_html_renders_as_text(browser: Browser, site: str) -> None:
    page = signed_in(browser, site, "eddie")
    start_chat(page, site, "webserver", "html-lab", "is the disk full?")
    page.locator("article.call details summary").first.click()
    stdout = page.locator("article.call pre.stdout").first
    expect(stdout).to_contain_text("<script>window.__pwned = 1</script><b>bold?</b>")
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#log b").count() == 0 and page.locator("#log img").count() == 0
    say(page, "is the disk full?")  # the streamed fragments are escaped too
    assert page.evaluate("window.__pwned") is None and page.locator("#log img").count() == 0


def test_a_viewer_cannot_chat(browser: Browser, site: str) -> None:
    page = signed_in(browser, site, "vera")
    response = page.goto(f"{site}/chat")
    assert response is not None and response.status == 403
    writer = signed_in(browser, site, "eddie")
    start_chat(writer, site, "k8s", "k8s-cluster-east", "")
    page.goto(writer.url)
    expect(page.locator("#say")).to_have_count(0)
    expect(page.locator("main")).to_contain_text("chatting needs the engineer role")


def test_the_chat_fits_a_phone(browser: Browser, site: str, tmp_path: Path) -> None:
    page = signed_in(browser, site, "eddie", viewport={"width": 390, "height": 844}, is_mobile=True)
    start_chat(page, site, "k8s", "k8s-cluster-east",
               "My application pod is in a CrashLoopBackOff state. Can you check the logs?")
    say(page, "Pod: payment-service-7d9f8b-xyz, Namespace: production")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    page.screenshot(path=str(tmp_path / "chat-phone.png"), full_page=True)
    assert overflow <= 0, f"the page is {overflow}px wider than a phone screen"
