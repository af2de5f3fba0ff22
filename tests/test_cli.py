"""The ``fora`` command line, in process and as a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from node.cli import main
from protocol import signing
from protocol.messages import decode_message
from storage.database import open_database
from storage.messages import count_messages, get_raw, ingest

from .conftest import NOW, Factory, seeded_key

FORA = [sys.executable, "-m", "node"]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    directory = tmp_path / "bomarzo"
    code, out, _ = run(
        capsys,
        "init",
        str(directory),
        "--name",
        "Bomarzo",
        "--country",
        "IT",
        "--region",
        "Lazio",
        "--lang",
        "it",
    )
    assert code == 0 and "community id" in out
    return directory


def test_init_creates_folder_with_private_key(
    node: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = node / "community.key"
    assert (key.stat().st_mode & 0o777) == 0o600
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    code, out, _ = run(capsys, "id", str(node))
    community = out.strip()
    assert code == 0 and len(community) == 64
    assert (
        community == signing.public_key_bytes(signing.private_key_from_pem(key.read_bytes())).hex()
    )
    code, out, _ = run(capsys, "stats", str(node), "--json")
    data = json.loads(out)
    assert data["communities"][community]["kinds"] == {"community": 1}


def test_init_refuses_twice_and_bad_profile(
    node: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "init", str(node), "--name", "Again", "--country", "IT")
    assert code == 1 and err.startswith("Error:") and err.count("\n") == 1
    bad = tmp_path / "bad"
    code, _, err = run(capsys, "init", str(bad), "--name", "X", "--country", "Italy")
    assert code == 1 and "country" in err and not bad.exists()


def test_post_and_show_in_stats(
    node: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = {
        "title": "Scuole",
        "text": "Più sicure",
        "lang": "it",
        "tags": ["scuola"],
        "scope": "local",
    }
    code, out, err = run(capsys, "post", str(node), "topic", "--body", json.dumps(body))
    assert code == 0, err
    topic_id = out.strip()
    keyfile = tmp_path / "alice.key"
    code, out, _ = run(capsys, "key", "new", str(keyfile))
    alice = out.strip()
    assert code == 0 and len(alice) == 64 and (keyfile.stat().st_mode & 0o777) == 0o600
    # A grant names the member as hex: the schema says bin(32), so it is converted.
    code, out, err = run(
        capsys,
        "post",
        str(node),
        "grant",
        "--body",
        json.dumps({"member": alice, "role": "member"}),
    )
    assert code == 0, err
    code, out, err = run(
        capsys,
        "post",
        str(node),
        "comment",
        "--key",
        str(keyfile),
        "--ref",
        topic_id,
        "--body",
        json.dumps({"text": "Sì", "lang": "it"}),
    )
    assert code == 0, err
    data = json.loads(run(capsys, "stats", str(node), "--json")[1])
    (entry,) = data["communities"].values()
    assert entry["kinds"] == {"comment": 1, "community": 1, "grant": 1, "topic": 1}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["topic", "--body", "{not json"], "not JSON"),
        (["topic", "--body", "[1]"], "JSON object"),
        (["topic", "--body", '{"title": "x"}'], "bad_body"),
        (["vote", "--body", '{"choice": "yes"}'], "refs"),
        (["grant", "--body", '{"member": "zz", "role": "member"}'], "hex"),
        (["topic", "--body", "{}", "--key", "/nonexistent.key"], "cannot read key"),
    ],
)
def test_post_errors_are_one_line(
    node: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    code, _, err = run(capsys, "post", str(node), *args)
    assert code == 1 and err.startswith("Error:") and needle in err and err.count("\n") == 1


def test_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["post", str(tmp_path), "topic", "--body", "{}", "--ref", "abc"])
    assert exc.value.code == 2 and "Error:" in capsys.readouterr().err
    code, _, err = run(capsys, "stats", str(tmp_path / "missing"))
    assert code == 1 and "not a Fora node folder" in err


def test_ingest_export_round_trip(
    node: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = Factory(seeded_key(5))
    raws = [f.topic(f"T{i}").raw for i in range(5)]
    stream = tmp_path / "in.bin"
    stream.write_bytes(
        b"".join([raws[0], raws[1], raws[1], f.topic("x").raw[:-3] + b"\x00\x00\x00", *raws[2:]])
    )
    code, out, _ = run(capsys, "ingest", str(node), str(stream), "--json")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [x["result"] for x in lines[:-1]] == [
        "ok",
        "ok",
        "duplicate",
        lines[3]["result"],
        "ok",
        "ok",
        "ok",
    ]
    assert lines[3]["result"] not in ("ok", "duplicate") and lines[3]["id"] is None
    first_id = decode_message(raws[0], now_ms=NOW).hex_id
    assert lines[0] == {"index": 0, "result": "ok", "id": first_id}
    assert lines[-1]["total"] == 7 and lines[-1]["summary"]["ok"] == 5
    out_file = tmp_path / "out.bin"
    assert (
        run(capsys, "export", str(node), "--community", f.community.hex(), "-o", str(out_file))[0]
        == 0
    )
    assert out_file.read_bytes() == b"".join(raws)


def test_ingest_stops_cleanly_on_garbage(
    node: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = Factory(seeded_key(5))
    stream = tmp_path / "in.bin"
    stream.write_bytes(f.topic().raw + b"\xc1\xc1")
    code, _, err = run(capsys, "ingest", str(node), str(stream))
    assert code == 1 and err.strip().splitlines()[-1].startswith("Error:")
    db = open_database(node / "fora.db")
    assert count_messages(db) == 2  # the profile and the one good topic
    db.close()


def test_ingest_from_standard_input(node: Path) -> None:
    """`fora ingest DIR -`: batches from a pipe, a bad byte after more than one batch
    (what came before it is stored), and Ctrl-C while it waits for more input."""
    f = Factory(seeded_key(7))
    raws = [f.topic(f"S{i}").raw for i in range(2_500)]
    proc = subprocess.run(
        [*FORA, "ingest", str(node), "-"],
        input=b"".join(raws) + b"\xc1",
        capture_output=True,
        check=False,
    )
    err = proc.stderr.decode()
    assert proc.returncode == 1 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("Error: stream is not msgpack"), err
    assert "the 2500 messages before it were processed" in err
    db = open_database(node / "fora.db")
    try:
        assert count_messages(db) == 1 + 2_500  # the profile and every topic
    finally:
        db.close()

    more = [f.topic(f"W{i}").raw for i in range(1_000)]
    waiting = subprocess.Popen(
        [*FORA, "ingest", str(node), "-", "--json"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert waiting.stdin is not None and waiting.stdout is not None
    waiting.stdin.write(b"".join(more))  # one whole batch, then nothing: it waits
    waiting.stdin.flush()
    for _ in range(1_000):  # the batch is stored: the node is up, reading
        assert json.loads(waiting.stdout.readline())["result"] == "ok"
    waiting.send_signal(signal.SIGINT)
    try:
        code = waiting.wait(timeout=30)
        stderr = waiting.stderr.read().decode() if waiting.stderr else ""
    finally:
        waiting.kill()
        for pipe in (waiting.stdin, waiting.stdout, waiting.stderr):
            if pipe is not None:
                pipe.close()
    assert code == 130 and "Traceback" not in stderr, stderr


def test_a_database_error_is_one_error_line(
    node: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from node import cli as fora_cli

    def fail(db: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(fora_cli, "stats", fail)
    code, out, err = run(capsys, "stats", str(node))
    assert (code, out, err) == (1, "", "Error: database: disk I/O error\n")


def test_a_missing_database_is_never_created_anew(
    node: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every command that opens the node's store checks the database first (a store
    # opened on a missing file would make an empty one and carry on).
    stream = tmp_path / "in.bin"
    stream.write_bytes(Factory(seeded_key(5)).topic().raw)
    (node / "fora.db").unlink()
    for args in (
        ("ingest", str(node), str(stream)),
        ("stats", str(node)),
        ("peer", "add", str(node), "http://127.0.0.1:9"),
    ):
        code, _, err = run(capsys, *args)
        assert code == 1 and err.startswith("Error:") and "fora.db is missing" in err, args
        assert not (node / "fora.db").exists(), args


def test_verify(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "verify", str(node))
    assert code == 0 and "0 problems" in out and "integrity_check: ok" in out
    db = open_database(node / "fora.db")
    db.execute("UPDATE messages SET raw = x'93c0c0c0'")
    db.close()
    code, out, err = run(capsys, "verify", str(node))
    assert code == 1 and "malformed" in out and err.startswith("Error:")


def test_help_and_version_as_a_process() -> None:
    out = subprocess.run([*FORA, "--help"], capture_output=True, text=True, check=True).stdout
    for command in (
        "init",
        "id",
        "key",
        "post",
        "ingest",
        "export",
        "stats",
        "verify",
        "serve",
        "demo",
    ):
        assert command in out
    version = subprocess.run([*FORA, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("fora ")
    for command in ("init", "post", "ingest", "serve"):
        sub = subprocess.run([*FORA, command, "--help"], capture_output=True, text=True, check=True)
        assert "Example: fora" in sub.stdout


def test_library_errors_never_print_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "n"
    bad.mkdir()
    (bad / "config.toml").write_text("name = [unclosed")
    proc = subprocess.run([*FORA, "stats", str(bad)], capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("Error:")


def test_kill_during_ingest_loses_nothing_acknowledged(node: Path, tmp_path: Path) -> None:
    """kill -9 mid-ingest: every message reported before the kill is there afterwards."""
    f = Factory(seeded_key(6))
    raws = [f.comment(bytes(32), f"comment {i}").raw for i in range(12_000)]
    stream = tmp_path / "big.bin"
    stream.write_bytes(b"".join(raws))
    proc = subprocess.Popen(
        [*FORA, "ingest", str(node), str(stream), "--json"], stdout=subprocess.PIPE, text=True
    )
    acked: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    while len(acked) < 2_500 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        record = json.loads(line)
        if record.get("result") == "ok":
            acked.append(record["id"])
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert len(acked) >= 2_500, "ingest ended before it could be killed"
    db = open_database(node / "fora.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        held = get_raw(db, [bytes.fromhex(x) for x in acked])
        assert all(raw is not None for raw in held)
        assert count_messages(db) < len(raws) + 1  # it really was cut short
    finally:
        db.close()


def test_backup_while_writing(
    node: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`fora backup` takes a consistent copy while another process keeps writing."""
    import threading

    f = Factory(seeded_key(8))
    raws = [f.topic(f"T{i}").raw for i in range(600)]
    done = threading.Event()

    def writer() -> None:
        db = open_database(node / "fora.db")
        for i in range(0, 600, 20):
            ingest(db, raws[i : i + 20], now_ms=NOW)
        db.close()
        done.set()

    # A panel secret waiting for its draw goes with the backup; a half-written one does not.
    (node / "secrets").mkdir(mode=0o700)
    (node / "secrets" / "ab").write_bytes(b"s" * 32)
    (node / "secrets" / "pending-cd").write_bytes(b"p" * 32)
    thread = threading.Thread(target=writer)
    thread.start()
    dest = tmp_path / "backup"
    code, out, err = run(capsys, "backup", str(node), str(dest))
    thread.join()
    assert code == 0, err
    assert "backed up" in out
    assert (dest / "community.key").stat().st_mode & 0o777 == 0o600
    assert (dest / "secrets" / "ab").read_bytes() == b"s" * 32
    assert (dest / "secrets" / "ab").stat().st_mode & 0o777 == 0o600
    assert not (dest / "secrets" / "pending-cd").exists()
    assert run(capsys, "verify", str(dest))[0] == 0
    assert run(capsys, "id", str(dest))[1] == run(capsys, "id", str(node))[1]
    # The copy is a snapshot: some prefix of what the writer wrote, never a torn state.
    copy = open_database(dest / "fora.db")
    held = count_messages(copy)
    copy.close()
    assert 1 <= held <= 601
    code, _, err = run(capsys, "backup", str(node), str(dest))
    assert code == 1 and "exists already" in err


def test_the_fora_command_runs_with_the_nodes_collector_settings() -> None:
    """``python -m node`` (what the ``fora`` console script runs too) sets the garbage
    collector as node/runtime.py says before the command runs; :func:`main`, which the
    tests call in their own process, leaves the process's settings alone."""
    import gc

    before = gc.get_threshold()
    with pytest.raises(SystemExit):
        main(["id", "--help"])
    probe = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print(gc.get_threshold(), gc.get_freeze_count() > 0))\n"
        "sys.argv = ['fora', 'id', '--help']\n"
        "import runpy; runpy.run_module('node', run_name='__main__')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    from node.runtime import GC_THRESHOLDS

    assert out.stdout.strip().splitlines()[-1] == f"{GC_THRESHOLDS} True", out
    assert gc.get_threshold() == before
