"""Every form of the web view through aiohttp's test client: CSRF missing -> 403, bad
input -> 4xx with the error, and the effect visible in the JSON twins."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from node.appkeys import SESSIONS, STORE
from protocol import signing
from storage import accounts as acc
from web.accounts import ACCOUNTS
from web.throttle import LoginThrottle

from .webflow import PASSWORD, Client, Node, add_user, login, make_node, post, token, twin

ClientMaker = Callable[..., Awaitable[Client]]


@pytest.fixture
async def node(tmp_path: Path) -> Node:
    return make_node(tmp_path)


async def clients(node: Node, aiohttp_client: ClientMaker, n: int) -> list[Client]:
    first = await aiohttp_client(node.app)
    return [first] + [await aiohttp_client(first.server) for _ in range(n - 1)]


POST_ROUTES = [
    "/register",
    "/login",
    "/logout",
    "/new/topic",
    "/new/story",
    "/admin/grant",
    "/admin/revoke",
    "/admin/peers/add",
    "/admin/peers/remove",
    "/admin/accounts/1/approve",
    "/admin/accounts/1/reject",
    "/me/key",
    "/me/password",
    "/t/" + "ab" * 32 + "/proposal",
    *(f"/m/{'ab' * 32}/{a}" for a in ("comment", "vote", "sign", "answer", "report", "hide")),
    "/m/" + "ab" * 32 + "/unhide",
    "/m/" + "ab" * 32 + "/erase",
]


async def test_every_form_post_without_the_csrf_token_is_403(
    node: Node, aiohttp_client: ClientMaker
) -> None:
    (client,) = await clients(node, aiohttp_client, 1)
    await add_user(node, "Admin", "admin")
    await login(client, "Admin")
    for path in POST_ROUTES:
        response = await client.post(path, data={"x": "1"}, allow_redirects=False)
        assert response.status == 403, path
        wrong = await client.post(path, data={"csrf_token": "nope"}, allow_redirects=False)
        assert wrong.status == 403, path


async def test_register_wait_for_approval_then_take_part(
    node: Node, aiohttp_client: ClientMaker
) -> None:
    resident, admin = await clients(node, aiohttp_client, 2)
    good = {"name": "Alice", "password": PASSWORD, "password2": PASSWORD}
    # Bad input: the form again, 400, the error linked to its field; nothing stored.
    for bad, field in [
        ({**good, "name": "x"}, "name"),
        ({**good, "name": "<b>"}, "name"),
        ({**good, "password": "short", "password2": "short"}, "password"),
        ({**good, "password2": PASSWORD + "!"}, "password2"),
    ]:
        response = await post(resident, "/register", bad)
        assert response.status == 400
        text = await response.text()
        assert f'href="#f-{field}"' in text and 'aria-invalid="true"' in text
        assert PASSWORD not in text  # a password never comes back
    assert await node.app[STORE].read(acc.list_accounts) == []
    # The labels and the errors are in the page's language.
    response = await resident.post(
        "/register?lang=fr",
        data={**good, "name": "x", "csrf_token": await token(resident, "/register")},
    )
    text = await response.text()
    assert response.status == 400 and "Nom affiché" in text and "Choisissez un autre nom" in text
    await resident.get("/register?lang=en")  # back to English (?lang= set a cookie)

    response = await post(resident, "/register", good)
    assert response.status == 303 and response.headers["Location"] == "/me"
    again = await post(resident, "/register", {**good, "name": "ALICE"})
    assert again.status == 400 and "taken" in await again.text()
    me = await twin(resident, "/me")
    assert me["me"]["status"] == "pending" and me["me"]["roles"] == []
    assert "password" not in json.dumps(me["account"])
    # Pending: may log in and see the status, may not publish.
    response = await resident.get("/new/topic", allow_redirects=False)
    assert response.status == 403 and "waiting for approval" in await response.text()

    # An admin approves: the grant is published, signed by the community key.
    await add_user(node, "Admin", "admin")
    await login(admin, "Admin")
    pending = (await twin(admin, "/admin"))["pending"]
    assert [a["name"] for a in pending] == ["Alice"]
    response = await post(admin, f"/admin/accounts/{pending[0]['id']}/approve", {}, form="/admin")
    assert response.status == 303
    again = await post(admin, f"/admin/accounts/{pending[0]['id']}/approve", {}, form="/admin")
    assert again.status == 409 and "approved already" in await again.text()
    me = await twin(resident, "/me")
    assert me["me"]["status"] == "approved" and me["me"]["roles"] == ["member"]
    member = await twin(resident, f"/members/{me['me']['key']}")
    assert member["roles"][0]["role"] == "member"

    # Now the resident posts a topic.
    response = await post(
        resident,
        "/new/topic",
        {
            "title": "Bus to Viterbo",
            "text": "More buses?",
            "tags": "transport, #Bus",
            "scope": "regional",
            "lang": "it",
        },
    )
    assert response.status == 303 and response.headers["Location"].startswith("/t/")
    topic = await twin(resident, response.headers["Location"])
    assert topic["topic"]["title"] == "Bus to Viterbo"
    assert topic["topic"]["fields"]["tags"] == ["transport", "bus"]
    assert topic["topic"]["author"] == me["me"]["key"]


async def test_login_throttled_and_logout(node: Node, aiohttp_client: ClientMaker) -> None:
    (client,) = await clients(node, aiohttp_client, 1)
    await add_user(node, "Bruno")
    # A stopped clock: the delay the sixth failure sets cannot run out before the
    # seventh login, however slow the machine.
    node.app[ACCOUNTS].throttle = LoginThrottle(clock=lambda: 0.0)
    for _ in range(5):
        response = await post(client, "/login", {"name": "Bruno", "password": "wrong password"})
        assert response.status == 401 and "Wrong name or password" in await response.text()
    response = await post(client, "/login", {"name": "Bruno", "password": "wrong password"})
    assert response.status == 401
    # The sixth failure set a delay: even the right password now waits, unchecked.
    response = await post(client, "/login", {"name": "Bruno", "password": PASSWORD})
    assert response.status == 429 and int(response.headers["Retry-After"]) >= 1
    assert "Too many failed logins" in await response.text()
    # Another account from the same address is not locked out by Bruno's counter
    # alone, but the address has used its free failures too: a fresh throttle (the
    # delays themselves are web/throttle.py's tests) lets Bruno in.
    node.app[ACCOUNTS].throttle = LoginThrottle()
    before = client.session.cookie_jar.filter_cookies(client.make_url("/")).get("fora_session")
    assert before is not None  # the login form started a session
    await login(client, "Bruno")
    assert (await twin(client, "/me"))["me"]["name"] == "Bruno"
    after = client.session.cookie_jar.filter_cookies(client.make_url("/")).get("fora_session")
    assert after is not None and after.value != before.value  # a new session id at login
    sessions = node.app[SESSIONS]
    assert sessions.get(before.value) is None
    logged_in = sessions.get(after.value)
    assert logged_in is not None and logged_in.signing_key is not None
    response = await post(client, "/logout", {}, form="/me")
    assert response.status == 303
    # Logging out drops the session and the unsealed key with it.
    assert sessions.get(after.value) is None and logged_in.signing_key is None
    response = await client.get("/me", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"].startswith("/login")
    # An outside "next" is not followed after a login.
    response = await post(
        client, "/login", {"name": "Bruno", "password": PASSWORD, "next": "//evil.example/"}
    )
    assert response.status == 303 and response.headers["Location"] == "/me"


async def _topic(client: Client) -> str:
    response = await post(
        client,
        "/new/topic",
        {"title": "Schools", "text": "", "tags": "", "scope": "local", "lang": "en"},
    )
    assert response.status == 303
    return response.headers["Location"].removeprefix("/t/")


async def test_proposal_vote_story_comment_report_and_moderation(
    node: Node, aiohttp_client: ClientMaker
) -> None:
    alice, mod = await clients(node, aiohttp_client, 2)
    await add_user(node, "Alice")
    await add_user(node, "Moderator", "moderator")
    await login(alice, "Alice")
    await login(mod, "Moderator")
    topic = await _topic(alice)

    # Proposal: missing field, past date, bad date -> 400 with the field.
    path = f"/t/{topic}/proposal"
    base = {
        "title": "New school bus",
        "problem": "Kids walk 3 km",
        "solution": "A bus",
        "closes": "2099-01-01",
        "lang": "en",
    }
    for bad, field in [
        ({**base, "problem": " "}, "problem"),
        ({**base, "closes": "2001-01-01"}, "closes"),
        ({**base, "closes": "soon"}, "closes"),
    ]:
        response = await post(alice, path, bad)
        assert response.status == 400 and f'href="#f-{field}"' in await response.text()
    response = await post(alice, path, {**base, "title": "x" * 300})
    assert response.status == 400 and "proposal.title" in await response.text()
    response = await post(alice, path, base)
    assert response.status == 303
    proposal = response.headers["Location"].removeprefix("/m/")
    page = await twin(alice, f"/m/{proposal}")
    assert page["proposal"]["title"] == "New school bus" and page["proposal"]["parent"] == topic

    # Vote: the current ballot is shown; a new ballot replaces it.
    vote = f"/m/{proposal}/vote"
    response = await post(alice, vote, {"choice": "maybe"})
    assert response.status == 400
    response = await post(alice, vote, {"choice": "yes"})
    assert response.status == 303 and response.headers["Location"] == vote
    form = await twin(alice, vote)
    assert form["my_ballot"]["choice"] == "yes" and form["counts"]["yes"] == 1
    assert [f["value"] for f in form["form"]["fields"]] == ["yes"]
    await post(alice, vote, {"choice": "no"})
    counts = (await twin(alice, f"/m/{proposal}"))["counts"]
    assert (counts["yes"], counts["no"]) == (0, 1)
    # A vote on something that is not a proposal: 404; on a topic's id too.
    assert (await alice.get(f"/m/{topic}/vote")).status == 404

    # Story in the topic, comment, threaded reply.
    response = await post(
        alice,
        f"/new/story?topic={topic}",
        {"title": "My walk", "text": "Every day", "lang": "en", "topic": topic},
        form=f"/new/story?topic={topic}",
    )
    assert response.status == 303
    story = response.headers["Location"].removeprefix("/m/")
    assert (await twin(alice, f"/t/{topic}"))["stories"][0]["id"] == story
    response = await post(alice, f"/m/{topic}/comment", {"text": "", "lang": "en"})
    assert response.status == 400
    response = await post(alice, f"/m/{topic}/comment", {"text": "First!", "lang": "en"})
    assert response.status == 303 and response.headers["Location"] == f"/t/{topic}"
    comments = (await twin(alice, f"/t/{topic}"))["comments"]
    first = comments[0]["id"]
    response = await post(alice, f"/m/{first}/comment", {"text": "A reply", "lang": "en"})
    assert response.headers["Location"] == f"/t/{topic}"
    comments = (await twin(alice, f"/t/{topic}"))["comments"]
    assert {c["text"]: c["parent"] for c in comments}["A reply"] == first

    # Report, then the moderator's queue, hide with a reason, unhide.
    response = await post(alice, f"/m/{first}/report", {"reason": ""})
    assert response.status == 400
    response = await post(alice, f"/m/{first}/report", {"reason": "Spam"})
    assert response.status == 303
    assert (await alice.get("/mod/reports", allow_redirects=False)).status == 403
    queue = (await twin(mod, "/mod/reports"))["reports"]
    assert [(r["target"], r["reason"]) for r in queue] == [(first, "Spam")]
    response = await post(alice, f"/m/{first}/hide", {"reason": "mine"}, form=f"/m/{first}/report")
    assert response.status == 403
    response = await post(mod, f"/m/{first}/hide", {"reason": ""})
    assert response.status == 400
    response = await post(mod, f"/m/{first}/hide", {"reason": "Advertising"})
    assert response.status == 303
    assert (await twin(mod, f"/m/{first}"))["thing"]["status"] == "hidden"
    log = (await twin(mod, "/moderation"))["log"]
    assert log[0]["reason"] == "Advertising" and log[0]["action"] == "hide"
    assert (await twin(mod, "/mod/reports"))["reports"] == []
    response = await post(mod, f"/m/{first}/unhide", {"reason": "Not spam"})
    assert response.status == 303
    assert (await twin(mod, f"/m/{first}"))["thing"]["status"] == "visible"


async def test_petition_survey_and_no_effect(node: Node, aiohttp_client: ClientMaker) -> None:
    from node.publish import publish

    (alice,) = await clients(node, aiohttp_client, 1)
    await add_user(node, "Alice")
    await login(alice, "Alice")
    community = bytes.fromhex(node.community)
    far = 4_000_000_000_000
    petition = await node.app[STORE].write(
        publish,
        node.key,
        community,
        "petition",
        {"title": "Trees", "text": "Plant them", "goal": 10, "closes": far},
    )
    survey = await node.app[STORE].write(
        publish,
        node.key,
        community,
        "survey",
        {
            "title": "Mayor",
            "intro": "",
            "opens": 0,
            "closes": far,
            "questions": [
                {"text": "How good?", "type": "scale", "options": ["bad", "ok", "good"]},
                {"text": "Why?", "type": "text", "options": []},
            ],
        },
    )
    path = f"/m/{petition.hex_id}/sign"
    assert (await post(alice, path, {})).status == 303
    again = await post(alice, path, {})
    assert again.status == 409 and "signed this petition already" in await again.text()
    assert (await twin(alice, f"/m/{petition.hex_id}"))["counts"]["signatures"] == 1

    path = f"/m/{survey.hex_id}/answer"
    response = await post(alice, path, {"q0": "7", "q1": ""})
    assert response.status == 400 and 'href="#f-q0"' in await response.text()
    response = await post(alice, path, {"q0": "2", "q1": "Fast"})
    assert response.status == 303
    results = await twin(alice, f"/m/{survey.hex_id}")
    assert results["respondents"] == 1
    assert results["results"][0]["counts"] == [0, 0, 1]


async def test_me_data_key_password_and_erase(node: Node, aiohttp_client: ClientMaker) -> None:
    (alice,) = await clients(node, aiohttp_client, 1)
    account = await add_user(node, "Alice")
    await login(alice, "Alice")
    topic = await _topic(alice)

    data = await (await alice.get("/me/data.json")).json()
    assert data["account"]["name"] == "Alice"
    text = json.dumps(data)
    assert "sealed" not in text and "scrypt" not in text
    assert [m["fields"]["title"] for m in data["messages"] if m["kind"] == "topic"] == ["Schools"]

    response = await post(alice, "/me/key", {"password": "wrong one!"}, form="/me")
    assert response.status == 401
    response = await post(alice, "/me/key", {"password": PASSWORD}, form="/me")
    assert response.status == 200 and response.headers["Cache-Control"] == "no-store"
    pem = await response.read()
    key = signing.private_key_from_pem(pem)
    assert signing.public_key_bytes(key) == account.public_key
    # The downloaded key works with the command line: a comment posted with it counts.
    from node.cli import main

    key_file = node.config.dir / "alice.key"
    key_file.write_bytes(pem)
    args = [
        "post",
        str(node.config.dir),
        "comment",
        "--target",
        topic,
        "--text",
        "From the CLI",
        "--lang",
        "en",
        "--key",
        str(key_file),
    ]
    assert main(args) == 0
    comments = (await twin(alice, f"/t/{topic}"))["comments"]
    assert [c["text"] for c in comments] == ["From the CLI"]

    response = await post(
        alice,
        "/me/password",
        {"password": PASSWORD, "new_password": "short", "new_password2": "short"},
        form="/me",
    )
    assert response.status == 400
    new = "a much better password"
    response = await post(
        alice,
        "/me/password",
        {"password": PASSWORD, "new_password": new, "new_password2": new},
        form="/me",
    )
    assert response.status == 303
    await post(alice, "/logout", {}, form="/me")
    response = await post(alice, "/login", {"name": "Alice", "password": PASSWORD})
    assert response.status == 401
    await login(alice, "Alice", new)
    assert (await twin(alice, "/me"))["me"]["key"] == account.public_key.hex()

    response = await post(alice, f"/m/{topic}/erase", {}, form="/me")
    assert response.status == 303
    assert (await twin(alice, f"/t/{topic}"))["topic"]["status"] == "erased"
    other = await add_user(node, "Bob")
    assert other is not None


async def test_a_web_post_reaches_a_peer_at_once(
    tmp_path: Path, aiohttp_client: ClientMaker
) -> None:
    """What a resident publishes in the browser is pushed to the node's peers as soon as
    it is stored (no sync round needed): the topic, and an approval's grant."""
    import asyncio

    from aiohttp.test_utils import TestServer

    from node.appkeys import PEERS
    from storage import forum

    a = make_node(tmp_path, "Bomarzo", "a")
    b = make_node(tmp_path, "Viterbo", "b")
    server_b = TestServer(b.app)
    await server_b.start_server()
    try:
        (client,) = await clients(a, aiohttp_client, 1)
        await a.app[PEERS].add(str(server_b.make_url("")).rstrip("/"))
        await add_user(a, "Admin", "admin")
        await login(client, "Admin")
        topic = await _topic(client)
        # Wait (bounded) for the push: the test asserts that it arrives, not how fast.
        for _ in range(200):
            held = await b.app[STORE].read(forum.thing, bytes.fromhex(topic))
            if held is not None and held["status"] == "visible":
                break
            await asyncio.sleep(0.05)
        # B holds the admin's grant too (the tail pushes what add_account wrote): it counts.
        assert held is not None and held["status"] == "visible"
        assert held["title"] == "Schools"
    finally:
        await server_b.close()


