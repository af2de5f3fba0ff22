"""A resident erases their ballot from /me: it stops counting, the vote page no longer
shows it as theirs, and an older ballot of theirs (if any) counts again."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from .webflow import Client, add_user, logged_in, login, make_node, post, twin


async def _proposal(client: Client) -> str:
    response = await post(
        client,
        "/new/topic",
        {"title": "Buses", "text": "", "tags": "", "scope": "local", "lang": "en"},
    )
    topic = response.headers["Location"].removeprefix("/t/")
    response = await post(
        client,
        f"/t/{topic}/proposal",
        {
            "title": "Electric bus",
            "problem": "Old bus",
            "solution": "New bus",
            "closes": "2099-01-01",
            "lang": "en",
        },
    )
    assert response.status == 303
    return response.headers["Location"].removeprefix("/m/")


def _erase_buttons(html: str) -> set[str]:
    return set(re.findall(r'action="/m/([0-9a-f]{64})/erase"', html))


async def test_vote_then_erase_the_ballot_from_me(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    node = make_node(tmp_path)
    alice = await logged_in(await aiohttp_client(node.app), node, "Alice")
    proposal = await _proposal(alice)
    vote = f"/m/{proposal}/vote"

    assert (await post(alice, vote, {"choice": "yes"})).status == 303
    assert (await twin(alice, f"/m/{proposal}"))["counts"]["yes"] == 1
    form = await twin(alice, vote)
    assert form["my_ballot"]["choice"] == "yes"
    me = await twin(alice, "/me")
    (ballot,) = me["ballots"]
    assert ballot["proposal"] == proposal and ballot["title"] == "Electric bus"
    assert (ballot["choice"], ballot["status"]) == ("yes", "counted")
    # /me offers an Erase button for the ballot, labelled with the proposal's title.
    html = await (await alice.get("/me")).text()
    assert ballot["id"] in _erase_buttons(html)
    assert 'aria-label="Erase my vote: Electric bus"' in html

    response = await post(alice, f"/m/{ballot['id']}/erase", {}, form="/me")
    assert response.status == 303 and response.headers["Location"] == "/me"
    page = await twin(alice, f"/m/{proposal}")
    assert (page["counts"]["yes"], page["counts"]["no"], page["counts"]["abstain"]) == (0, 0, 0)
    assert page["counted_ballots"] == 0
    assert (await twin(alice, vote))["my_ballot"] is None
    html = await (await alice.get(vote)).text()
    assert "You have not voted on this proposal." in html and "Your current vote" not in html
    # /me still lists it, as erased, without a button (erasing it again does nothing).
    (ballot_after,) = (await twin(alice, "/me"))["ballots"]
    assert (ballot_after["choice"], ballot_after["status"]) == (None, "erased")
    assert ballot["id"] not in _erase_buttons(await (await alice.get("/me")).text())


async def test_erasing_the_newest_ballot_brings_back_the_one_before(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    node = make_node(tmp_path)
    alice = await logged_in(await aiohttp_client(node.app), node, "Alice")
    proposal = await _proposal(alice)
    vote = f"/m/{proposal}/vote"
    await post(alice, vote, {"choice": "yes"})
    await post(alice, vote, {"choice": "no"})
    newest, older = (await twin(alice, "/me"))["ballots"]
    assert (newest["choice"], newest["status"]) == ("no", "counted")
    assert (older["choice"], older["status"]) == ("yes", "superseded")
    counts = (await twin(alice, f"/m/{proposal}"))["counts"]
    assert (counts["yes"], counts["no"]) == (0, 1)

    await post(alice, f"/m/{newest['id']}/erase", {}, form="/me")
    counts = (await twin(alice, f"/m/{proposal}"))["counts"]
    assert (counts["yes"], counts["no"]) == (1, 0)
    assert (await twin(alice, vote))["my_ballot"]["choice"] == "yes"
    await post(alice, f"/m/{older['id']}/erase", {}, form="/me")
    counts = (await twin(alice, f"/m/{proposal}"))["counts"]
    assert (counts["yes"], counts["no"]) == (0, 0)
    assert (await twin(alice, vote))["my_ballot"] is None
    assert [b["status"] for b in (await twin(alice, "/me"))["ballots"]] == ["erased", "erased"]


async def test_someone_elses_ballot_cannot_be_erased(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    node = make_node(tmp_path)
    alice = await aiohttp_client(node.app)
    bob = await aiohttp_client(alice.server)
    await add_user(node, "Alice")
    await add_user(node, "Bob")
    await login(alice, "Alice")
    await login(bob, "Bob")
    proposal = await _proposal(alice)
    await post(alice, f"/m/{proposal}/vote", {"choice": "yes"})
    (ballot,) = (await twin(alice, "/me"))["ballots"]
    response = await post(bob, f"/m/{ballot['id']}/erase", {}, form="/me")
    assert response.status == 409
    assert (await twin(bob, f"/m/{proposal}"))["counts"]["yes"] == 1
    assert (await twin(bob, "/me"))["ballots"] == []
