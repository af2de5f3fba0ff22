"""The whole path of taking part, in a real browser: a resident registers, an admin
approves, the resident posts a topic, a proposal and a story, votes (keyboard only) and
sees the count change; a moderator hides a comment; a second live node peered with the
first receives it all through sync and shows it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from playwright.async_api import Page

from node.app import create_app
from node.appkeys import PEERS
from node.publish import init_node

from ..webflow import PASSWORD
from .conftest import LiveNode
from .tools import ConsoleWatch, activate_by_keyboard, axe_check, serve, tab_to

RESIDENT_PW = "resident password 1"


async def _login(page: Page, url: str, name: str, password: str) -> None:
    await page.goto(url + "/login")
    await page.get_by_label("Name").fill(name)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(url + "/me")


async def _logout(page: Page, url: str) -> None:
    await page.goto(url + "/me")
    await page.get_by_role("main").get_by_role("button", name="Log out").click()
    await page.wait_for_url(url + "/")


async def test_register_approve_post_vote_moderate_and_sync(
    page: Page, live_node: LiveNode, tmp_path: Path, console_watch: ConsoleWatch
) -> None:
    url = live_node.url
    for name, role in (("Admin", "admin"), ("Mod", "moderator")):
        await live_node.add_account(name, role)

    # A resident registers (the form passes axe) and waits for approval.
    await page.goto(url + "/register")
    await axe_check(page)
    await page.get_by_label("Name", exact=True).fill("Rita")
    await page.get_by_label("Password", exact=True).fill(RESIDENT_PW)
    await page.get_by_label("Password again").fill(RESIDENT_PW)
    await page.get_by_role("button", name="Register").click()
    await page.wait_for_url(url + "/me")
    assert await page.locator("#account-status").inner_text() == "Waiting for approval"
    await axe_check(page)
    await _logout(page, url)

    # The admin approves her.
    await _login(page, url, "Admin", PASSWORD)
    await page.goto(url + "/admin")
    await axe_check(page)
    async with page.expect_navigation():
        await page.get_by_role("button", name="Approve Rita").click()
    assert "Nobody is waiting." in await page.get_by_role("main").inner_text()
    await _logout(page, url)

    # Rita posts a topic, a proposal in it and a story.
    await _login(page, url, "Rita", RESIDENT_PW)
    assert await page.locator("#account-status").inner_text() == "Approved"
    await page.goto(url + "/new/topic")
    await axe_check(page)
    async with page.expect_navigation():  # empty: the form again, with the error
        await page.get_by_role("button", name="Publish the topic").click()
    assert await page.get_by_role("alert").count() == 1
    # Chromium logs the form's 400 answer as a console error: expected here, and only it.
    taken = console_watch.take()
    assert len(taken) == 1 and "400" in taken[0] and "/new/topic" in taken[0]
    await axe_check(page)
    await page.get_by_label("Title", exact=True).fill("A bus to Viterbo")
    await page.get_by_label("Text (optional)").fill("The 7:10 bus is always full.")
    await page.get_by_label("Tags").fill("transport")
    await page.get_by_role("button", name="Publish the topic").click()
    await page.wait_for_url(url + "/t/*")
    topic = page.url.rsplit("/", 1)[1]
    await page.get_by_role("link", name="New proposal").click()
    await axe_check(page)
    await page.get_by_label("Title", exact=True).fill("A second morning bus")
    await page.get_by_label("The problem").fill("Children stand for 40 minutes.")
    await page.get_by_label("The solution you propose").fill("Add a 7:25 bus.")
    await page.get_by_role("button", name="Publish the proposal").click()
    await page.wait_for_url(url + "/m/*")
    proposal = page.url.rsplit("/", 1)[1]
    await page.goto(url + f"/t/{topic}")
    await page.get_by_role("link", name="Tell a story").click()
    await axe_check(page)
    await page.get_by_label("Title", exact=True).fill("My morning")
    await page.get_by_label("Your story").fill("I drive my neighbours' kids.")
    await page.get_by_role("button", name="Publish the story").click()
    await page.wait_for_url(url + "/m/*")

    # She votes with the keyboard only, and sees the count change.
    await page.goto(url + f"/m/{proposal}/vote")
    await axe_check(page)
    assert await page.locator("#count-yes").inner_text() == "0"
    await tab_to(page, page.get_by_role("radio", name="Yes"))
    await page.keyboard.press("Space")
    assert await page.get_by_role("radio", name="Yes").is_checked()
    async with page.expect_navigation():
        await activate_by_keyboard(page, page.get_by_role("button", name="Cast my vote"))
    assert await page.locator("#count-yes").inner_text() == "1"
    assert "Yes" in await page.locator("#my-ballot").inner_text()

    # A comment, reported; the moderator hides it.
    await page.goto(url + f"/m/{topic}/comment")
    await axe_check(page)
    await page.get_by_label("Your reply").fill("Buy my cheap tyres!")
    await page.get_by_role("button", name="Publish the reply").click()
    await page.wait_for_url(url + f"/t/{topic}")
    comments = await (await page.request.get(url + f"/t/{topic}.json")).json()
    comment = comments["comments"][0]["id"]
    await page.goto(url + f"/m/{comment}/report")
    await axe_check(page)
    await page.get_by_label("What is wrong with it?").fill("Advertising")
    await page.get_by_role("button", name="Send the report").click()
    await page.wait_for_url(url + f"/t/{topic}")
    await _logout(page, url)
    await _login(page, url, "Mod", PASSWORD)
    await page.goto(url + "/mod/reports")
    await axe_check(page)
    await page.get_by_role("link", name="Hide").click()
    await axe_check(page)
    await page.get_by_label("Reason").fill("Advertising")
    await page.get_by_role("button", name="Hide it").click()
    await page.wait_for_url(url + "/mod/reports")
    await page.goto(url + f"/t/{topic}")
    assert "Buy my cheap tyres" not in await page.content()

    # A second node peers with the first and receives it all through sync.
    config, _key, _ = await asyncio.to_thread(
        init_node, tmp_path / "second", name="Viterbo", country="IT", languages=("it",)
    )
    second = create_app(config, sync_interval=3600.0, mdns=False)
    async with serve(second) as url2:
        await second[PEERS].add(url)
        report = await second[PEERS].sync_now(url)
        assert report is not None
        await page.goto(url2 + f"/t/{topic}")
        text = await page.get_by_role("main").inner_text()
        assert "A bus to Viterbo" in text
        assert "A second morning bus" in text and "My morning" in text
        assert "Buy my cheap tyres" not in await page.content()
        await page.goto(url2 + f"/m/{proposal}")
        held = await (await page.request.get(url2 + f"/m/{proposal}.json")).json()
        assert held["counts"]["yes"] == 1
        state = await (await page.request.get(url2 + f"/m/{comment}.json")).json()
        assert state["thing"]["status"] == "hidden"


async def test_the_other_form_pages_pass_axe(
    page: Page, live_node: LiveNode, console_watch: ConsoleWatch
) -> None:
    """Log in, sign a petition, answer a survey (keyboard only), the refusal page of a
    pending account, and showing a hidden message again: each page passes axe."""

    url = live_node.url
    await live_node.add_account("Mod", "moderator")
    far = 4_000_000_000_000
    petition = await live_node.publish(
        "petition",
        {"title": "Plant trees", "text": "Along the river", "goal": 10, "closes": far},
    )
    survey = await live_node.publish(
        "survey",
        {
            "title": "The mayor's work",
            "intro": "",
            "opens": 0,
            "closes": far,
            "questions": [
                {"text": "How good?", "type": "scale", "options": ["bad", "fair", "good"]},
                {"text": "Why?", "type": "text", "options": []},
            ],
        },
    )
    await page.goto(url + "/login")
    await axe_check(page)
    await _login(page, url, "Mod", PASSWORD)

    await page.goto(url + f"/m/{petition.hex_id}")
    await page.get_by_role("link", name="Sign the petition").click()
    await axe_check(page)
    await page.get_by_role("button", name="Sign").click()
    await page.wait_for_url(url + f"/m/{petition.hex_id}")
    signed = await (await page.request.get(url + f"/m/{petition.hex_id}.json")).json()
    assert signed["counts"]["signatures"] == 1

    await page.goto(url + f"/m/{survey.hex_id}/answer")
    await axe_check(page)
    await tab_to(page, page.get_by_role("radio", name="bad"))
    await page.keyboard.press("ArrowDown")  # bad -> fair
    assert await page.get_by_role("radio", name="fair").is_checked()
    await tab_to(page, page.get_by_label("Why?"))
    await page.keyboard.type("Quick answers")
    async with page.expect_navigation():
        await activate_by_keyboard(page, page.get_by_role("button", name="Send my answers"))
    results = await (await page.request.get(url + f"/m/{survey.hex_id}.json")).json()
    assert results["respondents"] == 1 and results["results"][0]["counts"] == [0, 1, 0]

    # Hide the petition, then show it again from its unhide form.
    await page.goto(url + f"/m/{petition.hex_id}/hide")
    await page.get_by_label("Reason").fill("Duplicate")
    await page.get_by_role("button", name="Hide it").click()
    await page.wait_for_url(url + "/mod/reports")
    await page.goto(url + f"/m/{petition.hex_id}/unhide")
    await axe_check(page)
    await page.get_by_label("Reason").fill("Not a duplicate")
    await page.get_by_role("button", name="Show it again").click()
    await page.wait_for_url(url + "/moderation")
    await axe_check(page)
    await _logout(page, url)

    # A pending account is refused the forms, with a page that says why.
    await page.goto(url + "/register")
    await page.get_by_label("Name", exact=True).fill("Newcomer")
    await page.get_by_label("Password", exact=True).fill(RESIDENT_PW)
    await page.get_by_label("Password again").fill(RESIDENT_PW)
    await page.get_by_role("button", name="Register").click()
    await page.wait_for_url(url + "/me")
    response = await page.goto(url + "/new/topic")
    assert response is not None and response.status == 403
    assert "waiting for approval" in await page.get_by_role("main").inner_text()
    await axe_check(page)
    taken = console_watch.take()  # Chromium logs the 403 itself: expected, and only it
    assert len(taken) == 1 and "403" in taken[0]
