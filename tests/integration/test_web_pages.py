"""The web console's second half in a real browser (Debian's Chromium, Playwright) against
a real corrald with the fake driver: bulk actions on the instances table with a result per
item, a bulk delete only after its confirmation, the instance page's graphs from the
history corrald keeps, and the console tickets (one use, only from this site's pages).
New pages are screenshotted light and dark into the folder ``shots`` prints, and must not
scroll sideways at 390 px."""

from __future__ import annotations

import json
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.templates.artifact import export_template
from tests.integration.conftest import Daemon, start_daemon, stop_daemon, write_fake_template
from tests.integration.test_web_console import (
    ADMIN,
    BROWSER_MARKS,
    CHROMIUM,
    OPERATOR,
    _users,
    api,
    context,
    log_in,
    made_instance,
    shots,
)
from tests.unit.templates.test_artifact import make_template

__all__ = ["shots"]

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # pragma: no cover - the dev extra installs it
    sync_playwright = None  # type: ignore[assignment]

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    state = tmp_path_factory.mktemp("web-pages")
    write_fake_template(state / "templates")
    daemon = start_daemon(state, options=("--history-interval", "1"))
    try:
        _users(daemon)
        yield daemon
    finally:
        stop_daemon(daemon)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        found = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield found
        finally:
            found.close()


def _states(daemon: Daemon) -> dict[str, str]:
    listed = json.loads(daemon.cli("list", "--format", "json", check=True).stdout)
    return {i["name"]: i["state"] for i in listed}


def _fits_a_phone(page: Page, url: str) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(url)
    widths = page.evaluate("() => [document.documentElement.scrollWidth, "
                           "document.body.scrollWidth, window.innerWidth]")
    assert max(widths[:2]) <= widths[2], f"{url} scrolls sideways at 390 px: {widths}"
    page.set_viewport_size({"width": 1280, "height": 800})


def _screenshot(page: Page, folder: Path, name: str) -> None:
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        page.screenshot(path=str(folder / f"{name}-{scheme}.png"), full_page=True)
    page.emulate_media(color_scheme="light")


def _pick(page: Page, names: list[str]) -> None:
    for name in names:
        page.check(f"input.pick-one[value={name}]")


def test_bulk_stop_of_three_instances_shows_three_results(
        browser: Browser, site: Daemon, shots: Path) -> None:
    names = ["bulk1", "bulk2", "bulk3"]
    for name in names:
        made_instance(site, name)
    made_instance(site, "bystander")
    ctx = context(browser)
    page = log_in(ctx, site, OPERATOR)
    page.goto(f"{site.url}/ui/instances")
    _pick(page, names)
    page.wait_for_selector("#picked >> text=3 selected")
    page.select_option("#bulk-action", "stop")
    page.click("#bulk-apply")
    page.wait_for_selector("#bulk-items")
    items = page.locator("#bulk-items li")
    assert items.count() == 3
    for name in names:
        assert page.get_attribute(f"#bulk-items li[data-name={name}]", "data-ok") == "true"
    states = _states(site)
    assert [states[n] for n in names] == ["stopped"] * 3 and states["bystander"] == "running"
    _screenshot(page, shots, "instances-bulk")
    _fits_a_phone(page, f"{site.url}/ui/instances")

    # a second action on the same selection: the live refreshes kept it; one item fails
    page.goto(f"{site.url}/ui/instances")
    _pick(page, ["bulk1", "bystander"])
    page.select_option("#bulk-action", "snapshot")
    page.fill("#bulk-snapshot", "before")
    page.click("#bulk-apply")
    page.wait_for_selector("#bulk-items li[data-name=bystander]")
    assert page.get_attribute("#bulk-items li[data-name=bulk1]", "data-ok") == "true"
    ctx.close()


