"""The docs say what the code does: every command, every route, every kind's schema."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from node.app import setup_routes
from node.cli import build_parser
from protocol.kinds import schema_markdown

ROOT = Path(__file__).resolve().parent.parent
DOCS = "\n".join(
    p.read_text(encoding="utf-8")
    for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
)


def commands(parser: argparse.ArgumentParser, prefix: str = "fora") -> list[str]:
    found = []
    for action in parser._actions:  # argparse has no public walk of subcommands
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append(f"{prefix} {name}")
                found.extend(commands(sub, f"{prefix} {name}"))
    return found


def test_every_command_is_documented() -> None:
    missing = [c for c in commands(build_parser()) if c not in DOCS]
    assert not missing, f"commands missing from README/docs: {missing}"


def test_every_route_is_documented() -> None:
    from aiohttp import web

    from web.app import setup_web

    app = web.Application()
    setup_routes(app)
    setup_web(app)
    paths = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    missing = [p for p in paths if p != "/" and p not in DOCS]
    assert not missing, f"routes missing from docs: {missing}"


def test_kind_schemas_in_the_protocol_doc_match_the_code() -> None:
    text = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    section = re.search(r"<!-- kinds:start -->\n(.*)\n<!-- kinds:end -->", text, re.S)
    assert section is not None
    assert section.group(1).strip() == schema_markdown().strip()


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "scripts/demo" in readme and "scripts/test" in readme
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
