"""fora grant / revoke / show and the friendly post flags; refusals of no-effect messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out.strip(), err


def test_grant_post_vote_show_and_refusals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node = str(tmp_path / "node")
    assert run(capsys, "init", node, "--name", "Bomarzo", "--country", "IT")[0] == 0
    alice, bob = str(tmp_path / "alice.key"), str(tmp_path / "bob.key")
    run(capsys, "key", "new", alice)
    _, bob_pub, _ = run(capsys, "key", "new", bob)
    # Not a member yet: refused with one clear line.
    code, _, err = run(capsys, "post", node, "topic", "--title", "Buses", "--key", alice)
    assert code == 1 and err == "Error: topic would not be counted: you are not a member now\n"
    code, grant_id, _ = run(capsys, "grant", node, alice, "member")
    assert code == 0 and len(grant_id) == 64
    code, topic, _ = run(
        capsys, "post", node, "topic", "--title", "Buses", "--tag", "transport", "--key", alice
    )
    assert code == 0
    code, proposal, err = run(
        capsys,
        "post",
        node,
        "proposal",
        "--topic",
        topic,
        "--title",
        "Electric bus",
        "--problem",
        "Old bus",
        "--solution",
        "Buy one",
        "--closes",
        "2099-03-01",
        "--key",
        alice,
    )
    assert code == 0, err
    code, vote, _ = run(
        capsys, "post", node, "vote", "--proposal", proposal, "--choice", "yes", "--key", alice
    )
    assert code == 0
    code, out, _ = run(capsys, "show", node, proposal, "--json")
    data = json.loads(out)
    assert data["counts"]["yes"] == 1 and data["tally_status"] == "none"
    assert data["thing"]["closes"] == 4_076_092_799_999  # 2099-03-01T23:59:59.999Z
    # A vote by a non-member, a hide by a non-moderator, a tally by a member, early tally.
    for args in (
        ("vote", "--proposal", proposal, "--choice", "no", "--key", bob),
        ("hide", "--target", topic, "--reason", "no", "--key", alice),
        (
            "tally",
            "--proposal",
            proposal,
            "--body",
            '{"yes": 1, "no": 0, "abstain": 0, "ballots": "' + "00" * 32 + '"}',
            "--key",
            alice,
        ),
    ):
        code, _, err = run(capsys, "post", node, *args)
        assert code == 1 and err.startswith("Error: ") and err[-1] == "\n", args
    # Forced anyway (as a peer could send it): stored, shown as not counted.
    code, bob_vote, _ = run(
        capsys,
        "post",
        node,
        "vote",
        "--proposal",
        proposal,
        "--choice",
        "no",
        "--key",
        bob,
        "--force",
    )
    assert code == 0
    code, out, _ = run(capsys, "show", node, bob_vote, "--json")
    assert json.loads(out)["not_counted"] == "author not a member at ts"
    code, out, _ = run(capsys, "show", node, vote)
    assert "counted" in out
    # Revoke: Alice's later posts are refused.
    assert run(capsys, "revoke", node, grant_id, "--reason", "moved")[0] == 0
    code, _, err = run(capsys, "post", node, "topic", "--title", "Again", "--key", alice)
    assert code == 1 and "not a member" in err
    # Granting by key hex works too, with an end date.
    assert run(capsys, "grant", node, bob_pub, "moderator", "--until", "2099-01-01")[0] == 0
    assert (
        run(capsys, "post", node, "hide", "--target", topic, "--reason", "x", "--key", bob)[0] == 0
    )
    code, out, _ = run(capsys, "show", node, topic, "--json")
    assert json.loads(out)["status"] == "hidden"


def test_vote_on_a_closed_proposal_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node = str(tmp_path / "node")
    run(capsys, "init", node, "--name", "B", "--country", "IT")
    _, topic, _ = run(capsys, "post", node, "topic", "--title", "T")
    _, proposal, _ = run(
        capsys,
        "post",
        node,
        "proposal",
        "--topic",
        topic,
        "--title",
        "P",
        "--problem",
        "x",
        "--solution",
        "y",
        "--closes",
        "2020-01-01",
    )
    code, _, err = run(capsys, "post", node, "vote", "--proposal", proposal, "--choice", "yes")
    assert code == 1 and err == "Error: vote would not be counted: the proposal is closed\n"