def test_a_bulk_delete_asks_first_and_names_every_instance(
        browser: Browser, site: Daemon) -> None:
    for name in ("gone1", "gone2"):
        made_instance(site, name, start=False)
    ctx = context(browser)
    page = log_in(ctx, site, ADMIN)
    page.goto(f"{site.url}/ui/instances")
    _pick(page, ["gone1", "gone2"])
    page.select_option("#bulk-action", "delete")
    page.click("#bulk-apply")
    page.wait_for_selector("#bulk-confirm-delete")
    assert {"gone1", "gone2"} <= set(_states(site))  # nothing deleted before the confirmation
    asked = page.inner_text("#bulk-confirm")
    assert "Delete 2 instances" in asked and "gone1" in asked and "gone2" in asked
    page.click("#bulk-confirm-delete")
    page.wait_for_selector("#bulk-items")
    assert page.locator("#bulk-items li[data-ok=true]").count() == 2
    assert not {"gone1", "gone2"} & set(_states(site))
    ctx.close()


def test_the_instance_page_draws_graphs_of_its_history(
        browser: Browser, site: Daemon, shots: Path) -> None:
    made_instance(site, "graphed")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the sampler records a bucket a minute
        found = api(site, "GET", "/api/v1/instances/graphed/history?range=hour").json()
        if found["points"]:
            break
        time.sleep(0.5)
    ctx = context(browser)
    page = log_in(ctx, site, ADMIN)
    page.goto(f"{site.url}/ui/instances/graphed")
    page.wait_for_selector("#graphs figure#g-cpu")
    for graph in ("g-cpu", "g-memory", "g-disk", "g-net"):
        assert page.locator(f"#{graph} svg").count() == 1
    assert int(page.get_attribute("#graphs", "data-points") or 0) >= 1
    assert page.locator("#g-memory polyline").count() >= 1
    page.click("#range-month")
    page.wait_for_selector("#range-month[aria-current]")
    page.click("#range-day")
    page.wait_for_selector("#range-day[aria-current]")
    _screenshot(page, shots, "instance-graphs")
    _fits_a_phone(page, f"{site.url}/ui/instances/graphed")
    ctx.close()


def test_console_tickets_are_one_use_and_for_this_sites_pages(
        browser: Browser, site: Daemon) -> None:
    made_instance(site, "ticketed")
    ctx = context(browser)
    page = log_in(ctx, site, ADMIN)
    page.goto(f"{site.url}/ui/instances/ticketed/console")
    page.wait_for_selector("#console[data-connected=true]")
    outcome = page.evaluate("""async () => {
        const csrf = document.getElementById('console').dataset.csrf;
        const url = '/ui/instances/ticketed/console/ticket?kind=serial';
        const take = async () => (await (await fetch(url,
            {method: 'POST', headers: {'X-CSRF-Token': csrf}})).json()).ticket;
        const open = (ticket) => new Promise((done) => {
            const ws = new WebSocket(
                'wss://' + location.host + '/ui/consoles/serial?ticket=' + ticket);
            ws.onopen = () => setTimeout(() => {
                if (ws.readyState === 1) { ws.close(); done('open'); } }, 500);
            ws.onclose = (e) => done(String(e.code) + ' ' + e.reason);
        });
        const ticket = await take();
        const first = await open(ticket);
        const again = await open(ticket);
        const noCsrf = (await fetch(url, {method: 'POST'})).status;
        return [first, again, noCsrf];
    }""")
    assert outcome[0] == "open"
    assert outcome[1].startswith("4403") and "unknown, used or expired" in outcome[1]
    assert outcome[2] == 403  # no CSRF token, no ticket
    ctx.close()


NEW_PAGES = ("/ui/operations", "/ui/templates", "/ui/networks", "/ui/storage", "/ui/backups")


def test_templates_are_imported_by_upload_and_exported(
        browser: Browser, site: Daemon, tmp_path: Path) -> None:
    artifact = tmp_path / "webmini.corral-template"
    export_template(make_template(tmp_path / "webmini-src", "webmini"), artifact)
    ctx = context(browser, accept_downloads=True)
    page = log_in(ctx, site, OPERATOR)
    page.click("nav >> text=Templates")
    page.set_input_files("#import-file", str(artifact))
    page.click("#import-submit")
    page.wait_for_selector("#notice >> text=imported template webmini")
    assert page.locator("#templates tr[data-name=webmini]").count() == 1
    page.set_input_files("#import-file", str(artifact))
    page.click("#import-submit")  # again, without "replace": the service's refusal
    page.wait_for_selector("#problem")
    assert "already installed" in page.inner_text("#problem")
    with page.expect_download() as download:
        page.click("#export-webmini")
    saved = tmp_path / "back.corral-template"
    download.value.save_as(saved)
    with tarfile.open(saved) as a, tarfile.open(artifact) as b:
        assert [m.name for m in a] == [m.name for m in b]
    ctx.close()


