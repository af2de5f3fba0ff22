"""One meaning for a typed date: protocol.dates, and the CLI and the web giving the same
ms for the same text (a bare date closes at the end of its day, opens at its start)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from node.cli import main
from protocol.dates import BadTime, closing_time, opening_time, parse_time

from .webflow import Client, logged_in, make_node, post, twin

DAY = 4_076_006_400_000  # 2099-03-01T00:00:00.000Z
HOUR = 3_600_000

#: (text, ms as a close time): bare date, Z, offsets, naive (UTC), seconds and fractions.
CLOSES = [
    ("2099-03-01", DAY + 24 * HOUR - 1),
    ("  2099-03-01 ", DAY + 24 * HOUR - 1),
    ("2099-03-01T18:00Z", DAY + 18 * HOUR),
    ("2099-03-01t18:00z", DAY + 18 * HOUR),
    ("2099-03-01T18:00:00+01:00", DAY + 17 * HOUR),
    ("2099-03-01T18:00+0100", DAY + 17 * HOUR),
    ("2099-03-01T18:00:00.123456-05:30", DAY + 23 * HOUR + 1_800_000 + 123),
    ("2099-03-01T18:00", DAY + 18 * HOUR),
    ("2099-03-01 18:00:30.25", DAY + 18 * HOUR + 30_250),
]
BAD = [
    "soon",
    "20990301",
    "2099-W09-1",
    "2099-13-01",
    "2099-02-30",
    "2099-03-01T25:00",
    "2099-03-01T18",
    "2099-03-01Z",
    "2099-03-01T18:00+25:00",
    "1969-12-31",
    "0001-01-01T00:00+01:00",
]


@pytest.mark.parametrize(("text", "ms"), CLOSES)
def test_a_close_time(text: str, ms: int) -> None:
    assert closing_time(text) == ms == parse_time(text, end_of_day=True)


def test_a_bare_date_opens_at_the_start_of_its_day_and_closes_at_its_end() -> None:
    assert opening_time("2099-03-01") == DAY
    assert closing_time("2099-03-01") == DAY + 24 * HOUR - 1
    # A survey open for one day: opens < closes, as its schema requires.
    assert opening_time("2099-03-01") < closing_time("2099-03-01")
    # A time of day means that instant either way.
    assert opening_time("2099-03-01T18:00Z") == closing_time("2099-03-01T18:00Z")
    assert opening_time("1970-01-01") == 0
    assert closing_time("9999-12-31") == 253_402_300_799_999  # no overflow at the end


@pytest.mark.parametrize("text", ["", *BAD])
def test_bad_text_is_a_bad_time(text: str) -> None:
    with pytest.raises(BadTime, match=r"not a date: .* \(use 2027-03-01 or 2027-03-01T18:00Z\)"):
        parse_time(text, end_of_day=True)


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out.strip(), err


async def test_the_cli_and_the_web_give_the_same_close_for_the_same_text(
    tmp_path: Path,
    aiohttp_client: Callable[..., Awaitable[Client]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    node = make_node(tmp_path)
    folder = str(node.config.dir)
    web = await logged_in(await aiohttp_client(node.app), node, "Alice")
    response = await post(
        web,
        "/new/topic",
        {"title": "Buses", "text": "", "tags": "", "scope": "local", "lang": "en"},
    )
    assert response.status == 303
    topic = response.headers["Location"].removeprefix("/t/")
    key = str(tmp_path / "bob.key")
    assert _cli(capsys, "key", "new", key)[0] == 0
    assert _cli(capsys, "grant", folder, key, "member")[0] == 0
    fields = {"title": "Bus", "problem": "Old", "solution": "New", "lang": "en"}
    flags = ["--title", "Bus", "--problem", "Old", "--solution", "New", "--key", key]

    for text, ms in CLOSES:
        response = await post(web, f"/t/{topic}/proposal", {**fields, "closes": text})
        assert response.status == 303, (text, await response.text())
        from_web = (await twin(web, response.headers["Location"]))["proposal"]["closes"]
        code, proposal, err = _cli(
            capsys, "post", folder, "proposal", "--topic", topic, "--closes", text, *flags
        )
        assert code == 0, (text, err)
        code, out, _ = _cli(capsys, "show", folder, proposal, "--json")
        from_cli = json.loads(out)["thing"]["closes"]
        assert from_web == from_cli == ms, text

    # Bad text: the web's form error on the field, the CLI's one Error: line; nothing stored.
    before = len((await twin(web, f"/t/{topic}"))["proposals"])
    for text in BAD:
        response = await post(web, f"/t/{topic}/proposal", {**fields, "closes": text})
        body = await response.text()
        assert response.status == 400 and "Enter a date like 2027-03-01" in body, text
        assert 'href="#f-closes"' in body
        code, out, err = _cli(
            capsys, "post", folder, "proposal", "--topic", topic, "--closes", text, *flags
        )
        assert (code, out) == (1, ""), text
        assert err == f"Error: not a date: {text!r} (use 2027-03-01 or 2027-03-01T18:00Z)\n"
    assert len((await twin(web, f"/t/{topic}"))["proposals"]) == before == 2 * len(CLOSES)


def test_cli_survey_opens_at_the_start_and_grant_ends_at_the_end_of_a_bare_date(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = str(tmp_path / "node")
    assert _cli(capsys, "init", folder, "--name", "Bomarzo", "--country", "IT")[0] == 0
    key = str(tmp_path / "bob.key")
    assert _cli(capsys, "key", "new", key)[0] == 0
    code, grant, _ = _cli(capsys, "grant", folder, key, "member", "--until", "2099-03-01")
    assert code == 0
    shown = json.loads(_cli(capsys, "show", folder, grant, "--json")[1])
    assert shown["fields"]["until"] == DAY + 24 * HOUR - 1
    code, survey, err = _cli(
        capsys,
        "post",
        folder,
        "survey",
        "--title",
        "One day",
        "--question",
        "Q?|text",
        "--opens",
        "2099-03-01",
        "--closes",
        "2099-03-01",
    )
    assert code == 0, err
    fields = json.loads(_cli(capsys, "show", folder, survey, "--json")[1])["fields"]
    assert (fields["opens"], fields["closes"]) == (DAY, DAY + 24 * HOUR - 1)
    code, _, err = _cli(capsys, "grant", folder, key, "member", "--until", "next week")
    assert code == 1 and err.startswith("Error: not a date: 'next week'")
