"""The node's English reasons shown in the reader's language (web/reasons.py): storage
and the JSON keep the English text; the HTML translates it."""

from __future__ import annotations

import ast
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from markupsafe import Markup

from node.appkeys import STORE
from node.publish import publish
from storage.views import answers_mismatch
from web.i18n import LANGUAGES
from web.reasons import EXACT, PATTERNS, explain

from .webflow import Client, logged_in, make_node, post, twin


def test_a_known_reason_is_translated_and_an_unknown_one_kept_in_english() -> None:
    assert explain("author not a member at ts", "fr") == (
        "l&#39;auteur n&#39;était pas membre à ce moment"
    )
    assert explain("author not a member at ts", "en") == "the author was not a member at that time"
    # A reason with a reason inside: both parts translated.
    assert explain("sign would not be counted: you signed this petition already", "de") == (
        "es würde nicht zählen: Sie haben diese Petition bereits unterschrieben"
    )
    assert explain("proposal unauthorized: author not an official at ts", "it") == (
        "la proposta non conta: in quel momento l&#39;autore non era un funzionario"
    )
    # Variable parts are kept, escaped.
    assert explain("question 2: option 7 out of range", "pl") == "pytanie 2: opcja 7 nie istnieje"
    assert explain("unknown kind '<b>': stored, never shown", "lv") == (
        "nezināms veids &lt;b&gt;: glabāts, nekad netiek rādīts"
    )
    # Unknown: as it is, escaped, marked English; an unknown inner reason too.
    assert explain("<script>x</script>", "fr") == (
        '<span lang="en">&lt;script&gt;x&lt;/script&gt;</span>'
    )
    assert explain("vote would not be counted: cosmic rays", "fr") == (
        'cela ne compterait pas : <span lang="en">cosmic rays</span>'
    )
    assert explain("", "fr") == "" and explain(None, "fr") == ""
    assert isinstance(explain("erased", "fr"), Markup)


@pytest.mark.parametrize("lang", sorted(set(LANGUAGES) - {"en"}))
def test_every_reason_reads_differently_from_the_english(lang: str) -> None:
    """A catalog entry copied from the English would pass the completeness test; here
    each reason must actually change (status words like 'Moderator' may not)."""
    same = [text for text in EXACT if str(explain(text, lang)) == str(explain(text, "en"))]
    assert same == []


def test_the_patterns_cover_what_answers_mismatch_says() -> None:
    questions = [{"type": "text"}, {"type": "choice", "options": ["a", "b"]}]
    for answers in (["x"], [1, "a"], ["x", "a"], ["x", 9]):
        why = answers_mismatch(questions, answers)
        assert why and any(p.fullmatch(why) for p, _ in PATTERNS), why
        assert "lang=" not in explain(why, "fr")


async def _in_french(client: Client) -> None:
    response = await client.get("/?lang=fr")
    assert response.status == 200