def test_traffic_classes_targets_pools_and_operations_pages(
        browser: Browser, site: Daemon) -> None:
    made_instance(site, "opsone")
    ctx = context(browser)
    page = log_in(ctx, site, OPERATOR)
    page.goto(f"{site.url}/ui/networks")
    page.fill("#c-name", "web2local")
    page.fill("#c-ranges", "not-a-range")
    page.click("#class-form button")
    page.wait_for_selector("#class-form .field-error, #class-form .error")  # the API's words
    page.fill("#c-ranges", "10.0.0.0/8, fd00::/8")
    page.click("#class-form button")
    page.wait_for_selector("#notice >> text=traffic class web2local set")
    assert "10.0.0.0/8" in page.inner_text("#classes")

    page.goto(f"{site.url}/ui/backups")
    page.fill("#t-name", "web2nas")
    page.fill("#t-url", str(site.state_dir / "web2-backups"))
    page.click("#target-form button")
    page.wait_for_selector("#notice >> text=backup target web2nas added")

    page.goto(f"{site.url}/ui/storage")
    assert "default" in page.inner_text("#pools")

    page.goto(f"{site.url}/ui/operations")
    row = page.locator("#operations-table tr[data-status=success]").first
    assert row.locator("progress").get_attribute("value") == "1.0"
    op_id = row.get_attribute("data-op")
    page.click(f"tr[data-op='{op_id}'] td:first-child a")
    page.wait_for_url(f"**/ui/operations/{op_id}")
    assert page.inner_text(".tag.status-success") == "success"
    refused = page.evaluate("""async (id) => (await fetch('/ui/operations/' + id + '/cancel',
        {method: 'POST', headers: {'X-CSRF-Token': document.body.getAttribute('hx-headers')
            .split('"')[3], 'HX-Request': 'true'}})).text()""", op_id)
    assert f"operation {op_id} already ended success" in refused
    ctx.close()


def test_new_pages_are_screenshotted_and_fit_a_phone(
        browser: Browser, site: Daemon, shots: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    ctx = context(browser)
    page = log_in(ctx, site, ADMIN)
    for path in NEW_PAGES:
        page.goto(f"{site.url}{path}")
        _screenshot(page, shots, path.strip("/").replace("/", "-"))
        _fits_a_phone(page, f"{site.url}{path}")
    ctx.close()
    with capsys.disabled():
        print(f"\nweb console screenshots (new pages): {shots}")


def test_the_instance_page_converts_and_migrates(browser: Browser, site: Daemon) -> None:
    made_instance(site, "mover", start=False)
    ctx = context(browser)
    page = log_in(ctx, site, ADMIN)
    page.goto(f"{site.url}/ui/instances/mover")
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#convert-submit")  # the fake template has no kernel yet: the service says so
    page.wait_for_selector("#problem >> text=has no kernel")
    (site.state_dir / "templates" / "tiny" / "vmlinux").write_bytes(b"\x7fELF")
    page.click("#convert-submit")
    page.wait_for_selector("#notice >> text=converted to VM")
    assert json.loads(site.cli("info", "mover", "-f", "json", check=True).stdout)["type"] == "vm"
    page.fill("#migrate-target", "nowhere")  # no remotes paired: the service's refusal
    page.click("#migrate-submit")
    page.wait_for_selector("#problem")
    assert "nowhere" in page.inner_text("#problem")
    ctx.close()


def test_an_admin_gives_a_user_a_new_api_token(browser: Browser, site: Daemon) -> None:
    site.cli("user", "add", "tokenuser", "--role", "owner", check=True)
    ctx = context(browser)
    page = log_in(ctx, site, ADMIN)
    page.goto(f"{site.url}/ui/users")
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#token-tokenuser")
    page.wait_for_selector("#new-token >> text=A new API token for tokenuser")
    token = page.inner_text("#new-token code")
    answer = api(site, "GET", "/api/v1/instances", token=token)
    assert answer.status_code == 200  # the new token works, as its owner
    ctx.close()
