"""Helpers for the browser tests: a server thread, console watching, axe-core, keyboard.

Everything here drives a real headless Chromium (Debian's ``/usr/bin/chromium``) through
Playwright's async API; the fixtures that hand these out live in ``conftest.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from aiohttp import web
from playwright.async_api import ConsoleMessage, Error, Locator, Page

CHROMIUM = "/usr/bin/chromium"
#: Flags for a quiet, reproducible, offline browser (no sandbox: the tests run as root).
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

#: axe-core comes from the wheel of axe-playwright-python, pinned exactly in
#: pyproject.toml; its axe.min.js is axe-core 4.12.1 (MPL-2.0). The checksum pins the
#: rules the tests run: a different file is an error until someone looks at it.
AXE_VERSION = "4.12.1"
AXE_SHA256 = "84494fec757e4710dc751c8d7a636e457f4532f08f85c86dc9070133fbff53bc"
#: WCAG 2.0 and 2.1, levels A and AA (axe-core's tags).
WCAG_21_AA = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa")
#: The impacts that fail a page.
FAILING_IMPACTS = ("serious", "critical")


# -- a server on 127.0.0.1 -------------------------------------------------------------


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on a real 127.0.0.1 port the kernel picks, as ``fora serve`` does
    (``node.server.start_site``); yields its base URL, ``http://127.0.0.1:PORT``."""
    from node.server import start_site

    runner = await start_site(app, "127.0.0.1", 0)
    try:
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


# -- console errors and page errors ---------------------------------------------------


def _is_favicon_guess(message: ConsoleMessage) -> bool:
    """Chromium fetches ``/favicon.ico`` by itself when a page names no icon; that
    request failing is the browser's guess, not an error of the page."""
    url = message.location.get("url", "")
    return url.endswith("/favicon.ico") and message.text.startswith("Failed to load resource")


@dataclass
class ConsoleWatch:
    """Collects a page's console errors and uncaught exceptions.

    The ``page`` fixture fails the test when anything is left here at its end; a test
    that expects an error takes it with :meth:`take`. Failed loads (a 404 script or
    style sheet) count, as the console shows them; only the browser's own guess at
    ``/favicon.ico`` does not.
    """

    errors: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", self._on_page_error)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "assert") and not _is_favicon_guess(message):
            where = message.location.get("url", "")
            line = message.location.get("lineNumber")
            at = f" ({where}:{line})" if where else ""
            self.errors.append(f"console.{message.type}: {message.text}{at}")

    def _on_page_error(self, error: Error) -> None:
        self.errors.append(f"uncaught {error.name or 'error'}: {error.message}")

    def take(self) -> list[str]:
        """The errors seen so far; they no longer fail the test."""
        taken, self.errors = self.errors, []
        return taken

    def check(self) -> None:
        """Raise ``AssertionError`` listing every error seen (and forget them)."""
        errors = self.take()
        if errors:
            listing = "\n".join(f"  - {e}" for e in errors)
            raise AssertionError(f"JavaScript errors on the page ({len(errors)}):\n{listing}")


# -- axe-core -----------------------------------------------------------------------


def axe_source() -> str:
    """axe.min.js from the pinned wheel, after checking its SHA-256."""
    data = (resources.files("axe_playwright_python") / "axe.min.js").read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != AXE_SHA256:
        raise AssertionError(
            f"axe.min.js has SHA-256 {digest}, expected {AXE_SHA256} (axe-core {AXE_VERSION});"
            " the axe-playwright-python pin in pyproject.toml changed: review the new axe-core"
            " release and update AXE_VERSION and AXE_SHA256 in tests/browser/tools.py"
        )
    return data.decode("utf-8")


_AXE_RUN = """async (tags) => {
    const results = await axe.run(document, {
        runOnly: {type: "tag", values: tags},
        resultTypes: ["violations"],
    });
    return {version: axe.version, violations: results.violations};
}"""


async def axe_violations(page: Page, tags: tuple[str, ...] = WCAG_21_AA) -> list[dict[str, Any]]:
    """Run axe-core on the page as it is now; every violation of the ``tags`` rules.

    The script goes in through the DevTools protocol, so a strict Content-Security-Policy
    on the page does not stop it (and is not loosened for the test).
    """
    await page.wait_for_load_state()  # after a click, the new page may be half parsed
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        await page.evaluate(axe_source())
    result = await page.evaluate(_AXE_RUN, list(tags))
    if result["version"] != AXE_VERSION:
        raise AssertionError(f"axe-core {result['version']} ran, expected {AXE_VERSION}")
    return list(result["violations"])


def format_violations(violations: list[dict[str, Any]], url: str = "") -> str:
    """A readable report: one block per rule, with the elements and what to fix."""
    lines = [f"{len(violations)} accessibility violation(s) on {url or 'the page'}:"]
    for v in violations:
        lines.append(f"[{v.get('impact')}] {v['id']}: {v['help']} ({v['helpUrl']})")
        for node in v["nodes"]:
            target = " ".join(str(t) for t in node.get("target", []))
            lines.append(f"    at {target}: {node.get('html', '')[:160]}")
            summary = (node.get("failureSummary") or "").strip()
            for row in summary.splitlines():
                lines.append(f"        {row.strip()}")
    return "\n".join(lines)


