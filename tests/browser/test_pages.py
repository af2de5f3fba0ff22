"""Every page type of the web view in a real headless Chromium, on a node seeded with
every kind of content: axe-core finds no serious or critical WCAG 2.1 A/AA violation,
every focusable element shows its focus, no JavaScript error reaches the console (the
``page`` fixture fails the test on one), and keyboard-only flows work."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from .conftest import LiveNode
from .seed import Seeded, alice, seed
from .tools import (
    FAILING_IMPACTS,
    ConsoleWatch,
    activate_by_keyboard,
    axe_check,
    axe_source,
    format_violations,
    invisible_focus,
    tab_to,
)


def page_types(s: Seeded) -> dict[str, tuple[str, int]]:
    """Each page type: (path, expected status)."""
    return {
        "home": ("/", 200),
        "community": (f"/c/{s.other.community.hex()}", 200),
        "topic": (f"/t/{s.hex('topic')}", 200),
        "proposal open": (f"/m/{s.hex('open')}", 200),
        "proposal mismatch": (f"/m/{s.hex('closed')}", 200),
        "proposal verified": (f"/m/{s.hex('verified')}", 200),
        "story": (f"/m/{s.hex('story')}", 200),
        "comment": (f"/m/{s.hex('c2')}", 200),
        "hidden comment": (f"/m/{s.hex('c3')}", 200),
        "petition": (f"/m/{s.hex('petition')}", 200),
        "survey": (f"/m/{s.hex('survey')}", 200),
        "meeting": (f"/m/{s.hex('meeting')}", 200),
        "panel": (f"/m/{s.hex('panel')}", 200),
        "panel pending": (f"/m/{s.hex('pending_panel')}", 200),
        "infokit": (f"/m/{s.hex('infokit')}", 200),
        "vote": (f"/m/{s.hex('sign')}", 200),
        "search results": ("/search?q=school", 200),
        "search empty": ("/search?q=zzzqqqxx", 200),
        "federation": ("/federation", 200),
        "moderation": ("/moderation", 200),
        "member": (f"/members/{alice()}", 200),
        "status": ("/status", 200),
        "404": ("/no/such/page", 404),
    }


async def check_page(page: Page, url: str, status: int, lang: str) -> None:
    response = await page.goto(url)
    assert response is not None and response.status == status, url
    assert await page.locator("html").get_attribute("lang") == lang, url
    assert await page.get_by_role("heading", level=1).count() == 1, url
    await axe_check(page)
    missing = await invisible_focus(page)
    assert missing == [], f"focus not visible on {url}: {missing}"


@pytest.mark.parametrize("lang", ["en", "pl"])
async def test_every_page_type_is_accessible(
    page: Page, live_node: LiveNode, console_watch: ConsoleWatch, lang: str
) -> None:
    s = await seed(live_node)
    if lang != "en":  # the switcher's ?lang= sets the cookie every later page follows
        await page.goto(s.url(f"/?lang={lang}"))
    for name, (path, status) in page_types(s).items():
        try:
            # /status is the node's operator page (node/sync_api.py), English only.
            await check_page(page, s.url(path), status, "en" if name == "status" else lang)
            if status == 404:
                # Chromium logs the 404 document itself; nothing else may show up.
                errors = console_watch.take()
                assert len(errors) == 1 and "status of 404" in errors[0], errors
        except AssertionError as exc:
            raise AssertionError(f"{name} ({lang}): {exc}") from exc


async def test_skip_link_then_keyboard_from_home_to_a_topic_and_a_proposal(
    page: Page, live_node: LiveNode
) -> None:
    s = await seed(live_node)
    await page.goto(s.url("/"))
    # The first Tab stop is the skip link; Enter moves the focus into <main>.
    skip = page.get_by_role("link", name="Skip to content")
    assert await tab_to(page, skip) == 1
    await expect(skip).to_be_visible()
    await page.keyboard.press("Enter")
    assert await page.evaluate("() => document.activeElement.id") == "main"
    await page.keyboard.press("Tab")
    in_main = await page.evaluate("() => document.activeElement.closest('main') !== null")
    assert in_main, "the Tab after the skip link left <main>"
    # Home -> topic -> proposal, with Tab and Enter only.
    await activate_by_keyboard(page, page.get_by_role("link", name="Schools", exact=True))
    await expect(page).to_have_url(s.url(f"/t/{s.hex('topic')}"))
    await activate_by_keyboard(page, page.get_by_role("link", name="Bike lanes"))
    await expect(page).to_have_url(s.url(f"/m/{s.hex('closed')}"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Bike lanes")
    await expect(page.get_by_role("alert")).to_contain_text("does not match the recount")
    # The search form works from the keyboard too.
    await tab_to(page, page.get_by_role("searchbox"))
    await page.keyboard.type("garden")
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(r"/search\?q=garden$"))
    await expect(page.locator("main mark").first).to_have_text(re.compile("garden", re.I))


async def test_charts_are_svg_images_with_a_text_alternative(
    page: Page, live_node: LiveNode
) -> None:
    s = await seed(live_node)
    for path, caption in (
        (f"/m/{s.hex('open')}", "Yes: 1 (50 %); No: 1 (50 %); Abstain: 0 (0 %). Total: 2."),
        (f"/m/{s.hex('survey')}", "1: 0 (0 %); 2: 0 (0 %); 3: 1 (100 %). Total: 1."),
    ):
        await page.goto(s.url(path))
        chart = page.get_by_role("img").first
        await expect(chart).to_have_accessible_name(caption)
        assert await chart.evaluate("(el) => el.tagName.toLowerCase()") == "svg"
        # The bars are drawn: a rect per row, the longest one for the largest count.
        widths = [
            float(w)
            for w in await chart.locator("rect").evaluate_all(
                "(rs) => rs.map((r) => r.getAttribute('width'))"
            )
        ]
        assert len(widths) == 3 and max(widths) > 0


async def test_panel_page_and_its_twin(page: Page, live_node: LiveNode) -> None:
    s = await seed(live_node)
    panel = s.hex("panel")
    await page.goto(s.url(f"/m/{panel}"))
    main = page.locator("main")
    await expect(page.get_by_role("heading", level=1)).to_have_text("School panel")
    await expect(main).to_contain_text("The committed roll matches the 4 members eligible here.")
    await expect(main).to_contain_text("the published secret matches it.")
    await expect(main).to_contain_text("Verified: the draw re-run on this node selects")
    # The selected members, each a link to their page; the topic it belongs to.
    twin = await (await page.request.get(s.url(f"/m/{panel}.json"))).json()
    assert twin["kind"] == "panel" and twin["draw"]["status"] == "verified"
    assert twin["panel"]["name"] == "School panel" and twin["panel"]["seats"] == 2
    assert len(twin["selected"]) == 2 and twin["commit_check"] == "matches"
    links = main.get_by_role("list").last.get_by_role("link")
    hrefs = await links.evaluate_all("(as) => as.map((a) => a.getAttribute('href'))")
    assert hrefs == [f"/members/{k}" for k in twin["selected"]]
    await expect(page.locator(".crumbs a")).to_have_attribute("href", f"/t/{s.hex('topic')}")
    # Pending: names the missing entropy message.
    await page.goto(s.url(f"/m/{s.hex('pending_panel')}"))
    await expect(main).to_contain_text("Pending: the draw cannot be checked yet.")
    missing = s.hex("pending_panel_entropy")
    await expect(main.locator(f'a[href="/m/{missing}"]')).to_have_count(1)
    await expect(main).to_contain_text("As the draw published them, not verified on this node.")
    # Both are listed on the topic page and on the community home.
    for path in (f"/t/{s.hex('topic')}", "/"):
        await page.goto(s.url(path))
        section = page.get_by_role("region", name="Panels")
        await expect(section.get_by_role("link", name="School panel")).to_have_attribute(
            "href", f"/m/{panel}"
        )
        await expect(section).to_contain_text("draw verified")
        await expect(section).to_contain_text("draw pending")


#: The WCAG 2.1 A/AA rules of axe whose outcome depends on the words of a page: accessible
#: names, labels, titles, text alternatives and lang attributes. A translation changes
#: only those; layout, contrast and structure are the same templates the en and pl
#: sweeps check in full. Running these alone costs about a tenth of the full set.
TEXT_RULES = (
    "document-title",
    "html-has-lang",
    "html-lang-valid",
    "valid-lang",
    "link-name",
    "button-name",
    "input-button-name",
    "label",
    "select-name",
    "aria-command-name",
    "aria-input-field-name",
    "aria-toggle-field-name",
    "aria-tooltip-name",
    "aria-progressbar-name",
    "aria-meter-name",
    "image-alt",
    "role-img-alt",
    "svg-img-alt",
    "frame-title",
    "summary-name",
)
_AXE_RULES = """async (rules) => {
    const results = await axe.run(document, {
        runOnly: {type: "rule", values: rules},
        resultTypes: ["violations"],
    });
    return results.violations;
}"""


async def axe_text_check(page: Page) -> None:
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        await page.evaluate(axe_source())
    violations = await page.evaluate(_AXE_RULES, list(TEXT_RULES))
    failing = [v for v in violations if v.get("impact") in FAILING_IMPACTS]
    assert not failing, format_violations(failing, page.url)


async def test_every_page_type_in_the_other_languages(
    page: Page, live_node: LiveNode, console_watch: ConsoleWatch
) -> None:
    """fr, de, it and lv: every page type renders in the language, with one h1, and the
    text-dependent axe rules pass (the en and pl sweeps above run every rule)."""
    s = await seed(live_node)
    for lang in ("fr", "de", "it", "lv"):
        await page.goto(s.url(f"/?lang={lang}"))
        for name, (path, status) in page_types(s).items():
            try:
                response = await page.goto(s.url(path))
                assert response is not None and response.status == status
                want = "en" if name == "status" else lang
                assert await page.locator("html").get_attribute("lang") == want
                assert await page.get_by_role("heading", level=1).count() == 1
                await axe_text_check(page)
                if status == 404:
                    errors = console_watch.take()
                    assert len(errors) == 1 and "status of 404" in errors[0], errors
            except AssertionError as exc:
                raise AssertionError(f"{name} ({lang}): {exc}") from exc
