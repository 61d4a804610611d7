"""The web console's infrastructure forms and operations in a real browser (Debian's
Chromium, Playwright) against a real corrald (fake driver): networks, storage pools and
backup schedules created, changed and deleted (the API's message at the field; a delete only
after its confirmation), a slow bulk operation cancelled from the operations page, and a
console session that outlives a corrald restart. The changed pages are screenshotted light
and dark into the folder ``shots`` prints."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

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
from tests.integration.test_web_pages import _fits_a_phone, _screenshot

__all__ = ["shots"]

try:
    from playwright.sync_api import Browser, Dialog, Page, sync_playwright
    from playwright.sync_api import Error as PlaywrightError
except ImportError:  # pragma: no cover - the dev extra installs it
    sync_playwright = None  # type: ignore[assignment]

pytestmark = BROWSER_MARKS


class Site:
    """The module's daemon, which one test restarts (same state, same port)."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.daemon = start_daemon(state)
        self.port = int(self.daemon.url.rsplit(":", 1)[1])

    def restart(self) -> None:
        stop_daemon(self.daemon)
        self.daemon = start_daemon(self.state, port=self.port)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    state = tmp_path_factory.mktemp("web-infra")
    write_fake_template(state / "templates")
    found = Site(state)
    try:
        _users(found.daemon)
        yield found
    finally:
        stop_daemon(found.daemon)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        found = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield found
        finally:
            found.close()


def _confirming(page: Page, asked: list[str]) -> None:
    """Accept every confirmation, noting what it asked."""
    def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()
    page.on("dialog", accept)


def _json(daemon: Daemon, *args: str) -> object:
    return json.loads(daemon.cli(*args, "--format", "json", check=True).stdout)


