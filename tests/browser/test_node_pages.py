"""The node's own pages in a real browser: accessible, keyboard-usable, no JS errors."""

from __future__ import annotations

from playwright.async_api import Page

from .conftest import LiveNode
from .tools import axe_check, invisible_focus, tab_order


async def test_home_page(page: Page, live_node: LiveNode) -> None:
    response = await page.goto(live_node.url + "/")
    assert response is not None and response.status == 200
    assert await page.locator("html").get_attribute("lang")
    assert "Bomarzo" in await page.title()
    assert await page.get_by_role("heading", level=1).count() == 1
    await axe_check(page)
    assert await tab_order(page), "nothing on the page takes keyboard focus"
    assert await invisible_focus(page) == []
