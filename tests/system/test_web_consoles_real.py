"""Consoles in a real browser against real guests: Debian's Chromium (Playwright,
``executable_path``) on corrald with the real drivers. A container's serial console
(xterm.js) runs ``uname -a``, shows it again after a reload, and serves two viewers at once;
a VM's VNC display (noVNC, a firmware-booted image: SeaBIOS draws its text screen) is drawn
on the page's canvas. The console pages are screenshotted light and dark."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.templates.image import TemplateImage
from tests.integration.conftest import Daemon, real_daemon_in
from tests.integration.test_web_console import (
    ADMIN,
    BROWSER_MARKS,
    CHROMIUM,
    OPERATOR,
    _users,
    context,
    log_in,
    shots,
)
from tests.system.fixtures_template import tiny_template
from tests.system.test_daemon_real import _skip_reason

__all__ = ["shots", "tiny_template"]

try:
    from playwright.sync_api import Browser, Page, sync_playwright
    from playwright.sync_api import Error as PlaywrightError
except ImportError:  # pragma: no cover - the dev extra installs it
    sync_playwright = None  # type: ignore[assignment]

pytestmark = [pytest.mark.system, *BROWSER_MARKS]
MiB = 1024**2
ROWS = "#console .xterm-rows"


@pytest.fixture(scope="module")
def site(tiny_template: TemplateImage) -> Iterator[Daemon]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    state = Path(tempfile.mkdtemp(prefix="corral-web2-"))
    state.chmod(0o711)  # unprivileged containers (host uid 100000) walk to their disks
    shutil.copytree(tiny_template.directory, state / "templates" / "tiny")
    with real_daemon_in(state) as daemon:
        _users(daemon)
        yield daemon


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        found = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield found
        finally:
            found.close()


def _console_shows(page: Page, text: str) -> None:
    try:
        page.wait_for_function(
            "([rows, text]) => (document.querySelector(rows)?.textContent || '').includes(text)",
            arg=[ROWS, text], timeout=30000)
    except PlaywrightError:
        shown = page.inner_text(ROWS)
        raise AssertionError(f"the console never showed {text!r}; it shows:\n{shown}") from None


def _open(page: Page, daemon: Daemon, name: str, kind: str = "console") -> None:
    page.goto(f"{daemon.url}/ui/instances/{name}/{kind}")
    page.wait_for_selector("#console[data-connected=true]", timeout=30000)


def _type(page: Page, line: str) -> None:
    page.click("#console")
    page.keyboard.type(line)
    page.keyboard.press("Enter")


def _screenshot(page: Page, folder: Path, name: str) -> None:
    for theme in ("light", "dark"):
        page.emulate_media(color_scheme=theme)
        page.screenshot(path=str(folder / f"{name}-{theme}.png"), full_page=True)
    page.emulate_media(color_scheme="light")


def test_a_containers_serial_console_reload_and_two_viewers(
        browser: Browser, site: Daemon, shots: Path) -> None:
    site.cli("create", "con1", "--type", "ct", "--template", "tiny", "--start", check=True)
    ctx = context(browser)
    page = log_in(ctx, site, ADMIN)
    page.goto(f"{site.url}/ui/instances/con1")
    page.click("#open-console")
    page.wait_for_selector("#console[data-connected=true]", timeout=30000)
    _type(page, "uname -a")
    _console_shows(page, "Linux con1")  # the output, not the typed line
    _screenshot(page, shots, "console-serial")

    page.reload()  # the same console again, its recent output first
    page.wait_for_selector("#console[data-connected=true]", timeout=30000)
    _console_shows(page, "Linux con1")

    other_ctx = context(browser)  # a second viewer (another user, another browser)
    other = log_in(other_ctx, site, OPERATOR)
    _open(other, site, "con1")
    _type(other, "echo viewer-$((6*7))")
    for each in (page, other):
        _console_shows(each, "viewer-42")
    _type(page, "echo first-$((5*5))")
    _console_shows(other, "first-25")

    page.set_viewport_size({"width": 390, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    other_ctx.close()
    ctx.close()
    site.cli("delete", "--force", "con1", check=True)


def _size(page: Page) -> str:
    """The terminal's size as ``stty size`` prints it (rows, columns)."""
    return (f"{page.get_attribute('#console', 'data-rows')} "
            f"{page.get_attribute('#console', 'data-cols')}")


def test_a_containers_terminal_follows_the_browser_windows_size(
        browser: Browser, site: Daemon) -> None:
    site.cli("create", "con2", "--type", "ct", "--template", "tiny", "--start", check=True)
    ctx = context(browser)
    page = log_in(ctx, site, ADMIN)
    _open(page, site, "con2")
    page.wait_for_selector("#console[data-resized=true]", timeout=30000)
    first = _size(page)
    assert first != "24 80"  # fitted to the page at 1280x800, not the fixed 80x24
    _type(page, "stty size")
    _console_shows(page, first)
    page.set_viewport_size({"width": 700, "height": 500})
    page.wait_for_function("(was) => { const e = document.querySelector('#console'); "
                           "return e.dataset.rows + ' ' + e.dataset.cols !== was; }", arg=first)
    second = _size(page)
    page.wait_for_timeout(300)  # the resize message is sent before the next keys
    _type(page, "clear; stty size")
    _console_shows(page, second)
    ctx.close()
    site.cli("delete", "--force", "con2", check=True)


def test_a_vms_vnc_display_is_drawn(browser: Browser, site: Daemon, shots: Path) -> None:
    image = site.state_dir / "boot.raw"
    with image.open("wb") as f:  # a boot sector that spins ("jmp $") under SeaBIOS's screen
        f.write(b"\xeb\xfe" + b"\0" * 508 + b"\x55\xaa")
        f.truncate(8 * MiB)
    site.cli("create", "vnc1", "--type", "vm", "--image", str(image), "--memory", "64M",
             "--start", check=True)
    ctx = context(browser)
    page = log_in(ctx, site, ADMIN)
    page.goto(f"{site.url}/ui/instances/vnc1")
    page.click("#open-vnc")
    page.wait_for_selector("#console[data-connected=true]", timeout=30000)
    drawn = """() => {
        const canvas = document.querySelector('#console canvas');
        if (!canvas || !canvas.width || !canvas.height) return false;
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        for (let i = 0; i < data.length; i += 4)
            if (data[i] > 40 || data[i + 1] > 40 || data[i + 2] > 40) return true;
        return false;
    }"""
    page.wait_for_function(drawn, timeout=30000)  # SeaBIOS's text, on the page's canvas
    _screenshot(page, shots, "console-vnc")
    page.set_viewport_size({"width": 390, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    ctx.close()
    site.cli("stop", "vnc1", "--timeout", "1", check=True)
    site.cli("delete", "vnc1", check=True)
