"""UI languages: gettext catalogs (web/locale/<lang>/LC_MESSAGES/messages.po, made with
Babel), negotiated per request from ``?lang=`` (which sets a cookie), the cookie, then
Accept-Language.

The catalogs are read from their ``.po`` files when the node starts (compiled in
memory), so there is no build step and no binary file in the repository. Adding a
language: ``scripts/i18n init xx``, translate ``web/locale/xx/LC_MESSAGES/messages.po``,
add ``xx`` to :data:`LANGUAGES`.
"""

from __future__ import annotations

import functools
import io
import re
from pathlib import Path

from aiohttp import web
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

__all__ = [
    "COOKIE",
    "DEFAULT",
    "LANGUAGES",
    "LOCALE_DIR",
    "accepted_language",
    "negotiate",
    "parse_accept_language",
    "translations",
]

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
#: The UI languages, by their own names (the switcher shows these).
LANGUAGES = {
    "en": "English",
    "fr": "Français",
    "de": "Deutsch",
    "it": "Italiano",
    "pl": "Polski",
    "lv": "Latviešu",
}
DEFAULT = "en"
COOKIE = "fora_lang"

_TAG = re.compile(r"^[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*$")


@functools.cache
def translations(lang: str) -> Translations:
    """The catalog of ``lang``, compiled from its .po file."""
    po = LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po"
    with po.open("rb") as f:
        catalog = read_po(f, locale=lang)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return Translations(buf)


def parse_accept_language(header: str) -> list[str]:
    """Language tags of an Accept-Language header, preferred first (q=0 left out)."""
    weighted: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")[:32]):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip()
        if not tag or (tag != "*" and not _TAG.match(tag)):
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0:
            weighted.append((-q, position, tag.lower()))
    return [tag for _, _, tag in sorted(weighted)]


def negotiate(request: web.Request) -> tuple[str, bool]:
    """The UI language for ``request`` and whether ``?lang=`` asked to remember it."""
    asked = request.query.get("lang", "")
    if asked in LANGUAGES:
        return asked, True
    if "Cookie" in request.headers:  # parsing no Cookie header is still work
        cookie = request.cookies.get(COOKIE, "")
        if cookie in LANGUAGES:
            return cookie, False
    return accepted_language(request.headers.get("Accept-Language", "")), False


@functools.lru_cache(maxsize=512)
def accepted_language(header: str) -> str:
    """The UI language an Accept-Language header picks (the default when none fits).

    Remembered per header (bounded): browsers send a handful of distinct headers, and
    every anonymous page read negotiates."""
    for tag in parse_accept_language(header):
        base = tag.split("-")[0]
        if base in LANGUAGES:
            return base
    return DEFAULT
