"""`fora demo`: three municipalities, peered and synced; Ctrl-C stops them cleanly."""

from __future__ import annotations

import html
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .test_sync import free_port


def test_demo_starts_three_synced_nodes_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    base = free_port()  # the demo uses this port and the next two
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "node",
            "demo",
            "--dir",
            str(tmp_path / "demo"),
            "--port",
            str(base),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("Demo running" in x for x in lines):
            lines.append(proc.stdout.readline())
        urls = [line.split()[1] for line in lines if "http://" in line]
        assert len(urls) == 3, lines
        names = set()
        for url in urls:
            with urllib.request.urlopen(f"{url}sync/v1/info", timeout=5) as resp:
                info = json.load(resp)
            names.add(info["name"])
            # Each node holds all three communities, with the same messages.
            assert len(info["communities"]) == 3
            assert len({c["messages"] for c in info["communities"]}) == 1
        assert names == {"Bomarzo", "Liepāja", "Bruxelles"}
        # The web view renders the demo's content: every page linked from a home page
        # and from the pages it links to answers (no 5xx), in the node's language.
        seen: set[str] = set()
        queue = [urls[0]]
        while queue and len(seen) < 80:
            page = queue.pop(0)
            if page in seen:
                continue
            seen.add(page)
            with urllib.request.urlopen(page, timeout=5) as resp:
                assert resp.status == 200, page
                body = resp.read().decode()
            if depth(page, urls[0]) < 2:
                for href in re.findall(r'href="(/[^"#]*)"', body):
                    if not href.startswith(("/static/", "/sync/")):
                        queue.append(urls[0].rstrip("/") + html.unescape(href))
        assert any("/t/" in u for u in seen) and any("/m/" in u for u in seen)
        with urllib.request.urlopen(f"{urls[0]}federation.json", timeout=5) as resp:
            federation = json.load(resp)
        assert len(federation["followed"]) == 3 and len(federation["peers"]) == 2
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err


def depth(url: str, root: str) -> int:
    """How many links from the home page: 0 for it, 1 for what it links to (roughly:
    topics and communities), 2 for the rest."""
    path = url[len(root.rstrip("/")) :]
    if path in ("/", ""):
        return 0
    return 1 if path.startswith(("/t/", "/c/", "/federation", "/moderation")) else 2
