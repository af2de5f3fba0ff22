"""scripts/i18n runs with the Babel we pin: its extraction step finds every UI message
tests/test_i18n.py finds, and its update step (on a copy of the catalogs, never on
web/locale itself) keeps every translation and rewrites nothing on a second run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from babel.messages.pofile import read_po

from tests.test_i18n import extracted
from web.i18n import LANGUAGES, LOCALE_DIR

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "i18n"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYBABEL": str(Path(sys.executable).parent / "pybabel")}
    return subprocess.run(
        [str(SCRIPT), *args],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def catalog_files(root: Path) -> dict[str, bytes]:
    return {lang: (root / lang / "LC_MESSAGES" / "messages.po").read_bytes() for lang in LANGUAGES}


def test_extraction_writes_every_ui_message(tmp_path: Path) -> None:
    before = catalog_files(LOCALE_DIR)
    pot = tmp_path / "messages.pot"
    done = run("extract", str(pot))
    assert done.returncode == 0, done.stderr
    with pot.open("rb") as f:
        template = read_po(f)
    found = {m.id if isinstance(m.id, str) else tuple(m.id) for m in template if m.id}
    assert found == extracted()
    assert all(not m.locations for m in template)  # --no-location
    ids = [m.id if isinstance(m.id, str) else m.id[0] for m in template if m.id]
    assert ids == sorted(ids)  # --sort-output
    assert catalog_files(LOCALE_DIR) == before


def test_update_keeps_translations_and_is_stable(tmp_path: Path) -> None:
    before = catalog_files(LOCALE_DIR)
    locale = tmp_path / "locale"
    shutil.copytree(LOCALE_DIR, locale)
    done = run("update", str(locale))
    assert done.returncode == 0, done.stderr
    first = catalog_files(locale)
    for lang in LANGUAGES:
        with (LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po").open("rb") as f:
            old = read_po(f, locale=lang)
        with (locale / lang / "LC_MESSAGES" / "messages.po").open("rb") as f:
            new = read_po(f, locale=lang)
        ids = {m.id if isinstance(m.id, str) else tuple(m.id) for m in new if m.id}
        assert ids >= extracted()
        assert new.creation_date == old.creation_date  # --ignore-pot-creation-date
        for message in old:
            if message.id and message.id in new:
                assert new[message.id].string == message.string, (lang, message.id)
                assert not new[message.id].fuzzy
        assert b"\n#: " not in first[lang]  # no locations come in from the template
    # A second run over catalogs already up to date rewrites nothing.
    again = run("update", str(locale))
    assert again.returncode == 0, again.stderr
    assert catalog_files(locale) == first
    assert catalog_files(LOCALE_DIR) == before


def test_bad_usage_is_one_error_line() -> None:
    for args in (("frobnicate",), ("extract",), ("init",)):
        done = run(*args)
        assert done.returncode == 2
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("Error: ")
