"""The browser-test tools can fail: each serves a deliberately broken page from a
test-only aiohttp app on 127.0.0.1 and checks that the helper catches the fault, and a
clean page to check that it does not cry wolf."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import Page

from .tools import (
    AXE_VERSION,
    ConsoleWatch,
    activate_by_keyboard,
    axe_check,
    axe_violations,
    invisible_focus,
    serve,
    tab_order,
    tab_to,
)

# A 1x1 transparent PNG.
PIXEL = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)


def html_page(body: str, *, title: str = "Test page", head: str = "") -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{title}</title><link rel=icon href='{PIXEL}'>{head}</head>"
        f"<body>{body}</body></html>"
    )


CLEAN = html_page(
    """
    <a class=skip href=#main>Skip to content</a>
    <header><nav aria-label=Main><a href=/clean id=home>Home</a> <a href=/other>Other</a></nav>
    </header>
    <main id=main>
      <h1>A clean page</h1>
      <p>Plain black text on white.</p>
      <img src="PIXEL" alt="A transparent pixel">
      <form action=/clean method=get>
        <label for=q>Search</label> <input id=q name=q type=search>
        <button type=submit>Go</button>
      </form>
      <p id=status>idle</p>
      <button type=button id=toggle>Toggle</button>
      <div id=clickable-div>Click me (mouse only)</div>
    </main>
    <script src=/static/page.js></script>
    """.replace("PIXEL", PIXEL)
)

PAGE_JS = """
let presses = 0;
document.getElementById("toggle").addEventListener("click", () => {
  presses += 1;
  document.getElementById("status").textContent = `pressed ${presses}`;
});
document.getElementById("clickable-div").addEventListener("click", () => {
  document.getElementById("status").textContent = "div clicked";
});
"""

BROKEN = {
    "/no-alt": html_page(f"<main><h1>Pictures</h1><img src='{PIXEL}'></main>"),
    "/no-label": html_page("<main><h1>Form</h1><form><input type=text name=x></form></main>"),
    "/low-contrast": html_page(
        "<main><h1>Faint</h1><p class=faint>Light grey text on white.</p></main>",
        head="<link rel=stylesheet href=/static/faint.css>",
    ),
    "/console-error": html_page(
        "<main><h1>Logs</h1></main><script src=/static/log-error.js></script>"
    ),
    "/page-error": html_page("<main><h1>Throws</h1></main><script src=/static/throw.js></script>"),
    "/no-focus-ring": html_page(
        "<main><h1>Rings</h1><p><a href=/clean>Plain link</a> <a href=/other>Other</a>"
        " <button type=button>Styled</button></p></main>",
        head="<link rel=stylesheet href=/static/no-ring.css>",
    ),
    "/missing-script": html_page(
        "<main><h1>Missing</h1></main><script src=/static/nowhere.js></script>"
    ),
}

STATIC = {
    "page.js": PAGE_JS,
    "faint.css": ".faint { color: #c8c8c8; background: #ffffff; }",
    "no-ring.css": (
        "a:focus { outline: none; }"
        " button:focus { outline: none; }"
        " button:focus-visible { box-shadow: 0 0 0 3px #1a4f8b; }"
    ),
    "log-error.js": 'console.error("boom: something went wrong");',
    "throw.js": 'throw new TypeError("kaboom is not a function");',
}


def make_test_app() -> web.Application:
    async def page_handler(request: web.Request) -> web.Response:
        text = CLEAN if request.path in ("/clean", "/other") else BROKEN[request.path]
        return web.Response(text=text, content_type="text/html")

    async def static_handler(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound()
        kind = "text/css" if name.endswith(".css") else "text/javascript"
        return web.Response(text=STATIC[name], content_type=kind)

    app = web.Application()
    for path in ("/clean", "/other", *BROKEN):
        app.router.add_get(path, page_handler)
    app.router.add_get("/static/{name}", static_handler)
    return app


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def site() -> AsyncIterator[str]:
    """The test-only app's base URL."""
    async with serve(make_test_app()) as url:
        yield url


# -- axe-core --------------------------------------------------------------------------


async def test_clean_page_passes_axe(page: Page, site: str) -> None:
    await page.goto(site + "/clean")
    assert await axe_check(page) == []


async def rule_ids(page: Page) -> dict[str, str]:
    return {v["id"]: v["impact"] for v in await axe_violations(page)}


@pytest.mark.parametrize(
    ("path", "rule", "impact"),
    [
        ("/no-alt", "image-alt", "critical"),
        ("/no-label", "label", "critical"),
        ("/low-contrast", "color-contrast", "serious"),
    ],
)
async def test_axe_catches_broken_pages(
    page: Page, site: str, path: str, rule: str, impact: str
) -> None:
    await page.goto(site + path)
    assert (await rule_ids(page)).get(rule) == impact
    with pytest.raises(AssertionError) as failure:
        await axe_check(page)
    report = str(failure.value)
    assert f"[{impact}] {rule}:" in report
    assert site + path in report
    assert "dequeuniversity.com" in report  # the rule's help link
    assert "Fix " in report  # axe's failure summary: what to fix


