"""fora post panel / draw (secret kept, entropy picked, selection re-computed) and the
friendly flags for petitions, signs, surveys and answers, with their refusals."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from node.cli import main
from protocol import sortition
from storage.database import open_database


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out.strip(), err


def node_with_members(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, members: int
) -> tuple[str, list[str]]:
    node = str(tmp_path / name)
    assert run(capsys, "init", node, "--name", name, "--country", "IT")[0] == 0
    keys = []
    for i in range(members):
        path = str(tmp_path / f"{name}-{i}.key")
        run(capsys, "key", "new", path)
        assert run(capsys, "grant", node, path, "member")[0] == 0
        keys.append(path)
    return node, keys


def test_panel_and_draw_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home, keys = node_with_members(tmp_path, capsys, "home", 5)
    peer, _ = node_with_members(tmp_path, capsys, "peer", 0)
    # Refusals first: no name, everyone selected, a non-official.
    code, _, err = run(capsys, "post", home, "panel", "--seats", "2")
    assert code == 1 and err == "Error: panel needs --name and --seats\n"
    code, _, err = run(capsys, "post", home, "panel", "--name", "All", "--seats", "5")
    assert code == 1 and "would select everyone: 5 seats for 5 eligible keys" in err
    code, _, err = run(
        capsys, "post", home, "panel", "--name", "P", "--seats", "2", "--key", keys[0]
    )
    assert code == 1 and err == "Error: panel would not be counted: you are not an official now\n"
    code, panel, err = run(capsys, "post", home, "panel", "--name", "Schools", "--seats", "2")
    assert code == 0, err
    secret_file = tmp_path / "home" / "secrets" / panel
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert len(secret_file.read_bytes()) == 32
    # No followed peer has published after the panel: a clear error, nothing stored.
    code, _, err = run(capsys, "post", home, "draw", "--panel", panel)
    assert code == 1 and "no message of a followed peer community" in err
    # The peer publishes; its messages reach the home node (as a sync would bring them).
    code, peer_topic, _ = run(capsys, "post", peer, "topic", "--title", "Peer news")
    assert code == 0
    export = tmp_path / "peer.bin"
    assert run(capsys, "export", peer, "-o", str(export))[0] == 0
    assert run(capsys, "ingest", home, str(export))[0] == 0
    _, peer_id, _ = run(capsys, "id", peer)
    # Not followed yet: still nothing to draw with.
    code, _, err = run(capsys, "post", home, "draw", "--panel", panel)
    assert code == 1 and "no message of a followed peer community" in err
    assert run(capsys, "follow", home, peer_id)[0] == 0
    code, draw, err = run(capsys, "post", home, "draw", "--panel", panel)
    assert code == 0, err
    assert "selected 2 of 5 with 1 entropy messages" in err
    assert not secret_file.exists()
    code, out, _ = run(capsys, "show", home, panel, "--json")
    data = json.loads(out)
    assert data["panel"]["roll_check"] == "match" and data["draw"]["status"] == "verified"
    assert data["commit_check"] == "matches" and data["draw"]["id"] == draw
    shown_draw = json.loads(run(capsys, "show", home, draw, "--json")[1])
    assert shown_draw["refs"] == [panel, peer_topic]
    # Re-run by hand from the published facts: the five members' keys, the secret and
    # the entropy id give the same selection.
    db = open_database(tmp_path / "home" / "fora.db")
    try:
        roll = [
            row[0]
            for row in db.execute(
                "SELECT member FROM role_grants WHERE community = ? AND status = 'valid'",
                (bytes.fromhex(run(capsys, "id", home)[1]),),
            )
        ]
    finally:
        db.close()
    assert len(roll) == 5
    secret = bytes.fromhex(shown_draw["fields"]["secret"])
    assert sortition.commit_of(secret).hex() == data["panel"]["commit"]
    again = sortition.draw(roll, secret, [bytes.fromhex(peer_topic)], 2)
    assert [k.hex() for k in again.selected] == shown_draw["fields"]["selected"]
    assert data["selected"] == shown_draw["fields"]["selected"]
    # The peer node re-runs the draw from the messages alone.
    home_export = tmp_path / "home.bin"
    assert run(capsys, "export", home, "-o", str(home_export))[0] == 0
    assert run(capsys, "ingest", peer, str(home_export))[0] == 0
    there = json.loads(run(capsys, "show", peer, panel, "--json")[1])
    assert there["draw"]["status"] == "verified" and there["panel"]["eligible"] == 5
    # A second draw is refused; so is a draw of an unknown panel.
    code, _, err = run(capsys, "post", home, "draw", "--panel", panel)
    assert code == 1 and "counts already (verified)" in err
    code, _, err = run(capsys, "post", home, "draw", "--panel", "ab" * 32)
    assert code == 1 and "is not held here" in err
    # Text output names the draw status.
    assert "verified" in run(capsys, "show", home, panel)[1]


def test_petition_sign_survey_answer_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node, (alice, bob) = node_with_members(tmp_path, capsys, "home", 2)
    code, petition, err = run(
        capsys,
        "post",
        node,
        "petition",
        "--title",
        "More trees",
        "--text",
        "In the square.",
        "--goal",
        "2",
        "--closes",
        "2099-01-01",
        "--key",
        alice,
    )
    assert code == 0, err
    code, _, err = run(
        capsys,
        "post",
        node,
        "petition",
        "--title",
        "Old",
        "--text",
        "x",
        "--goal",
        "2",
        "--closes",
        "2020-01-01",
    )
    assert code == 1 and err == "Error: petition would have no effect: it would be closed already\n"
    assert run(capsys, "post", node, "sign", "--petition", petition, "--key", alice)[0] == 0
    code, _, err = run(capsys, "post", node, "sign", "--petition", petition, "--key", alice)
    assert code == 1 and "signed this petition already" in err
    assert run(capsys, "post", node, "sign", "--petition", petition, "--key", bob)[0] == 0
    data = json.loads(run(capsys, "show", node, petition, "--json")[1])
    assert data["counts"]["signatures"] == 2 and data["counts"]["goal_reached"] is True
    # A sign on a closed petition (published with --force, as a peer could).
    code, closed, _ = run(
        capsys,
        "post",
        node,
        "petition",
        "--title",
        "Closed",
        "--text",
        "x",
        "--goal",
        "1",
        "--closes",
        "2020-01-01",
        "--force",
    )
    assert code == 0
    code, _, err = run(capsys, "post", node, "sign", "--petition", closed, "--key", bob)
    assert code == 1 and err == "Error: sign would not be counted: the petition is closed\n"
    # A sign that targets a survey-less id, or the wrong kind.
    code, _, err = run(capsys, "post", node, "sign", "--petition", "cd" * 32, "--key", bob)
    assert code == 1 and "is not held here" in err
    # Surveys: only officials; questions from --question.
    survey_args = [
        "post",
        node,
        "survey",
        "--title",
        "How are we doing?",
        "--question",
        "Satisfied?|scale|no,somewhat,yes",
        "--question",
        "Which first?|choice|roads,parks",
        "--question",
        "Anything else?|text",
        "--closes",
        "2099-01-01",
    ]
    code, _, err = run(capsys, *survey_args, "--key", alice)
    assert code == 1 and "you are not an official now" in err
    code, _, err = run(
        capsys, *survey_args[:5], "--question", "Bad|maybe|x", "--closes", "2099-01-01"
    )
    assert code == 1 and err.startswith("Error: --question 'Bad|maybe|x': use ")
    code, survey, err = run(capsys, *survey_args)
    assert code == 0, err
    code, _, err = run(capsys, "post", node, "sign", "--petition", survey)
    assert code == 1 and err == "Error: sign: the target is a survey, not a petition\n"
    answer = ["post", node, "answer", "--survey", survey]
    code, _, err = run(capsys, *answer, "--answer", "yes", "--key", alice)
    assert code == 1 and err == "Error: answer would not be counted: 1 --answer for 3 questions\n"
    code, _, err = run(
        capsys, *answer, "--answer", "maybe", "--answer", "1", "--answer", "-", "--key", alice
    )
    assert code == 1 and "question 1: 'maybe' is not one of no, somewhat, yes (or 1..3)" in err
    code, a1, err = run(
        capsys,
        *answer,
        "--answer",
        "yes",
        "--answer",
        "2",
        "--answer",
        "More benches.",
        "--key",
        alice,
    )
    assert code == 0, err
    code, _, err = run(
        capsys, *answer, "--answer", "1", "--answer", "roads", "--answer", "-", "--key", bob
    )
    assert code == 0, err
    data = json.loads(run(capsys, "show", node, survey, "--json")[1])
    assert data["respondents"] == 2
    assert data["results"][0]["counts"] == [1, 0, 1]
    assert data["results"][1]["counts"] == [1, 1]
    assert data["results"][2]["text_answers"] == 1 and data["results"][2]["skipped"] == 1
    shown = json.loads(run(capsys, "show", node, a1, "--json")[1])
    assert shown["fields"]["answers"] == [2, 1, "More benches."]
    # A survey that is not open yet refuses answers.
    code, later, _ = run(
        capsys,
        "post",
        node,
        "survey",
        "--title",
        "Later",
        "--question",
        "Q?|text",
        "--opens",
        "2098-01-01",
        "--closes",
        "2099-01-01",
    )
    assert code == 0
    code, _, err = run(capsys, "post", node, "answer", "--survey", later, "--answer", "x")
    assert code == 1 and err == "Error: answer would not be counted: the survey is not open yet\n"


def test_draw_refuses_a_changed_roll_or_a_lost_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from node.folder import read_key
    from protocol.messages import create_message
    from storage.messages import ingest

    home, _ = node_with_members(tmp_path, capsys, "home", 3)
    peer, _ = node_with_members(tmp_path, capsys, "peer", 0)
    _, panel, _ = run(capsys, "post", home, "panel", "--name", "P", "--seats", "1")
    run(capsys, "post", peer, "topic", "--title", "Peer news")
    run(capsys, "export", peer, "-o", str(tmp_path / "peer.bin"))
    run(capsys, "ingest", home, str(tmp_path / "peer.bin"))
    run(capsys, "follow", home, run(capsys, "id", peer)[1])
    data = json.loads(run(capsys, "show", home, panel, "--json")[1])
    # A grant dated before the panel arrives (as a sync could bring it): the roll
    # recounted at the panel's ts no longer matches, so the draw would not verify.
    key = read_key(tmp_path / "home" / "community.key")
    community = bytes.fromhex(run(capsys, "id", home)[1])
    late = create_message(
        key,
        kind="grant",
        community=community,
        ts=data["ts"] - 1,
        fields={"member": bytes(range(32)), "role": "member"},
    )
    db = open_database(tmp_path / "home" / "fora.db")
    try:
        (result,) = ingest(db, [late.raw], now_ms=data["ts"] + 60_000)
        assert result.result.accepted
    finally:
        db.close()
    code, _, err = run(capsys, "post", home, "draw", "--panel", panel)
    assert code == 1 and "the roll recounted here (4 keys at the panel's ts) differs" in err
    assert (tmp_path / "home" / "secrets" / panel).exists()  # kept for a later try
    # Without the secret file: a clear error.
    (tmp_path / "home" / "secrets" / panel).unlink()
    code, _, err = run(capsys, "post", home, "draw", "--panel", panel)
    assert code == 1 and err.startswith("Error: no secret for this panel in ")