async def test_admin_rejects_grants_revokes_and_manages_peers(
    tmp_path: Path, aiohttp_client: ClientMaker
) -> None:
    from aiohttp.test_utils import TestServer

    a = make_node(tmp_path, "Bomarzo", "a")
    b = make_node(tmp_path, "Viterbo", "b")
    server_b = TestServer(b.app)
    await server_b.start_server()
    try:
        admin, official, resident = await clients(a, aiohttp_client, 3)
        await add_user(a, "Admin", "admin")
        await add_user(a, "Olga", "official")
        carl = await add_user(a, "Carl")
        await login(admin, "Admin")
        await login(official, "Olga")
        await login(resident, "Carl")
        # A resident sees no admin page; an official sees accounts but not roles/peers.
        assert (await resident.get("/admin", allow_redirects=False)).status == 403
        assert (await twin(official, "/admin"))["is_admin"] is False
        response = await post(
            official, "/admin/grant", {"member": "Carl", "role": "admin"}, form="/admin"
        )
        assert response.status == 403

        # Rejecting a pending registration publishes nothing.
        pw = {"name": "Dora", "password": PASSWORD, "password2": PASSWORD}
        (dora,) = [await aiohttp_client(admin.server)]
        assert (await post(dora, "/register", pw)).status == 303
        pending = (await twin(official, "/admin"))["pending"]
        response = await post(
            official, f"/admin/accounts/{pending[0]['id']}/reject", {}, form="/admin"
        )
        assert response.status == 303
        me = await twin(dora, "/me")
        assert me["me"]["status"] == "rejected" and me["me"]["roles"] == []
        assert (await dora.get("/new/topic", allow_redirects=False)).status == 403

        # Grant with an end date, bad input, then revoke.
        for bad in (
            {"member": "nobody", "role": "moderator"},
            {"member": "Carl", "role": "king"},
            {"member": "Carl", "role": "moderator", "until": "someday"},
        ):
            response = await post(admin, "/admin/grant", bad, form="/admin")
            assert response.status == 400, bad
        response = await post(
            admin,
            "/admin/grant",
            {"member": "Carl", "role": "moderator", "until": "2099-12-31"},
            form="/admin",
        )
        assert response.status == 303
        grants = (await twin(admin, "/admin"))["grants"]
        mod = [
            g for g in grants if g["member"] == carl.public_key.hex() and g["role"] == "moderator"
        ]
        assert len(mod) == 1 and mod[0]["until"] == 4_102_444_799_999
        assert "moderator" in (await twin(resident, "/me"))["me"]["roles"]
        response = await post(admin, "/admin/revoke", {"grant": "zz", "reason": ""}, form="/admin")
        assert response.status == 400
        response = await post(
            admin, "/admin/revoke", {"grant": mod[0]["grant"], "reason": "term"}, form="/admin"
        )
        assert response.status == 303
        assert "moderator" not in (await twin(resident, "/me"))["me"]["roles"]

        # Peers: a bad address, an unreachable one, then add, see, remove.
        url_b = str(server_b.make_url("")).rstrip("/")
        response = await post(admin, "/admin/peers/add", {"url": "ftp://x"}, form="/admin")
        assert response.status == 400
        response = await post(
            admin, "/admin/peers/add", {"url": "http://127.0.0.1:9"}, form="/admin"
        )
        assert response.status == 409 and "The peer was not added" in await response.text()
        response = await post(admin, "/admin/peers/add", {"url": url_b}, form="/admin")
        assert response.status == 303
        peers = (await twin(admin, "/admin"))["peers"]
        assert [(p["url"], p["community"]) for p in peers] == [(url_b, b.community)]
        response = await post(admin, "/admin/peers/remove", {"url": url_b}, form="/admin")
        assert response.status == 303
        assert (await twin(admin, "/admin"))["peers"] == []
        response = await post(admin, "/admin/peers/remove", {"url": url_b}, form="/admin")
        assert response.status == 404
    finally:
        await server_b.close()


async def test_registrations_are_throttled_per_address(
    node: Node, aiohttp_client: ClientMaker
) -> None:
    (client,) = await clients(node, aiohttp_client, 1)
    for i in range(5):
        data = {"name": f"Person {i}", "password": PASSWORD, "password2": PASSWORD}
        assert (await post(client, "/register", data)).status == 303
    data = {"name": "Person 9", "password": PASSWORD, "password2": PASSWORD}
    response = await post(client, "/register", data)
    assert response.status == 429 and "Too many registrations" in await response.text()
    names = [a.name for a in await node.app[STORE].read(acc.list_accounts)]
    assert names == [f"Person {i}" for i in range(5)]
