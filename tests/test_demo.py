"""`fora demo`: three municipalities, peered and synced; Ctrl-C stops them cleanly."""

from __future__ import annotations

import json
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
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err
