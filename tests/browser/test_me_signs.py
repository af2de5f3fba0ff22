"""In a real browser, in German: a resident's petition signature and survey answers on
/me (the page passes axe), each erased with the keyboard only; the petition's count and
the survey's results drop, and the older answers count again."""

from __future__ import annotations

from playwright.async_api import Page, expect

from ..webflow import PASSWORD
from .conftest import LiveNode
from .tools import ConsoleWatch, activate_by_keyboard, axe_check


async def test_erase_my_signature_and_answers_from_my_page_in_german(
    page: Page, live_node: LiveNode, console_watch: ConsoleWatch
) -> None:
    url = live_node.url
    await live_node.add_account("Rita")
    far = 4_000_000_000_000
    petition = await live_node.publish(
        "petition",
        {"title": "Bäume am Fluss", "text": "Pflanzen", "goal": 10, "closes": far},
    )
    survey = await live_node.publish(
        "survey",
        {
            "title": "Der Busfahrplan",
            "intro": "",
            "opens": 0,
            "closes": far,
            "questions": [{"text": "Wie gut?", "type": "scale", "options": ["1", "2", "3"]}],
        },
    )
    await page.goto(url + "/login?lang=de")
    await page.get_by_label("Name", exact=True).fill("Rita")
    await page.get_by_label("Passwort", exact=True).fill(PASSWORD)
    await page.get_by_role("button", name="Anmelden").click()
    await page.wait_for_url(url + "/me")

    await page.goto(url + f"/m/{petition.hex_id}/sign")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Unterschreiben").click()
    for option in ("3", "1"):  # the newest answers count, the first are superseded
        await page.goto(url + f"/m/{survey.hex_id}/answer")
        await page.get_by_role("radio", name=option, exact=True).check()
        async with page.expect_navigation():
            await page.get_by_role("button", name="Meine Antworten senden").click()

    await page.goto(url + "/me")
    await axe_check(page)
    signatures = page.locator("ul.signatures > li")
    await expect(signatures).to_have_count(1)
    await expect(signatures.nth(0)).to_contain_text("Bäume am Fluss")
    answers = page.locator("ul.answers > li")
    await expect(answers).to_have_count(2)
    await expect(answers.nth(1)).to_contain_text("Der Busfahrplan")

    # Erase the signature with the keyboard: the petition counts none.
    erase = page.get_by_role("button", name="Meine Unterschrift löschen: Bäume am Fluss")
    async with page.expect_navigation():
        await activate_by_keyboard(page, erase)
    await expect(page).to_have_url(url + "/me")
    await expect(signatures.nth(0).get_by_role("button")).to_have_count(0)
    counts = await (await page.request.get(url + f"/m/{petition.hex_id}.json")).json()
    assert counts["counts"]["signatures"] == 0

    # Erase the newest answers: the first ones count again.
    erase = page.get_by_role("button", name="Meine Antworten löschen: Der Busfahrplan").first
    async with page.expect_navigation():
        await activate_by_keyboard(page, erase)
    await expect(answers.nth(0).get_by_role("button")).to_have_count(0)
    await expect(answers.nth(1).get_by_role("button")).to_have_count(1)
    await axe_check(page)
    results = await (await page.request.get(url + f"/m/{survey.hex_id}.json")).json()
    assert results["respondents"] == 1 and results["results"][0]["counts"] == [0, 0, 1]
    assert console_watch.take() == []