async def test_axe_report_names_the_element(page: Page, site: str) -> None:
    await page.goto(site + "/low-contrast")
    with pytest.raises(AssertionError) as failure:
        await axe_check(page)
    assert 'at p: <p class="faint">Light grey text' in str(failure.value)
    assert "contrast of 1." in str(failure.value)  # about 1.7:1, far below 4.5:1


async def test_axe_is_the_pinned_version(page: Page, site: str) -> None:
    await page.goto(site + "/clean")
    await axe_violations(page)
    assert await page.evaluate("() => axe.version") == AXE_VERSION


# -- console errors ----------------------------------------------------------------------


async def test_console_error_is_caught(page: Page, site: str, console_watch: ConsoleWatch) -> None:
    await page.goto(site + "/console-error")
    assert console_watch.take() == [
        f"console.error: boom: something went wrong ({site}/static/log-error.js:0)"
    ]


async def test_uncaught_exception_is_caught(
    page: Page, site: str, console_watch: ConsoleWatch
) -> None:
    await page.goto(site + "/page-error")
    (error,) = console_watch.take()
    assert error.startswith("uncaught TypeError: kaboom is not a function")


async def test_missing_resource_is_caught(
    page: Page, site: str, console_watch: ConsoleWatch
) -> None:
    await page.goto(site + "/missing-script")
    (error,) = console_watch.take()
    assert "404" in error
    assert "/static/nowhere.js" in error


async def test_check_reports_every_error(
    page: Page, site: str, console_watch: ConsoleWatch
) -> None:
    await page.goto(site + "/console-error")
    await page.goto(site + "/page-error")
    with pytest.raises(AssertionError) as failure:
        console_watch.check()
    report = str(failure.value)
    assert "JavaScript errors on the page (2)" in report
    assert "boom: something went wrong" in report
    assert "kaboom is not a function" in report
    assert console_watch.errors == []


def test_page_fixture_fails_the_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ``page`` fixture itself fails a test that leaves an error behind (run in a
    separate pytest, with a browser and a test app of its own)."""
    root = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("PYTHONPATH", str(root))
    pytester.makeini(
        """
        [pytest]
        asyncio_mode = auto
        asyncio_default_fixture_loop_scope = function
        filterwarnings = error
        """
    )
    pytester.makeconftest(
        "from tests.browser.conftest import browser, page, console_watch, pytest_runtest_call\n"
    )
    pytester.makepyfile(
        textwrap.dedent(
            """
            import pytest
            import pytest_asyncio

            from tests.browser.test_tools import make_test_app
            from tests.browser.tools import serve

            pytestmark = pytest.mark.asyncio(loop_scope="session")

            @pytest_asyncio.fixture(loop_scope="session")
            async def site():
                async with serve(make_test_app()) as url:
                    yield url

            async def test_silent_page(page, site):
                await page.goto(site + "/clean")

            async def test_noisy_page(page, site):
                await page.goto(site + "/console-error")

            async def test_noisy_page_taken(page, site, console_watch):
                await page.goto(site + "/page-error")
                assert len(console_watch.take()) == 1
            """
        )
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*JavaScript errors on the page (1)*", "*boom: something*"])
    result.stdout.fnmatch_lines(["FAILED *test_noisy_page - AssertionError*"])


# -- keyboard ------------------------------------------------------------------------------


async def test_tab_order_lists_focusable_elements(page: Page, site: str) -> None:
    await page.goto(site + "/clean")
    assert await tab_order(page) == [
        'a "Skip to content" -> #main',
        'a#home "Home" -> /clean',
        'a "Other" -> /other',
        'input#q "q"',
        'button "Go"',
        'button#toggle "Toggle"',
    ]


async def test_activate_by_keyboard(page: Page, site: str) -> None:
    await page.goto(site + "/clean")
    assert await tab_to(page, page.locator("#toggle")) == 6
    await activate_by_keyboard(page, page.locator("#toggle"))
    assert await page.locator("#status").inner_text() == "pressed 1"
    await activate_by_keyboard(page, page.locator("#toggle"), key="Space")
    assert await page.locator("#status").inner_text() == "pressed 2"
    # Tab order is listed from the top again, whatever had focus before.
    await page.locator("#q").click()
    assert len(await tab_order(page)) == 6
    assert await page.locator("body").get_attribute("tabindex") is None


async def test_keyboard_follows_a_link(page: Page, site: str) -> None:
    await page.goto(site + "/clean")
    await activate_by_keyboard(page, page.get_by_role("link", name="Other"))
    await page.wait_for_url(site + "/other")


async def test_mouse_only_control_is_caught(page: Page, site: str) -> None:
    await page.goto(site + "/clean")
    with pytest.raises(AssertionError, match="not keyboard-reachable"):
        await tab_to(page, page.locator("#clickable-div"), limit=20)
    await page.locator("#clickable-div").click()  # a mouse reaches it
    assert await page.locator("#status").inner_text() == "div clicked"


async def test_focus_indicator_is_checked(page: Page, site: str) -> None:
    await page.goto(site + "/clean")
    assert await invisible_focus(page) == []  # the browser's own focus ring
    await page.goto(site + "/no-focus-ring")
    assert await invisible_focus(page) == ['a "Plain link" -> /clean', 'a "Other" -> /other']