async def axe_check(
    page: Page,
    *,
    tags: tuple[str, ...] = WCAG_21_AA,
    impacts: tuple[str, ...] = FAILING_IMPACTS,
) -> list[dict[str, Any]]:
    """Fail (``AssertionError`` with a readable report) on any WCAG 2.1 A/AA violation
    whose impact is serious or critical; return the milder ones for the test to judge."""
    violations = await axe_violations(page, tags)
    failing = [v for v in violations if v.get("impact") in impacts]
    if failing:
        raise AssertionError(format_violations(failing, page.url))
    return violations


# -- keyboard -------------------------------------------------------------------------

_DESCRIBE_FOCUS = """() => {
    const el = document.activeElement;
    if (!el || el === document.body || el === document.documentElement) return null;
    const seen = (window.__foraTabSeen = window.__foraTabSeen || []);
    let index = seen.indexOf(el);
    const again = index >= 0;
    if (!again) { seen.push(el); index = seen.length - 1; }
    const tag = el.tagName.toLowerCase();
    const name = (el.getAttribute("aria-label") || el.innerText || el.value
                  || el.getAttribute("name") || "").trim().replace(/\\s+/g, " ").slice(0, 60);
    const id = el.id ? "#" + el.id : "";
    const href = el.getAttribute("href");
    return {again, index, text: `${tag}${id} "${name}"` + (href ? ` -> ${href}` : "")};
}"""


async def _reset_focus(page: Page) -> None:
    """Put the focus navigation starting point at the top of the document: focus the
    body (made focusable for the walk, never a Tab stop), so the next Tab goes to the
    first element in tab order whatever was focused or clicked before."""
    await page.wait_for_load_state()
    await page.evaluate(
        """() => {
        window.__foraTabSeen = [];
        const body = document.body;
        if (!body.hasAttribute("tabindex")) {
            body.setAttribute("tabindex", "-1");
            body.addEventListener("blur", () => body.removeAttribute("tabindex"), {once: true});
        }
        body.focus();
        window.scrollTo(0, 0);
    }"""
    )


async def tab_order(page: Page, limit: int = 200) -> list[str]:
    """The elements Tab visits from the top of the page, in order, each once.

    Each is ``tag#id "accessible text" -> href``. Stops when focus leaves the page or
    comes back to an element already listed; fails if ``limit`` Tabs do not get there.
    """
    await _reset_focus(page)
    order: list[str] = []
    for _ in range(limit):
        await page.keyboard.press("Tab")
        focused = await page.evaluate(_DESCRIBE_FOCUS)
        if focused is None:
            if order:
                return order
            continue  # the first Tab can land on the document itself
        if focused["again"]:
            return order
        order.append(focused["text"])
    raise AssertionError(f"Tab did not cycle within {limit} presses: {order[:10]} ...")


async def tab_to(page: Page, target: Locator, limit: int = 200) -> int:
    """Press Tab from the top of the page until ``target`` has focus; the presses it took.

    Fails (``AssertionError``) when Tab never reaches it: not keyboard-reachable.
    """
    await _reset_focus(page)
    handle = await target.element_handle()
    for presses in range(1, limit + 1):
        await page.keyboard.press("Tab")
        if await page.evaluate("(el) => document.activeElement === el", handle):
            return presses
    raise AssertionError(f"Tab never reached {target} in {limit} presses: not keyboard-reachable")


async def activate_by_keyboard(page: Page, target: Locator, key: str = "Enter") -> None:
    """Reach ``target`` with Tab alone, then press ``key`` (Enter, or Space for buttons
    and checkboxes) on it, as a keyboard-only user would."""
    await tab_to(page, target)
    await page.keyboard.press(key)


_FOCUS_BOX = """() => {
    const r = document.activeElement.getBoundingClientRect();
    return {x: r.x, y: r.y, width: r.width, height: r.height};
}"""


async def invisible_focus(page: Page, limit: int = 200, pad: int = 4) -> list[str]:
    """The elements in tab order that look the same focused and not (WCAG 2.4.7).

    Tab to each element, photograph it with ``pad`` pixels around (outlines are drawn
    outside the box), blur it, photograph again, focus it back and go on; identical
    pictures mean no visible focus indicator. Playwright hides the text caret in
    screenshots, so a text field needs a real indicator too.
    """
    await _reset_focus(page)
    missing: list[str] = []
    seen = 0
    for _ in range(limit):
        await page.keyboard.press("Tab")
        focused = await page.evaluate(_DESCRIBE_FOCUS)
        if focused is None:
            if seen:
                return missing
            continue
        if focused["again"]:
            return missing
        seen += 1
        box = await page.evaluate(_FOCUS_BOX)
        clip = {
            "x": max(0.0, box["x"] - pad),
            "y": max(0.0, box["y"] - pad),
            "width": box["width"] + 2 * pad,
            "height": box["height"] + 2 * pad,
        }
        focused_shot = await page.screenshot(clip=clip, animations="disabled")
        await page.evaluate(
            "() => { window.__foraFocus = document.activeElement; document.activeElement.blur(); }"
        )
        blurred_shot = await page.screenshot(clip=clip, animations="disabled")
        await page.evaluate("() => window.__foraFocus.focus()")
        if focused_shot == blurred_shot:
            missing.append(focused["text"])
    raise AssertionError(f"Tab did not cycle within {limit} presses")
