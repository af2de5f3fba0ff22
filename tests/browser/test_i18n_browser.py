"""Languages in a real browser: Accept-Language negotiation, the footer's switcher
(a plain link that sets the cookie, which later pages follow), ``<html lang>``, and
residents' text keeping its own ``lang`` on any UI language."""

from __future__ import annotations

from playwright.async_api import Browser, Page, expect

from .conftest import TIMEOUT_MS, LiveNode
from .seed import seed
from .tools import ConsoleWatch, activate_by_keyboard, axe_check


async def test_accept_language_picks_the_ui_language(browser: Browser, live_node: LiveNode) -> None:
    for locale, lang, heading in (
        ("fr-FR", "fr", "Propositions bientôt clôturées"),
        ("de-AT", "de", "Vorschläge, die bald schließen"),
        ("pt-BR", "en", "Proposals closing soon"),  # no Portuguese: English
    ):
        context = await browser.new_context(locale=locale)
        context.set_default_timeout(TIMEOUT_MS)
        try:
            page = await context.new_page()
            watch = ConsoleWatch()
            watch.attach(page)
            await page.goto(live_node.url + "/")
            assert await page.locator("html").get_attribute("lang") == lang
            await expect(page.get_by_role("heading", level=2, name=heading)).to_be_visible()
            watch.check()
        finally:
            await context.close()


async def test_the_switcher_sets_a_cookie_that_later_pages_follow(
    page: Page, live_node: LiveNode
) -> None:
    s = await seed(live_node)
    await page.goto(s.url(f"/t/{s.hex('topic')}"))
    assert await page.locator("html").get_attribute("lang") == "en"
    footer = page.get_by_role("navigation", name="Language")
    await expect(footer.get_by_role("link", name="English")).to_have_attribute(
        "aria-current", "true"
    )
    # Keyboard only: Tab to "Deutsch" and press Enter; the same page comes back in German.
    await activate_by_keyboard(page, footer.get_by_role("link", name="Deutsch"))
    await expect(page.locator("html")).to_have_attribute("lang", "de")
    assert page.url.endswith(f"/t/{s.hex('topic')}?lang=de")
    await expect(page.get_by_role("heading", level=2, name="Vorschläge")).to_be_visible()
    cookies = {c["name"]: c for c in await page.context.cookies()}
    assert cookies["fora_lang"]["value"] == "de" and cookies["fora_lang"]["httpOnly"]
    # Every later page, reached by its plain links, stays German.
    await (
        page.get_by_role("navigation", name="Hauptmenü")
        .get_by_role("link", name="Föderation")
        .click()
    )
    await expect(page).to_have_url(s.url("/federation"))
    await expect(page.locator("html")).to_have_attribute("lang", "de")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Föderation")
    await page.goto(s.url(f"/m/{s.hex('open')}"))
    await expect(page.locator("html")).to_have_attribute("lang", "de")
    await axe_check(page)
    # The cookie wins over Accept-Language; switching again replaces it.
    await page.set_extra_http_headers({"Accept-Language": "fr"})
    await page.goto(s.url("/"))
    await expect(page.locator("html")).to_have_attribute("lang", "de")
    await page.get_by_role("link", name="Italiano").click()
    await expect(page.locator("html")).to_have_attribute("lang", "it")
    await page.goto(s.url("/moderation"))
    await expect(page.locator("html")).to_have_attribute("lang", "it")


async def test_residents_text_keeps_its_own_language(page: Page, live_node: LiveNode) -> None:
    s = await seed(live_node)
    # An Italian comment on the English UI.
    await page.goto(s.url(f"/t/{s.hex('topic')}"))
    assert await page.locator("html").get_attribute("lang") == "en"
    italian = page.locator("main [lang=it]", has_text="Saluti da Bomarzo.")
    await expect(italian).to_have_count(1)
    english = page.locator("main [lang=en]", has_text="First comment about gardens.")
    await expect(english).to_have_count(1)
    # The peer's Italian European topic, listed on the federation page of a Polish UI.
    await page.goto(s.url("/federation?lang=pl"))
    assert await page.locator("html").get_attribute("lang") == "pl"
    link = page.get_by_role("link", name="Gemellaggio europeo")
    await expect(link).to_have_attribute("lang", "it")
    # Each language's name in the switcher is marked in its own language.
    for code in ("en", "fr", "de", "it", "pl", "lv"):
        switcher = page.get_by_role("navigation").locator(f'a[hreflang="{code}"]')
        await expect(switcher).to_have_attribute("lang", code)


async def test_console_stays_clean_across_languages(
    page: Page, live_node: LiveNode, console_watch: ConsoleWatch
) -> None:
    s = await seed(live_node)
    for lang in ("fr", "de", "it", "pl", "en"):
        await page.goto(s.url(f"/m/{s.hex('survey')}?lang={lang}"))
        await expect(page.locator("html")).to_have_attribute("lang", lang)
        assert console_watch.take() == [], lang