def test_networks_are_created_with_errors_at_the_field_and_deleted(
        browser: Browser, site: Site, shots: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    with capsys.disabled():
        print(f"\nweb console screenshots (infrastructure forms): {shots}")
    daemon = site.daemon
    ctx = context(browser)
    page = log_in(ctx, daemon, OPERATOR)
    page.goto(f"{daemon.url}/ui/networks")
    page.fill("#n-name", "webnet")
    page.select_option("#n-type", "nat")
    page.fill("#n-subnets", "10.77.0.0/24")
    page.fill("#n-gateways", "10.78.0.1")  # outside the subnet: the service refuses
    page.click("#network-submit")
    page.wait_for_selector("#n-gateways-error")
    assert "gateway 10.78.0.1 is in none of the subnets" in page.inner_text("#n-gateways-error")
    assert page.input_value("#n-subnets") == "10.77.0.0/24"  # what was typed stays
    page.fill("#n-gateways", "")
    page.fill("#n-vlan", "7")  # a VLAN id on a NAT network: the API's words, at the field
    page.click("#network-submit")
    page.wait_for_selector("#n-vlan-error >> text=applies to networks of type vlan only")
    page.fill("#n-vlan", "")
    page.click("#network-submit")
    page.wait_for_selector("#notice >> text=network webnet created")
    assert "10.77.0.0/24" in page.inner_text("#networks")
    assert [n["name"] for n in api(daemon, "GET", "/api/v1/networks").json()] == ["webnet"]
    _screenshot(page, shots, "networks-form")
    _fits_a_phone(page, f"{daemon.url}/ui/networks")

    asked: list[str] = []
    _confirming(page, asked)
    page.click("#delete-net-webnet")
    page.wait_for_selector("#notice >> text=network webnet deleted")
    assert asked == ["Delete network webnet?"]
    assert api(daemon, "GET", "/api/v1/networks").json() == []
    ctx.close()


def test_storage_pools_are_created_and_deleted(
        browser: Browser, site: Site, shots: Path) -> None:
    daemon = site.daemon
    ctx = context(browser)
    page = log_in(ctx, daemon, OPERATOR)
    page.goto(f"{daemon.url}/ui/storage")
    page.fill("#p-name", "Bad_Name")
    page.click("#pool-submit")
    page.wait_for_selector("#p-name-error >> text=is not a DNS label")
    page.fill("#p-name", "webpool")
    page.select_option("#p-driver", "btrfs")
    page.fill("#p-size", "lots")  # no size: the API's parse_size message, at the field
    page.click("#pool-submit")
    page.wait_for_selector("#p-size-error")
    page.select_option("#p-driver", "dir")
    page.fill("#p-size", "")
    where = site.state / "web-pool"
    page.fill("#p-path", str(where))
    page.click("#pool-submit")
    page.wait_for_selector("#notice >> text=storage pool webpool created")
    assert where.is_dir()
    assert "webpool" in page.inner_text("#pools")
    page.fill("#p-name", "webpool")
    page.click("#pool-submit")  # a second of the name: the service's conflict, on the form
    page.wait_for_selector("#pool-form .error >> text=already exists")
    _screenshot(page, shots, "storage-form")
    _fits_a_phone(page, f"{daemon.url}/ui/storage")

    asked: list[str] = []
    _confirming(page, asked)
    assert page.locator("#delete-pool-default").count() == 0  # the default pool stays
    page.click("#delete-pool-webpool")
    page.wait_for_selector("#notice >> text=storage pool webpool deleted")
    assert asked == ["Delete storage pool webpool?"]
    assert "webpool" not in {p["name"] for p in api(daemon, "GET",
                                                     "/api/v1/storage/pools").json()}
    ctx.close()


def test_backup_schedules_are_set_changed_and_removed(
        browser: Browser, site: Site, shots: Path) -> None:
    daemon = site.daemon
    made_instance(daemon, "nightly", start=False)
    answer = api(daemon, "POST", "/api/v1/backup-targets",
                 json={"name": "webnas", "url": str(site.state / "web-backups")})
    assert answer.status_code == 201, answer.text
    ctx = context(browser)
    page = log_in(ctx, daemon, OPERATOR)
    page.goto(f"{daemon.url}/ui/backups")
    page.select_option("#s-instance", "nightly")
    page.select_option("#s-target", "webnas")
    page.fill("#s-daily", "25:00")
    page.click("#schedule-submit")
    page.wait_for_selector("#s-daily-error >> text=is not a time HH:MM")
    page.fill("#s-daily", "02:30")
    page.fill("#s-tz", "Europe/Berlin")
    page.fill("#s-keep_last", "x")
    page.click("#schedule-submit")
    page.wait_for_selector("#s-keep_last-error >> text=is not a whole number")
    page.fill("#s-keep_last", "7")
    page.click("#schedule-submit")
    page.wait_for_selector("#notice >> text=backup schedule of nightly set")
    listed = api(daemon, "GET", "/api/v1/backup-schedules").json()
    assert [(s["instance"], s["daily"], s["tz"], s["keep_last"]) for s in listed] == [
        ("nightly", "02:30", "Europe/Berlin", 7)]

    page.select_option("#s-instance", "nightly")  # set again: the schedule changes
    page.select_option("#s-target", "webnas")
    page.fill("#s-daily", "04:15")
    page.click("#schedule-submit")
    page.wait_for_selector("#notice >> text=daily at 04:15")
    listed = api(daemon, "GET", "/api/v1/backup-schedules").json()
    assert [(s["daily"], s["keep_last"]) for s in listed] == [("04:15", 0)]
    assert "04:15" in page.inner_text("#schedules")
    _screenshot(page, shots, "backups-form")
    _fits_a_phone(page, f"{daemon.url}/ui/backups")

    asked: list[str] = []
    _confirming(page, asked)
    page.click("#delete-schedule-nightly")
    page.wait_for_selector("#notice >> text=backup schedule of nightly removed")
    assert asked == ["Delete the backup schedule of nightly?"]
    assert api(daemon, "GET", "/api/v1/backup-schedules").json() == []
    ctx.close()


def test_a_slow_bulk_operation_is_cancelled_from_the_operations_page(
        browser: Browser, site: Site) -> None:
    """A bulk exec of a command that takes 2 s, one instance at a time (parallel 1), over
    four instances: cancelled from the page while its first item runs, it starts no other
    item and ends ``cancelled``."""
    daemon = site.daemon
    names = [f"slow{i}" for i in range(4)]
    made = api(daemon, "POST", "/api/v1/bulk", json={
        "action": "create", "names": names, "create": {"type": "ct", "template": "tiny",
                                                       "start": True}}).json()["id"]
    done = api(daemon, "GET", f"/api/v1/operations/{made}/wait?timeout=60").json()
    assert done["status"] == "success", done
    ctx = context(browser)
    page = log_in(ctx, daemon, OPERATOR)
    answer = api(daemon, "POST", "/api/v1/bulk", json={
        "action": "exec", "names": names, "parallel": 1, "argv": ["sleep", "2"]})
    assert answer.status_code == 202, answer.text
    op_id = answer.json()["id"]
    page.goto(f"{daemon.url}/ui/operations")
    row = f"#operations-table tr[data-op='{op_id}']"
    page.wait_for_selector(f"{row}[data-status=running]")
    asked: list[str] = []
    _confirming(page, asked)
    page.click(f"#cancel-{op_id}")
    page.wait_for_selector(f"#notice >> text=asked operation {op_id} to stop")
    page.wait_for_selector(f"{row}[data-status=cancelled]", timeout=20000)  # live refresh
    assert asked and asked[0].startswith("Cancel bulk")
    children = api(daemon, "GET", f"/api/v1/operations/{op_id}/children").json()
    statuses = sorted(c["status"] for c in children)
    assert statuses.count("skipped") >= 2, statuses  # at most two items ran
    assert api(daemon, "GET", f"/api/v1/operations/{op_id}").json()["status"] == "cancelled"
    ctx.close()


def test_the_serial_console_fits_the_page_and_says_a_size_it_cannot_set(
        browser: Browser, site: Site) -> None:
    """The fake driver's console is a byte stream with no window size (like a VM's serial
    line): the terminal still fits the page, and the page says how to set the size."""
    daemon = site.daemon
    made_instance(daemon, "sized")
    ctx = context(browser)
    page = log_in(ctx, daemon, ADMIN)
    page.goto(f"{daemon.url}/ui/instances/sized/console")
    page.wait_for_selector("#console[data-resized=false]")
    wide = int(page.get_attribute("#console", "data-cols") or 0)
    assert wide > 80  # fitted to 1280 px, not the fixed 80 columns
    assert "stty cols" in page.inner_text("#console-status")
    page.set_viewport_size({"width": 390, "height": 700})
    page.wait_for_function("(was) => Number(document.querySelector('#console')"
                           ".dataset.cols) < was", arg=wide)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    ctx.close()


def _session_rows(state: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(state / "corral.db") as db:
        return list(db.execute("SELECT secret_hash, user FROM web_sessions"))


def _reload(page: Page) -> None:
    """Reload; again if Chromium saw the host's interfaces change meanwhile (other tests
    on this host make and remove network namespaces and interfaces)."""
    for attempt in range(3):
        try:
            page.reload()
            return
        except PlaywrightError as exc:
            if "ERR_NETWORK_CHANGED" not in str(exc) or attempt == 2:
                raise


def test_a_console_session_outlives_a_corrald_restart(browser: Browser, site: Site) -> None:
    ctx = context(browser)
    page = log_in(ctx, site.daemon, ADMIN)
    secret = next(c["value"] for c in ctx.cookies() if c["name"] == "corral_session")
    key = hashlib.sha256(secret.encode()).hexdigest()
    rows = _session_rows(site.state)
    assert (key, "admin") in rows and not any(secret in h for h, _u in rows)  # a hash only
    page.goto(f"{site.daemon.url}/ui/networks")
    site.restart()
    _reload(page)
    assert page.url == f"{site.daemon.url}/ui/networks"  # not sent to the login page
    page.fill("#c-name", "afterboot")  # a change: the session's CSRF token still holds
    page.fill("#c-ranges", "192.168.0.0/16")
    page.click("#class-form button")
    page.wait_for_selector("#notice >> text=traffic class afterboot set")
    page.click("#logout")
    page.wait_for_url("**/ui/login")
    assert key not in {h for h, _u in _session_rows(site.state)}  # logout deleted it
    ctx.close()