async def test_a_french_reader_refused_a_second_signature_reads_why_in_french(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    node = make_node(tmp_path)
    alice = await logged_in(await aiohttp_client(node.app), node, "Alice")
    await _in_french(alice)
    petition = await node.app[STORE].write(
        publish,
        node.key,
        bytes.fromhex(node.community),
        "petition",
        {"title": "Arbres", "text": "Plantez-les", "goal": 10, "closes": 4_000_000_000_000},
    )
    path = f"/m/{petition.hex_id}/sign"
    assert (await post(alice, path, {})).status == 303
    again = await post(alice, path, {})
    html = await again.text()
    assert again.status == 409
    assert (
        "Ceci n'aurait aucun effet: cela ne compterait pas : vous avez déjà signé cette pétition"
        in html
    )
    assert "signed this petition already" not in html
    # The JSON twin keeps the node's English reason.
    response = await alice.post(
        path,
        data={"csrf_token": re.findall(r'name="csrf_token" value="([^"]+)"', html)[0]},
        headers={"Accept": "application/json"},
        allow_redirects=False,
    )
    assert response.status == 409
    errors = (await response.json())["form"]["errors"]
    assert errors[0]["detail"] == "sign would not be counted: you signed this petition already"


async def test_my_ballots_statuses_and_reasons_in_french(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    node = make_node(tmp_path)
    alice = await logged_in(await aiohttp_client(node.app), node, "Alice")
    await _in_french(alice)
    response = await post(
        alice,
        "/new/topic",
        {"title": "Bus", "text": "", "tags": "", "scope": "local", "lang": "fr"},
    )
    topic = response.headers["Location"].removeprefix("/t/")
    fields = {"title": "Bus", "problem": "Vieux", "solution": "Neuf", "lang": "fr"}
    response = await post(alice, f"/t/{topic}/proposal", {**fields, "closes": "2099-01-01"})
    proposal = response.headers["Location"].removeprefix("/m/")
    await post(alice, f"/m/{proposal}/vote", {"choice": "yes"})
    await post(alice, f"/m/{proposal}/vote", {"choice": "no"})
    newest, older = (await twin(alice, "/me"))["ballots"]
    assert (newest["status"], newest["reason"]) == ("counted", "")
    assert older["reason"] == "a newer ballot by the same voter counts"
    html = await (await alice.get("/me")).text()
    statuses = re.findall(r'<span class="ballot-status">(.*?)</span>', html)
    assert statuses == ["compté", "remplacé: un vote plus récent du même votant compte"]
    # The vote's own page (message.html) says why it does not count, in French.
    html = await (await alice.get(f"/m/{older['id']}")).text()
    assert "un vote plus récent du même votant compte" in html


# -- every reason the node's checks can give has a translation -----------------------

ROOT = Path(__file__).resolve().parent.parent
#: Samples for the expressions inside check_effect's f-strings.
SAMPLES = {
    "kind": ["sign", "vote"],
    "want": ["petition", "survey"],
    "target.hex()": ["ab" * 32],
    "status or 'not shown'": ["erased", "not shown"],
    "t_kind": ["topic"],
    # protocol/sortition.py entropy_problems
    "len(entropy_ids)": ["16"],
    "MAX_ENTROPY": ["15"],
    "name": ["0123456789abcdef"],
    "other": ["fedcba9876543210"],
    "e.ts": ["1700000000000"],
    "panel_ts": ["1700000000001"],
    "draw_ts": ["1699999999999"],
}
#: Refusals the web cannot meet (its routes pick the target's kind), left in English.
NOT_FOR_THE_WEB = ("the target is a",)


def _functions(path: Path, names: set[str]) -> list[ast.FunctionDef]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name in names]


def _renderings(node: ast.JoinedStr) -> list[str] | None:
    """Every text of an f-string with SAMPLES put in; None if an expression is unknown."""
    texts = [""]
    for part in node.values:
        if isinstance(part, ast.Constant):
            texts = [t + str(part.value) for t in texts]
            continue
        assert isinstance(part, ast.FormattedValue)
        samples = SAMPLES.get(ast.unparse(part.value))
        if samples is None:
            return None
        texts = [t + s for t in texts for s in samples]
    return texts


def _check_effect_refusals() -> list[str]:
    found: list[str] = []
    for fn in _functions(ROOT / "node" / "publish.py", {"check_effect", "_check_target"}):
        for call in ast.walk(fn):
            if not (isinstance(call, ast.Call) and ast.unparse(call.func) == "NodeError"):
                continue
            (arg,) = call.args
            if isinstance(arg, ast.Constant):
                found.append(arg.value)
            elif isinstance(arg, ast.JoinedStr):
                texts = _renderings(arg)
                if texts is None:  # "{kind} would not be counted: {why}": tested below
                    assert ast.unparse(arg).endswith("{why}'"), ast.unparse(arg)
                else:
                    found += texts
    return found


def _draw_problems() -> list[str]:
    """What storage/panels.py and protocol/sortition.py say of a panel or a draw."""
    found: list[str] = []
    for fn in _functions(ROOT / "protocol" / "sortition.py", {"entropy_problems"}):
        for call in ast.walk(fn):
            if isinstance(call, ast.Call) and ast.unparse(call.func) == "problems.append":
                (arg,) = call.args
                texts = [arg.value] if isinstance(arg, ast.Constant) else None
                if isinstance(arg, ast.JoinedStr):
                    texts = _renderings(arg)
                assert texts is not None, ast.unparse(arg)
                found += texts
    tree = ast.parse((ROOT / "storage" / "panels.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "problems.append":
            found += [a.value for a in node.args if isinstance(a, ast.Constant)]
        elif isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values, strict=True):
                if isinstance(k, ast.Constant) and k.value in ("why", "problems"):
                    values = v.elts if isinstance(v, ast.List) else [v]
                    found += [e.value for e in values if isinstance(e, ast.Constant)]
        elif isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple):
            found += [
                e.value
                for e in node.value.elts
                if isinstance(e, ast.Constant) and isinstance(e.value, str)
            ]
    return [r for r in found if r]


def _judged_reasons() -> list[str]:
    """The (status, why) constants of storage/views.py's judges and the verdicts of
    storage/roles.py."""
    found: list[str] = []
    for path in (ROOT / "storage" / "views.py", ROOT / "storage" / "roles.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Tuple):
                names = [ast.unparse(t) for t in node.targets[0].elts]
                if isinstance(node.value, ast.Tuple) and any("why" in n for n in names):
                    found += [
                        e.value
                        for e in node.value.elts
                        if isinstance(e, ast.Constant) and isinstance(e.value, str)
                    ]
            elif isinstance(node, ast.Call) and ast.unparse(node.func) == "Verdict":
                found += [
                    a.value
                    for a in node.args[1:]
                    if isinstance(a, ast.Constant) and isinstance(a.value, str)
                ]
            elif (
                isinstance(node, ast.Assign)
                and ast.unparse(node.targets[0]) == "status"
                and isinstance(node.value, ast.Constant)
                and node.value.value != "valid"
            ):
                found.append(node.value.value)
    return [r for r in found if r]


def test_every_reason_of_the_checks_is_translated() -> None:
    from storage.roles import KIND_ROLES, role_name

    refusals = _check_effect_refusals()
    judged = _judged_reasons()
    draws = _draw_problems()
    assert "the secret does not match the panel's commit" in draws and len(draws) > 12
    assert "sign would not be counted: you signed this petition already" in refusals
    assert "a newer ballot by the same voter counts" in judged and "superseded" in judged
    assert len(refusals) > 15 and len(judged) > 30
    # authorize()'s reasons, and check_effect's rewording of them ("you are ... now").
    authorize = {f"author not {role_name(roles)} at ts" for roles in KIND_ROLES.values()}
    reworded = {
        "sign would not be counted: " + why.replace("author", "you are").replace(" at ts", " now")
        for why in authorize
    }
    untranslated = [
        text
        for text in [*refusals, *judged, *draws, *authorize, *reworded]
        if not any(part in text for part in NOT_FOR_THE_WEB) and 'lang="en"' in explain(text, "fr")
    ]
    assert untranslated == []
