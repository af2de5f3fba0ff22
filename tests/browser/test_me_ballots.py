"""In a real browser, in French: a resident's ballots on /me (the page passes axe), one
erased with the keyboard only; the refusal of a second signature reads in French."""

from __future__ import annotations

from playwright.async_api import Page, expect

from ..webflow import PASSWORD
from .conftest import LiveNode
from .tools import ConsoleWatch, activate_by_keyboard, axe_check


async def test_erase_my_ballot_from_my_page_in_french(
    page: Page, live_node: LiveNode, console_watch: ConsoleWatch
) -> None:
    url = live_node.url
    await live_node.add_account("Rita")
    far = 4_000_000_000_000
    topic = await live_node.publish(
        "topic",
        {"title": "Bus", "text": "", "tags": [], "scope": "local", "lang": "it"},
    )
    proposal = await live_node.publish(
        "proposal",
        {"title": "Un autobus", "problem": "P", "solution": "S", "lang": "it", "closes": far},
        [topic.id],
    )
    petition = await live_node.publish(
        "petition",
        {"title": "Alberi", "text": "Lungo il fiume", "goal": 10, "closes": far},
    )
    await page.goto(url + "/login?lang=fr")
    await page.get_by_label("Nom", exact=True).fill("Rita")
    await page.get_by_label("Mot de passe", exact=True).fill(PASSWORD)
    await page.get_by_role("button", name="Se connecter").click()
    await page.wait_for_url(url + "/me")

    # Two votes: the newest counts, the first is superseded.
    for choice in ("Oui", "Non"):
        await page.goto(url + f"/m/{proposal.hex_id}/vote")
        await page.get_by_role("radio", name=choice).check()
        async with page.expect_navigation():
            await page.get_by_role("button", name="Voter").last.click()
    await page.goto(url + "/me")
    await axe_check(page)
    ballots = page.locator("ul.ballots > li")
    await expect(ballots).to_have_count(2)
    await expect(ballots.nth(0)).to_contain_text("compté")
    await expect(ballots.nth(1)).to_contain_text("un vote plus récent du même votant compte")

    # Erase the newest with the keyboard: the first ballot counts again.
    erase = page.get_by_role("button", name="Effacer mon vote: Un autobus").first
    async with page.expect_navigation():
        await activate_by_keyboard(page, erase)
    await expect(page).to_have_url(url + "/me")
    await axe_check(page)
    await expect(ballots.nth(0)).to_contain_text("effacé")
    await expect(ballots.nth(0).get_by_role("button")).to_have_count(0)
    counts = await (await page.request.get(url + f"/m/{proposal.hex_id}.json")).json()
    assert (counts["counts"]["yes"], counts["counts"]["no"]) == (1, 0)

    # A second signature: refused, the reason in French, the page passes axe.
    for _attempt in range(2):
        await page.goto(url + f"/m/{petition.hex_id}/sign")
        async with page.expect_navigation():
            await page.get_by_role("button", name="Signer").click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("vous avez déjà signé cette pétition")
    taken = console_watch.take()  # Chromium logs the form's 409 answer
    assert len(taken) == 1 and "409" in taken[0], taken
    await axe_check(page)
