"""The web console in a real browser: Debian's Chromium driven by Playwright (headless,
``executable_path``; Playwright's own browsers are never downloaded) against a real corrald
(fake driver) over TLS, as an operator would use it.

Every main page is screenshotted in the light and the dark theme into a folder the test
prints (``CORRAL_WEB_SCREENSHOTS`` to choose it). A second daemon, with a short session
idle time and a low failed-authentication limit, serves the expiry and rate-limit tests
(everything here comes from 127.0.0.1: a limit reached on the first daemon would lock the
other tests out).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from tests.integration.conftest import Daemon, start_daemon, stop_daemon, write_fake_template

CHROMIUM = "/usr/bin/chromium"
try:
    from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
except ImportError:  # pragma: no cover - the dev extra installs it
    sync_playwright = None  # type: ignore[assignment]

BROWSER_MARKS = [
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed "
                       "(pip install -e '.[dev]')"),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no {CHROMIUM} (apt-get install "
                       "chromium)"),
]
"""Why a browser test cannot run here (every module that drives Chromium uses these)."""
pytestmark = BROWSER_MARKS

ADMIN = ("admin", "admin-pass-1")
OPERATOR = ("olga", "operator-pass-1")
IDLE = 2.0  # seconds: the strict daemon's session idle time
LIMIT = 3  # the strict daemon's failed authentications per address


def _users(daemon: Daemon) -> None:
    for (name, password), role in ((ADMIN, "admin"), (OPERATOR, "operator")):
        daemon.cli("user", "add", name, "--role", role, check=True)
        daemon.cli("user", "passwd", name, "--password-stdin", stdin=f"{password}\n".encode(),
                   check=True)


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    state = tmp_path_factory.mktemp("web-console")
    write_fake_template(state / "templates")
    daemon = start_daemon(state)
    try:
        _users(daemon)
        yield daemon
    finally:
        stop_daemon(daemon)


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    state = tmp_path_factory.mktemp("web-strict")
    write_fake_template(state / "templates")
    daemon = start_daemon(state, options=("--session-idle", str(IDLE),
                                          "--auth-failures", str(LIMIT)))
    try:
        _users(daemon)
        yield daemon
    finally:
        stop_daemon(daemon)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One browser for the module, closed with it: Playwright's sync API keeps an event loop
    running in this thread while it is open (``asyncio.run`` elsewhere would fail)."""
    with sync_playwright() as playwright:
        found = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield found
        finally:
            found.close()


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("CORRAL_WEB_SCREENSHOTS")
    folder = Path(chosen) if chosen else Path(tempfile.mkdtemp(prefix="corral-web-shots-"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def context(browser: Browser, **options: Any) -> BrowserContext:
    made = browser.new_context(ignore_https_errors=True, **{
        "viewport": {"width": 1280, "height": 800}, **options})
    made.set_default_timeout(15000)
    return made


def log_in(ctx: BrowserContext, daemon: Daemon, who: tuple[str, str]) -> Page:
    page = ctx.new_page()
    page.goto(f"{daemon.url}/ui/")
    assert "/ui/login" in page.url  # not logged in: sent to the login page
    page.fill("input[name=user]", who[0])
    page.fill("input[name=password]", who[1])
    page.click("button[type=submit]")
    page.wait_for_url(f"{daemon.url}/ui/")
    return page


def api(daemon: Daemon, method: str, path: str, token: str | None = None,
        **kwargs: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {token or daemon.token}"}
    with httpx.Client(verify=False) as client:  # the daemon's self-signed certificate
        return client.request(method, f"{daemon.url}{path}", headers=headers, timeout=30,
                              **kwargs)


def made_instance(daemon: Daemon, name: str, start: bool = True) -> None:
    args = ["create", name, "--type", "ct", "--template", "tiny"]
    daemon.cli(*args, check=True)
    if start:
        daemon.cli("start", name, check=True)


# ---------------------------------------------------------------------------------------
def test_admin_creates_a_container_from_the_wizard_and_starts_it(
        browser: Browser, console: Daemon) -> None:
    ctx = context(browser)
    page = log_in(ctx, console, ADMIN)
    cookie = next(c for c in ctx.cookies() if c["name"] == "corral_session")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    page.click("text=Instances")
    page.click("#new-instance")
    page.fill("#f-name", "wiz1")
    page.check("input[name=kind][value=ct]")
    page.select_option("#f-template", "tiny")
    page.fill("#f-cpus", "2")
    page.fill("#f-memory", "192M")
    page.fill("#f-disk", "128M")
    page.check("#f-start")
    page.click("#create")
    page.wait_for_url(f"{console.url}/ui/instances/wiz1")
    assert page.locator("#state").get_attribute("data-state") == "running"
    shown = json.loads(console.cli("info", "wiz1", "--format", "json", check=True).stdout)
    assert (shown["state"], shown["type"], shown["resources"]["cpus"],
            shown["resources"]["memory"]) == ("running", "ct", 2, 192 * 1024**2)
    ctx.close()


def test_a_bad_size_shows_the_apis_message_at_the_field(browser: Browser,
                                                        console: Daemon) -> None:
    refused = api(console, "POST", "/api/v1/instances", json={
        "name": "bad1", "type": "ct", "template": "tiny", "memory": "12X"})
    assert refused.status_code == 400
    ctx = context(browser)
    page = log_in(ctx, console, ADMIN)
    page.goto(f"{console.url}/ui/instances/new")
    page.fill("#f-name", "bad1")
    page.fill("#f-memory", "12X")
    page.click("#create")
    error = page.locator("#e-memory")
    error.wait_for()
    assert error.text_content() == refused.json()["message"]
    assert page.locator("#f-memory").get_attribute("aria-invalid") == "true"
    assert page.locator("#f-memory").input_value() == "12X"  # what was typed stays
    assert api(console, "GET", "/api/v1/instances/bad1").status_code == 404  # nothing made
    ctx.close()


def test_the_wizard_adds_a_nic_or_leaves_nothing_behind(browser: Browser,
                                                        console: Daemon) -> None:
    console.cli("network", "create", "weblan", "--type", "bridged", "--subnet",
                "10.77.0.0/24", "--gateway", "10.77.0.1", check=True)
    ctx = context(browser)
    page = log_in(ctx, console, ADMIN)
    page.goto(f"{console.url}/ui/instances/new")
    page.fill("#f-name", "net1")
    page.select_option("#f-network", "weblan")
    page.fill("#f-ip", "10.99.0.5")
    page.click("#create")
    error = page.locator("#e-ip")
    error.wait_for()
    assert "10.99.0.5 is not in network 'weblan'" in (error.text_content() or "")
    assert api(console, "GET", "/api/v1/instances/net1").status_code == 404  # undone
    page.fill("#f-ip", "10.77.0.10")
    page.click("#create")
    page.wait_for_url(f"{console.url}/ui/instances/net1")
    assert "10.77.0.10" in (page.locator("#h-nics + div").text_content() or "")
    ctx.close()


def test_the_instances_table_filters_sorts_and_follows_states_live(
        browser: Browser, console: Daemon) -> None:
    for name in ("live1", "live2"):
        made_instance(console, name)
    made_instance(console, "other1", start=False)
    ctx = context(browser)
    page = log_in(ctx, console, ADMIN)
    page.goto(f"{console.url}/ui/instances")
    rows = "() => [...document.querySelectorAll('#instances-table tbody tr')]" \
           ".map(r => r.dataset.name).join(' ')"
    assert "other1" in page.evaluate(rows)
    page.fill("input[name=q]", "live")
    page.wait_for_url("**/ui/instances?q=live*")  # the filter is in the URL (a link keeps it)
    page.wait_for_function(f"() => ({rows})() === 'live1 live2'")
    page.click("#instances-table th >> text=Name")  # ascending -> descending
    page.wait_for_function(f"() => ({rows})() === 'live2 live1'")
    page.select_option("select[name=state]", "running")
    page.wait_for_url("**state=running*")
    assert page.evaluate(rows) == "live2 live1"
    page.wait_for_selector("body[data-live-state=open]", state="attached")
    console.cli("stop", "live1", check=True)  # elsewhere: the page hears it on /ui/events
    page.wait_for_function(f"() => ({rows})() === 'live2'")  # no longer running: filtered out
    page.select_option("select[name=state]", "")
    page.wait_for_selector("tr[data-name=live1] .state[data-state=stopped]")
    ctx.close()


def test_resources_say_what_applied_live_and_what_at_next_start(
        browser: Browser, console: Daemon) -> None:
    made_instance(console, "res1")
    ctx = context(browser)
    page = log_in(ctx, console, ADMIN)
    page.goto(f"{console.url}/ui/instances/res1")
    page.fill("#r-cpu_limit", "50")
    page.fill("#r-memory", "300M")
    page.click("#apply-resources")
    changes = page.locator("#changes")
    changes.wait_for()
    answer = api(console, "GET", "/api/v1/instances/res1").json()
    assert answer["resources"]["cpu_limit"] == 50
    assert answer["resources"]["memory"] == 300 * 1024**2
    text = changes.text_content() or ""
    assert "cpu_limit" in text and "memory" in text
    assert "applied live" in text or "applies at the next start" in text
    page.fill("#r-memory", "lots")
    page.click("#apply-resources")
    page.locator("#re-memory").wait_for()
    assert "lots" in (page.locator("#re-memory").text_content() or "")
    ctx.close()


def test_snapshots_are_taken_and_reverted_from_the_instance_page(
        browser: Browser, console: Daemon) -> None:
    made_instance(console, "snap1")
    ctx = context(browser)
    page = log_in(ctx, console, OPERATOR)  # an operator manages snapshots
    page.goto(f"{console.url}/ui/instances/snap1")
    page.fill("#snapshot-form input[name=name]", "before")
    page.click("#snapshot-form button")
    page.wait_for_selector("#notice >> text=snapshot before taken")
    assert "before" in (page.locator("#snapshots").text_content() or "")
    page.on("dialog", lambda dialog: dialog.accept())  # the revert asks first
    page.click("#snapshots button:has-text('Revert')")
    page.wait_for_selector("#notice >> text=reverted to before")
    listed = json.loads(console.cli("snapshot", "list", "snap1", "--format", "json",
                                    check=True).stdout)
    assert [(s["name"], s["current"]) for s in listed["snapshots"]] == [("before", True)]
    ctx.close()


def test_a_backup_is_taken_and_restored_from_the_instance_page(
        browser: Browser, console: Daemon) -> None:
    made_instance(console, "bak1", start=False)
    target = console.state_dir / "web-backups"
    console.cli("backup", "target", "add", "webnas", str(target), check=True)
    ctx = context(browser)
    page = log_in(ctx, console, OPERATOR)
    page.goto(f"{console.url}/ui/instances/bak1")
    page.click("#h-backups ~ form button")
    page.wait_for_selector("#notice >> text=backed up to webnas")
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#h-backups ~ ul button:has-text('Restore')")
    page.wait_for_selector("#notice >> text=restored backup")
    ops = api(console, "GET", "/api/v1/operations").json()
    assert any(o["action"].startswith("restore") and o["status"] == "success" and
               o["requested_by"] == OPERATOR[0] for o in ops), ops
    ctx.close()


def test_an_operator_sees_no_users_page_and_gets_403_on_its_url(
        browser: Browser, console: Daemon) -> None:
    ctx = context(browser)
    page = log_in(ctx, console, OPERATOR)
    nav = page.locator("nav[aria-label=Main]")
    assert nav.locator("text=Instances").count() == 1
    assert nav.locator("text=Users").count() == 0
    response = page.goto(f"{console.url}/ui/users")
    assert response is not None and response.status == 403
    assert "may not list users" in (page.locator("#error-message").text_content() or "")
    # but it manages instances (the same policy as the API's create_instance)
    page.goto(f"{console.url}/ui/instances/new")
    assert page.locator("#wizard").count() == 1
    ctx.close()
    admin = context(browser)
    page = log_in(admin, console, ADMIN)
    assert page.locator("nav[aria-label=Main] >> text=Users").count() == 1
    admin.close()


def test_a_change_without_the_csrf_token_is_refused(browser: Browser,
                                                    console: Daemon) -> None:
    made_instance(console, "csrf1")
    ctx = context(browser)
    page = log_in(ctx, console, ADMIN)
    stop = f"{console.url}/ui/instances/csrf1/action/stop"
    refused = ctx.request.post(stop)  # the session cookie, no token
    assert refused.status == 403 and "CSRF" in refused.text()
    refused = ctx.request.post(stop, form={"csrf_token": "forged"})
    assert refused.status == 403
    state = api(console, "GET", "/api/v1/instances/csrf1").json()["state"]
    assert state == "running"  # nothing happened
    page.goto(f"{console.url}/ui/instances/csrf1")
    page.click("#do-stop")  # the page's own form carries the token
    page.wait_for_selector("#state[data-state=stopped]")
    ctx.close()


def test_logout_ends_the_session(browser: Browser, console: Daemon) -> None:
    ctx = context(browser)
    page = log_in(ctx, console, ADMIN)
    stolen = [c for c in ctx.cookies() if c["name"] == "corral_session"]
    page.click("#logout")
    page.wait_for_url(f"{console.url}/ui/login")
    page.goto(f"{console.url}/ui/instances")
    assert "/ui/login" in page.url
    ctx.close()
    replay = context(browser)
    replay.add_cookies(cast(Any, stolen))  # the cookie from before the logout: worth nothing
    page = replay.new_page()
    page.goto(f"{console.url}/ui/")
    assert "/ui/login" in page.url
    replay.close()


def test_a_session_expires_when_idle(browser: Browser, strict: Daemon) -> None:
    ctx = context(browser)
    page = log_in(ctx, strict, ADMIN)
    page.goto(f"{strict.url}/ui/instances")
    assert "/ui/instances" in page.url
    time.sleep(IDLE + 0.5)
    page.goto(f"{strict.url}/ui/instances")
    assert "/ui/login?next=/ui/instances" in page.url
    ctx.close()


def test_failed_logins_are_rate_limited_together_with_api_tokens(
        browser: Browser, strict: Daemon) -> None:
    ctx = context(browser)
    page = ctx.new_page()
    page.goto(f"{strict.url}/ui/login")
    for _ in range(LIMIT - 1):
        page.fill("input[name=user]", ADMIN[0])
        page.fill("input[name=password]", "wrong-password")
        page.click("button[type=submit]")
        assert page.locator("#login-error").text_content() == "wrong user name or password"
    assert api(strict, "GET", "/api/v1/instances", token="crl_wrong").status_code == 401
    # the limit is reached: now even the right password (and the right token) waits
    page.fill("input[name=user]", ADMIN[0])
    page.fill("input[name=password]", ADMIN[1])
    with page.expect_response(f"{strict.url}/ui/login") as answer:
        page.click("button[type=submit]")
    assert answer.value.status == 429
    assert "too many failed authentication attempts" in (
        page.locator("#login-error").text_content() or "")
    blocked = api(strict, "GET", "/api/v1/instances")
    assert blocked.status_code == 429 and blocked.json()["error"] == "rate_limited"
    assert int(blocked.headers["retry-after"]) > 0
    ctx.close()


MAIN_PAGES = ("/ui/", "/ui/instances", "/ui/instances/new", "/ui/instances/shot1",
              "/ui/users")


def test_every_main_page_fits_a_phone_and_has_visible_focus(browser: Browser,
                                                            console: Daemon) -> None:
    made_instance(console, "shot1")
    ctx = context(browser, viewport={"width": 390, "height": 844})
    page = log_in(ctx, console, ADMIN)
    for path in (*MAIN_PAGES, "/ui/login"):
        page.goto(f"{console.url}{path}")
        widths = page.evaluate("() => [document.documentElement.scrollWidth, "
                               "document.body.scrollWidth, window.innerWidth]")
        assert max(widths[:2]) <= widths[2], f"{path} scrolls sideways at 390 px: {widths}"
    page.goto(f"{console.url}/ui/instances")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    outline = page.evaluate("() => { const s = getComputedStyle(document.activeElement); "
                            "return [s.outlineStyle, parseFloat(s.outlineWidth)]; }")
    assert outline[0] != "none" and outline[1] >= 2, outline
    ctx.close()


def test_every_main_page_is_screenshotted_light_and_dark(
        browser: Browser, console: Daemon, shots: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    if api(console, "GET", "/api/v1/instances/shot1").status_code == 404:
        made_instance(console, "shot1")
    taken = []
    for scheme in ("light", "dark"):
        ctx = context(browser, color_scheme=scheme)
        page = log_in(ctx, console, ADMIN)
        background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
        assert background == ("rgb(246, 247, 249)" if scheme == "light" else "rgb(15, 18, 22)")
        for path in MAIN_PAGES:
            page.goto(f"{console.url}{path}")
            name = path.strip("/").replace("/", "-") or "ui"
            target = shots / f"{name}-{scheme}.png"
            page.screenshot(path=str(target), full_page=True)
            taken.append(target)
        ctx.close()
    assert all(p.stat().st_size > 5000 for p in taken)
    with capsys.disabled():
        print(f"\nweb console screenshots ({len(taken)}): {shots}")


def test_the_theme_toggle_overrides_the_system(browser: Browser, console: Daemon) -> None:
    ctx = context(browser, color_scheme="light")
    page = log_in(ctx, console, ADMIN)
    page.click("#theme-toggle")  # auto -> light
    page.click("#theme-toggle")  # light -> dark
    assert page.evaluate("() => document.documentElement.dataset.theme") == "dark"
    page.reload()  # kept across pages
    assert page.evaluate("() => getComputedStyle(document.body).backgroundColor") == \
        "rgb(15, 18, 22)"
    ctx.close()


def test_no_asset_comes_from_another_origin(browser: Browser, console: Daemon) -> None:
    ctx = context(browser)
    requested: list[str] = []
    ctx.on("request", lambda request: requested.append(request.url))
    page = log_in(ctx, console, ADMIN)
    page.goto(f"{console.url}/ui/instances")
    assert page.evaluate("() => typeof window.htmx") == "object"  # shipped htmx loaded
    foreign = [u for u in requested if not u.startswith(console.url) and
               not u.startswith("data:")]
    assert not foreign, foreign
    ctx.close()


def teardown_module() -> None:
    chosen = os.environ.get("CORRAL_WEB_SCREENSHOTS")
    if chosen is None:
        return
    shutil.rmtree(Path(chosen) / ".tmp", ignore_errors=True)
