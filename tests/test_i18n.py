"""Every UI message, in the templates and in web/*.py, is translated in every catalog,
with the same placeholders; the language negotiation reads Accept-Language right; a
page renders in Latvian."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from babel import Locale
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from node.app import create_app
from node.folder import load_config
from node.publish import init_node
from web.i18n import LANGUAGES, LOCALE_DIR, parse_accept_language, translations

Client = TestClient[Any, Any]

WEB = Path(__file__).resolve().parent.parent / "web"
METHODS = [("**/templates/**.html", "jinja2"), ("**.py", "python")]
OPTIONS = {"**/templates/**.html": {"extensions": "jinja2.ext.i18n"}}
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2)}


def extracted() -> set[str | tuple[str, ...]]:
    found: set[str | tuple[str, ...]] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(WEB), METHODS, keywords=KEYWORDS, options_map=OPTIONS
    ):
        found.add(message if isinstance(message, str) else tuple(message))
    return found


def test_the_ui_has_messages_to_translate() -> None:
    messages = extracted()
    assert len(messages) > 100
    assert "Skip to content" in messages and "Proposals closing soon" in messages
    assert ("%(num)d comment", "%(num)d comments") in messages


@pytest.mark.parametrize("lang", sorted(LANGUAGES))
def test_every_message_is_translated(lang: str) -> None:
    with (LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po").open("rb") as f:
        catalog = read_po(f, locale=lang)
    missing = []
    for message in extracted():
        key = message[0] if isinstance(message, tuple) else message
        entry = catalog.get(key)
        if entry is None or entry.fuzzy:
            missing.append(key)
            continue
        strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        forms = catalog.num_plurals if isinstance(message, tuple) else 1
        plural_matches = isinstance(message, tuple) == isinstance(entry.id, tuple)
        if not plural_matches or not all(strings) or len(strings) != forms:
            missing.append(key)
    assert not missing, f"{lang}: untranslated: {missing}"
    # Same placeholders as the msgid (babel's python-format checker).
    problems = [(m.id, [str(e) for e in errors]) for m, errors in catalog.check() if errors]
    assert not problems, problems


def test_translations_are_real() -> None:
    assert translations("fr").gettext("Proposals closing soon") == "Propositions bientôt clôturées"
    assert translations("de").gettext("Skip to content") == "Zum Inhalt springen"
    assert translations("it").gettext("Search") == "Cerca"
    # Polish has three plural forms: 1 komentarz, 2 komentarze, 5 komentarzy.
    pl = translations("pl")
    forms = [
        pl.ngettext("%(num)d comment", "%(num)d comments", n) % {"num": n} for n in (1, 2, 5, 22)
    ]
    assert forms == ["1 komentarz", "2 komentarze", "5 komentarzy", "22 komentarze"]
    # Latvian: 1 and 21 take the singular, 11 and the rest the plural.
    lv = translations("lv")
    assert lv.gettext("Skip to content") == "Pāriet uz saturu"
    forms = [
        lv.ngettext("%(num)d comment", "%(num)d comments", n) % {"num": n}
        for n in (1, 2, 11, 21, 0)
    ]
    assert forms == ["1 komentārs", "2 komentāri", "11 komentāri", "21 komentārs", "0 komentāri"]


def test_latvian_plural_rule_agrees_with_cldr() -> None:
    """The catalog's gettext rule (Babel's for lv) picks the singular form exactly where
    CLDR's lv rule says "one", and its third form only for zero."""
    lv = translations("lv")
    cldr = Locale("lv").plural_form
    for n in range(0, 1200):
        assert (lv.plural(n) == 0) == (cldr(n) == "one"), n
        assert (lv.plural(n) == 2) == (n == 0), n


def test_accept_language_parsing() -> None:
    assert parse_accept_language("fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5") == [
        "fr-ch",
        "fr",
        "en",
        "de",
        "*",
    ]
    assert parse_accept_language("de;q=0, it;q=0.3, pl") == ["pl", "it"]
    assert parse_accept_language("en;q=bogus, <script>, it") == ["it"]
    assert parse_accept_language("") == []


async def test_a_page_renders_in_latvian(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    init_node(tmp_path / "n", name="Liepāja", country="LV", languages=["lv"])
    client = await aiohttp_client(create_app(load_config(tmp_path / "n")))
    resp = await client.get("/?lang=lv")
    assert resp.status == 200 and "fora_lang=lv" in resp.headers["Set-Cookie"]
    html = await resp.text()
    assert '<html lang="lv">' in html
    assert '<a class="skip" href="#main">Pāriet uz saturu</a>' in html
    assert '<h2 id="topics-h">Tēmas</h2>' in html and "Šeit vēl nav tēmu." in html
    assert 'hreflang="lv" aria-current="true">Latviešu</a>' in html
    # A Latvian browser gets Latvian without asking; a region subtag still matches.
    client.session.cookie_jar.clear()
    html = await (
        await client.get("/federation", headers={"Accept-Language": "lv-LV, en;q=0.8"})
    ).text()
    assert '<html lang="lv">' in html and "<h1>Federācija</h1>" in html
