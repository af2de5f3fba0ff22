"""A resident erases their petition signature or survey answers from /me: the petition's
count and the survey's results drop (through the JSON twins), /me keeps listing them as
erased without a button, an older answer counts again, and nobody else can erase them.
The two lists read through an index (checked with EXPLAIN QUERY PLAN)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from node.appkeys import STORE
from node.publish import publish
from storage import forum

from .webflow import Client, Node, add_user, logged_in, login, make_node, post, twin

ClientMaker = Callable[..., Awaitable[Client]]
FAR = 4_000_000_000_000


async def _petition(node: Node, title: str = "Trees") -> str:
    message = await node.app[STORE].write(
        publish,
        node.key,
        bytes.fromhex(node.community),
        "petition",
        {"title": title, "text": "Plant them", "goal": 10, "closes": FAR},
    )
    return str(message.hex_id)


async def _survey(node: Node) -> str:
    message = await node.app[STORE].write(
        publish,
        node.key,
        bytes.fromhex(node.community),
        "survey",
        {
            "title": "Mayor",
            "intro": "",
            "opens": 0,
            "closes": FAR,
            "questions": [
                {"text": "How good?", "type": "scale", "options": ["bad", "ok", "good"]},
                {"text": "Why?", "type": "text", "options": []},
            ],
        },
    )
    return str(message.hex_id)


def _erase_buttons(html: str) -> set[str]:
    return set(re.findall(r'action="/m/([0-9a-f]{64})/erase"', html))


async def _alice(node: Node, aiohttp_client: ClientMaker) -> Client:
    alice = await logged_in(await aiohttp_client(node.app), node, "Alice")
    return alice


async def test_sign_then_erase_the_signature_from_me(
    tmp_path: Path, aiohttp_client: ClientMaker
) -> None:
    node = make_node(tmp_path)
    alice = await _alice(node, aiohttp_client)
    petition = await _petition(node)
    other = await _petition(node, "Benches")
    assert (await post(alice, f"/m/{petition}/sign", {})).status == 303
    assert (await post(alice, f"/m/{other}/sign", {})).status == 303
    assert (await twin(alice, f"/m/{petition}"))["counts"]["signatures"] == 1

    me = await twin(alice, "/me")
    newest, sign = me["signatures"]
    assert (newest["petition"], newest["title"]) == (other, "Benches")
    assert (sign["petition"], sign["title"]) == (petition, "Trees")
    assert (sign["status"], sign["erased"]) == ("counted", False)
    html = await (await alice.get("/me")).text()
    assert {sign["id"], newest["id"]} <= _erase_buttons(html)
    assert 'aria-label="Erase my signature: Trees"' in html
    assert f'<a href="/m/{petition}" lang="en">Trees</a>' not in html  # no lang: none given
    assert f'<a href="/m/{petition}">Trees</a>' in html

    response = await post(alice, f"/m/{sign['id']}/erase", {}, form="/me")
    assert response.status == 303 and response.headers["Location"] == "/me"
    counts = (await twin(alice, f"/m/{petition}"))["counts"]
    assert (counts["signatures"], counts["support"]) == (0, 0)
    # The other petition's signature still counts.
    assert (await twin(alice, f"/m/{other}"))["counts"]["signatures"] == 1
    # /me still lists it, as erased, without a button (erasing it again does nothing).
    _, after = (await twin(alice, "/me"))["signatures"]
    assert (after["id"], after["status"], after["erased"]) == (sign["id"], "erased", True)
    html = await (await alice.get("/me")).text()
    assert sign["id"] not in _erase_buttons(html) and newest["id"] in _erase_buttons(html)
    assert "the signature was erased (or its content is not held here)" in html
    # Having erased it, Alice may sign again: the new signature counts.
    assert (await post(alice, f"/m/{petition}/sign", {})).status == 303
    assert (await twin(alice, f"/m/{petition}"))["counts"]["signatures"] == 1
    again = await post(alice, f"/m/{petition}/sign", {})
    assert again.status == 409 and "signed this petition already" in await again.text()
    signs = [s for s in (await twin(alice, "/me"))["signatures"] if s["petition"] == petition]
    assert [(s["status"], s["erased"]) for s in signs] == [("counted", False), ("erased", True)]


async def test_erasing_the_newest_answers_brings_back_the_ones_before(
    tmp_path: Path, aiohttp_client: ClientMaker
) -> None:
    node = make_node(tmp_path)
    alice = await _alice(node, aiohttp_client)
    survey = await _survey(node)
    path = f"/m/{survey}/answer"
    assert (await post(alice, path, {"q0": "2", "q1": "Fast"})).status == 303
    assert (await post(alice, path, {"q0": "0", "q1": ""})).status == 303
    results = await twin(alice, f"/m/{survey}")
    assert results["respondents"] == 1 and results["results"][0]["counts"] == [1, 0, 0]

    newest, older = (await twin(alice, "/me"))["answers"]
    assert (newest["survey"], newest["title"], newest["status"]) == (survey, "Mayor", "counted")
    assert (older["status"], older["erased"]) == ("superseded", False)
    html = await (await alice.get("/me")).text()
    assert {newest["id"], older["id"]} <= _erase_buttons(html)
    assert 'aria-label="Erase my answers: Mayor"' in html

    await post(alice, f"/m/{newest['id']}/erase", {}, form="/me")
    results = await twin(alice, f"/m/{survey}")
    assert results["respondents"] == 1 and results["results"][0]["counts"] == [0, 0, 1]
    assert results["results"][1]["text_answers"] == 1
    await post(alice, f"/m/{older['id']}/erase", {}, form="/me")
    results = await twin(alice, f"/m/{survey}")
    assert results["respondents"] == 0 and results["results"][0]["counts"] == [0, 0, 0]
    answers = (await twin(alice, "/me"))["answers"]
    assert [(a["status"], a["erased"]) for a in answers] == [("erased", True)] * 2
    assert not _erase_buttons(await (await alice.get("/me")).text())


async def test_someone_elses_signature_and_answers_cannot_be_erased(
    tmp_path: Path, aiohttp_client: ClientMaker
) -> None:
    node = make_node(tmp_path)
    alice = await _alice(node, aiohttp_client)
    bob = await aiohttp_client(alice.server)
    await add_user(node, "Bob")
    await login(bob, "Bob")
    petition, survey = await _petition(node), await _survey(node)
    await post(alice, f"/m/{petition}/sign", {})
    await post(alice, f"/m/{survey}/answer", {"q0": "1", "q1": ""})
    me = await twin(alice, "/me")
    for mine in (me["signatures"][0], me["answers"][0]):
        response = await post(bob, f"/m/{mine['id']}/erase", {}, form="/me")
        assert response.status == 409
    assert (await twin(bob, f"/m/{petition}"))["counts"]["signatures"] == 1
    assert (await twin(bob, f"/m/{survey}"))["respondents"] == 1
    bobs = await twin(bob, "/me")
    assert (bobs["signatures"], bobs["answers"]) == ([], [])
    html = await (await bob.get("/me")).text()
    assert "No signatures yet." in html and "No survey answers yet." in html


async def test_me_in_french(tmp_path: Path, aiohttp_client: ClientMaker) -> None:
    node = make_node(tmp_path)
    alice = await _alice(node, aiohttp_client)
    petition = await _petition(node)
    await post(alice, f"/m/{petition}/sign", {})
    html = await (await alice.get("/me?lang=fr")).text()
    assert "Mes signatures" in html and 'aria-label="Effacer ma signature: Trees"' in html
    assert "Mes réponses aux enquêtes" in html


def _plan(db: Database, read: Callable[[], Any]) -> str:
    """The query plan of the one statement ``read`` runs."""
    statements: list[str] = []
    db.conn.set_trace_callback(statements.append)
    try:
        read()
    finally:
        db.conn.set_trace_callback(None)
    (statement,) = statements
    return "\n".join(row[-1] for row in db.execute("EXPLAIN QUERY PLAN " + statement))


async def test_the_lists_of_a_member_read_through_an_index(
    tmp_path: Path, aiohttp_client: ClientMaker
) -> None:
    node = make_node(tmp_path)
    alice = await _alice(node, aiohttp_client)
    petition, survey = await _petition(node), await _survey(node)
    await post(alice, f"/m/{petition}/sign", {})
    await post(alice, f"/m/{survey}/answer", {"q0": "1", "q1": ""})
    key = bytes.fromhex((await twin(alice, "/me"))["me"]["key"])

    def plans(db: Database) -> tuple[str, str]:
        return (
            _plan(db, lambda: forum.signatures_of(db, key)),
            _plan(db, lambda: forum.survey_answers_of(db, key)),
        )

    signs, answers = await node.app[STORE].read(plans)
    assert "SEARCH s USING INDEX signatures_by_signer (signer=?)" in signs, signs
    assert "SCAN" not in signs, signs
    assert "SEARCH m USING INDEX messages_author (author=?)" in answers, answers
    assert "SCAN" not in answers, answers
