"""The ``fora`` command line.

Every command takes the node folder (DIR) first. Library errors become one
``Error: …`` line on stderr and exit status 1; usage errors exit with status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import os
import sqlite3
import sys
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

from protocol import kinds, signing
from protocol.errors import LocalProtocolError, Malformed, ProtocolError, Result
from protocol.messages import StreamDecoder
from storage.checking import default_workers
from storage.database import StorageError, open_database
from storage.messages import IngestResult, iter_raw, stats, verify_store
from storage.store import Store

from .clock import now_ms
from .folder import NodeConfig, NodeError, default_dir, load_config, read_key, write_key
from .publish import add_account, check_effect, init_node, publish
from .sync_client import SyncError
from .syncer import Ingestor

__all__ = ["main", "run"]

INGEST_BATCH = 1_000
READ_CHUNK = 1 << 16


def _version() -> str:
    try:
        return version("fora-node")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0+unknown"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"Error: {message}\n")


def _hex_id(text: str) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not hex: {text!r}") from None
    if len(value) != 32:
        raise argparse.ArgumentTypeError(f"an id is 64 hex characters, got {len(text)}")
    return value


# --------------------------------------------------------------------------- helpers


def _node_config(directory: str | Path) -> NodeConfig:
    """The config of the node folder ``directory``, whose database must exist (a store
    opened on a missing one would create an empty one)."""
    config = load_config(directory)
    if not config.db_path.exists():
        raise NodeError(f"{config.db_path} is missing")
    return config


def _open_node(directory: str | Path) -> tuple[NodeConfig, Any]:
    config = _node_config(directory)
    return config, open_database(config.db_path)


def _json_to_value(value: Any, spec: kinds.Spec | None, path: str) -> Any:
    """Turn JSON into a body value; hex strings become bytes where the schema says bin."""
    if spec is None:
        return value
    if isinstance(spec, kinds.Bin) and isinstance(value, str):
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise NodeError(f"{path}: expected hex for a bin field, got {value!r}") from None
    if isinstance(spec, kinds.ListOf) and isinstance(value, list):
        return [_json_to_value(v, spec.item, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(spec, kinds.MapOf) and isinstance(value, dict):
        specs = {f.name: f.spec for f in spec.fields}
        return {k: _json_to_value(v, specs.get(k), f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, float):
        raise NodeError(f"{path}: numbers must be integers (no floats in Fora messages)")
    return value


def body_from_json(kind: str, text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NodeError(f"--body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise NodeError("--body must be a JSON object")
    schema = kinds.SCHEMAS.get(kind)
    return dict(_json_to_value(data, schema.body if schema else None, kind))


def value_to_json(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [value_to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: value_to_json(v) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------- commands


def cmd_init(args: argparse.Namespace) -> int:
    _, key, profile = init_node(
        Path(args.dir),
        name=args.name,
        country=args.country,
        region=args.region,
        languages=args.lang or ["en"],
        about=args.about,
        port=args.port,
    )
    print(f"Created node {args.name!r} in {args.dir}")
    print(f"community id {signing.public_key_bytes(key).hex()}")
    print(f"profile      {profile.hex_id}")
    return 0


def cmd_id(args: argparse.Namespace) -> int:
    config = load_config(args.dir)
    print(signing.public_key_bytes(read_key(config.key_path)).hex())
    return 0


def cmd_key_new(args: argparse.Namespace) -> int:
    key = signing.generate_private_key()
    write_key(Path(args.file), key)
    print(signing.public_key_bytes(key).hex())
    return 0


_FLAG_FIELDS = (
    "title",
    "text",
    "problem",
    "solution",
    "lang",
    "scope",
    "choice",
    "reason",
    "intro",
)
#: Flags that name refs[0], by the kind of what they point at.
_REF_FLAGS = ("topic", "target", "proposal", "petition", "survey", "panel")


def parse_when(text: str, *, end_of_day: bool = True) -> int:
    """A date or an ISO 8601 time, as ms since the epoch (the rule of
    :mod:`protocol.dates`): a bare date ends with its day (23:59:59.999 UTC) for
    ``--closes`` and ``--until``, and starts with it for ``--opens``."""
    from protocol.dates import BadTime, parse_time

    try:
        return parse_time(text, end_of_day=end_of_day)
    except BadTime as exc:
        raise NodeError(str(exc)) from None


def _fields_from_flags(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name in _FLAG_FIELDS:
        value = getattr(args, name, None)
        if value is not None:
            fields[name] = value
    if args.tag:
        fields["tags"] = args.tag
    if args.closes is not None:
        fields["closes"] = parse_when(args.closes)
    if args.opens is not None:
        fields["opens"] = parse_when(args.opens, end_of_day=False)
    if args.goal is not None:
        fields["goal"] = args.goal
    if args.question:
        fields["questions"] = [parse_question(q) for q in args.question]
    if args.edit_of is not None:
        fields["edit_of"] = args.edit_of
    schema = kinds.SCHEMAS.get(args.kind)
    if schema is not None:
        names = {f.name for f in schema.body.fields}
        if "lang" in names and "lang" not in fields:
            fields["lang"] = "en"
        if args.kind == "topic":
            fields.setdefault("tags", [])
            fields.setdefault("scope", "local")
            fields.setdefault("text", "")
        if args.kind in ("revoke",):
            fields.setdefault("reason", "")
        if args.kind == "survey":
            fields.setdefault("intro", "")
            fields.setdefault("opens", now_ms())
    return fields


def parse_question(text: str) -> dict[str, Any]:
    """``--question``: 'text|scale|low,mid,high', 'text|choice|a,b' or 'text|text'."""
    usage = (
        f"--question {text!r}: use 'text|scale|low,mid,high', 'text|choice|a,b,c' or 'text|text'"
    )
    if text.endswith("|text") and len(text) > len("|text"):
        return {"text": text[: -len("|text")], "type": "text", "options": []}
    parts = text.rsplit("|", 2)
    if len(parts) != 3 or parts[1] not in ("scale", "choice") or not parts[0]:
        raise NodeError(usage)
    options = [o.strip() for o in parts[2].split(",")]
    if any(not o for o in options):
        raise NodeError(f"{usage} (an option is empty)")
    return {"text": parts[0], "type": parts[1], "options": options}


def parse_answers(questions: list[dict[str, Any]], values: list[str]) -> list[Any]:
    """``--answer`` values, one per question: an option's text (or its number, 1 for
    the first) for scale and choice questions, the text for text questions, '-' to skip."""
    if len(values) != len(questions):
        raise NodeError(
            f"answer would not be counted: {len(values)} --answer for {len(questions)} questions"
        )
    out: list[Any] = []
    for i, (q, value) in enumerate(zip(questions, values, strict=True), start=1):
        if value in ("", "-"):
            out.append(None)
        elif q.get("type") == "text":
            out.append(value)
        else:
            options = [str(o) for o in q.get("options", [])]
            if value in options:
                out.append(options.index(value))
            elif value.isdigit() and 1 <= int(value) <= len(options):
                out.append(int(value) - 1)
            else:
                raise NodeError(
                    f"answer would not be counted: question {i}: {value!r} is not one of"
                    f" {', '.join(options)} (or 1..{len(options)})"
                )
    return out


def _sign_and_store(
    args: argparse.Namespace, kind: str, fields: dict[str, Any], refs: list[bytes]
) -> Any:
    config, db = _open_node(args.dir)
    try:
        community_key = read_key(config.key_path)
        key = read_key(args.key) if args.key else community_key
        community = signing.public_key_bytes(community_key)
        now = now_ms()
        if not getattr(args, "force", False):
            check_effect(db, signing.public_key_bytes(key), community, kind, fields, refs, now)
        try:
            return publish(db, key, community, kind, fields, refs, ts=now)
        except LocalProtocolError as exc:
            raise NodeError(str(exc)) from exc
    finally:
        db.close()


def cmd_post(args: argparse.Namespace) -> int:
    if not args.body and args.kind == "panel":
        return _post_panel(args)
    if not args.body and args.kind == "draw":
        return _post_draw(args)
    fields = body_from_json(args.kind, args.body) if args.body else _fields_from_flags(args)
    refs = list(args.ref)
    for flag in _REF_FLAGS:
        value = getattr(args, flag)
        if value is not None:
            refs.insert(0, value)
    if args.kind == "answer" and not args.body:
        fields["answers"] = parse_answers(_survey_questions(args, refs), args.answer or [])
    message = _sign_and_store(args, args.kind, fields, refs)
    print(message.hex_id)
    return 0


def _survey_questions(args: argparse.Namespace, refs: list[bytes]) -> list[dict[str, Any]]:
    if not refs:
        raise NodeError("answer: name the survey with --survey ID")
    _, db = _open_node(args.dir)
    try:
        row = db.execute("SELECT kind, fields FROM things WHERE id = ?", (refs[0],)).fetchone()
    finally:
        db.close()
    if row is None or row[0] != "survey" or row[1] is None:
        raise NodeError(f"answer: no survey {refs[0].hex()} is shown here")
    questions = json.loads(row[1]).get("questions", [])
    return list(questions) if isinstance(questions, list) else []


def _signing_keys(args: argparse.Namespace, config: NodeConfig) -> tuple[Any, bytes]:
    community_key = read_key(config.key_path)
    key = read_key(args.key) if args.key else community_key
    return key, signing.public_key_bytes(community_key)


def _write_secret(path: Path, secret: bytes) -> None:
    path.parent.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
        f.flush()
        os.fsync(f.fileno())


def _post_panel(args: argparse.Namespace) -> int:
    """A panel: the roll from this node's view now, a fresh secret kept (0600) in
    DIR/secrets/<panel id> until the draw."""
    import secrets as secrets_module

    from protocol import sortition
    from storage.panels import eligible_keys

    if args.name is None or args.seats is None:
        raise NodeError("panel needs --name and --seats")
    config, db = _open_node(args.dir)
    try:
        key, community = _signing_keys(args, config)
        now = now_ms()
        roll = eligible_keys(db.conn, community, now)
        if not roll:
            raise NodeError("panel would have no effect: no key holds a role here now")
        if args.seats >= len(roll) and not args.force:
            raise NodeError(
                f"panel would select everyone: {args.seats} seats for {len(roll)} eligible"
                " keys (--force to publish it anyway)"
            )
        secret = secrets_module.token_bytes(32)
        fields = {
            "name": args.name,
            "seats": args.seats,
            "roll": sortition.roll_hash(roll),
            "commit": sortition.commit_of(secret),
        }
        refs = [args.topic] if args.topic is not None else []
        if not args.force:
            check_effect(db, signing.public_key_bytes(key), community, "panel", fields, refs, now)
        folder = config.dir / "secrets"
        pending = folder / f"pending-{fields['commit'].hex()}"
        _write_secret(pending, secret)
        try:
            message = publish(db, key, community, "panel", fields, refs, ts=now)
        except (NodeError, LocalProtocolError) as exc:
            pending.unlink()
            raise NodeError(str(exc)) from exc
        os.replace(pending, folder / message.hex_id)
    finally:
        db.close()
    print(message.hex_id)
    print(
        f"{len(roll)} eligible keys, {args.seats} seats; the secret is kept in"
        f" {folder / message.hex_id} until: fora post {args.dir} draw --panel {message.hex_id}",
        file=sys.stderr,
    )
    return 0


#: A draw refs its panel and up to this many entropy messages.
_MAX_ENTROPY = 15


def pick_entropy(db: Any, community: bytes, after: int, until: int) -> list[bytes]:
    """The newest authorized message of each followed peer community with
    ``after < ts <= until`` (the newest 15 communities' at most), ids ascending."""
    newest: list[tuple[int, bytes]] = []
    for (peer,) in db.execute("SELECT community FROM follows WHERE community != ?", (community,)):
        row = db.execute(
            "SELECT m.ts, m.id FROM messages m JOIN message_auth a ON a.id = m.id"
            " WHERE m.community = ? AND m.sec BETWEEN ? AND ? AND a.authorized = 1"
            " AND m.ts > ? AND m.ts <= ? ORDER BY m.sec DESC, m.ts DESC, m.id DESC LIMIT 1",
            (peer, after // 1000, until // 1000, after, until),
        ).fetchone()
        if row is not None:
            newest.append((row[0], row[1]))
    newest.sort(reverse=True)
    return sorted(message_id for _, message_id in newest[:_MAX_ENTROPY])


def _post_draw(args: argparse.Namespace) -> int:
    """The draw of a panel this node published: entropy picked from followed peers,
    the secret revealed, the selection computed (protocol.sortition)."""
    from protocol import sortition
    from storage import forum
    from storage.panels import eligible_keys

    if args.panel is None:
        raise NodeError("draw needs --panel ID")
    config, db = _open_node(args.dir)
    try:
        key, community = _signing_keys(args, config)
        page = forum.panel_page(db, args.panel)
        if page is None:
            raise NodeError(f"draw: the panel {args.panel.hex()} is not held here")
        p = page["panel"]
        if p["community"] != community.hex():
            raise NodeError("draw would have no effect: the panel is another community's")
        if p["status"] != "visible":
            raise NodeError(f"draw would have no effect: the panel is {p['status']}")
        if page["draw"] is not None:
            raise NodeError(
                f"draw would have no effect: draw {page['draw']['id']} of this panel counts"
                f" already ({page['draw']['status']})"
            )
        path = config.dir / "secrets" / args.panel.hex()
        try:
            secret = path.read_bytes()
        except FileNotFoundError:
            raise NodeError(
                f"no secret for this panel in {path.parent} (only the node folder that"
                " published the panel holds it)"
            ) from None
        if len(secret) != 32 or sortition.commit_of(secret).hex() != p["commit"]:
            raise NodeError(f"{path} does not hold the secret of the panel's commit")
        now = now_ms()
        entropy = pick_entropy(db, community, p["ts"], now)
        if not entropy:
            raise NodeError(
                "no message of a followed peer community published after the panel yet:"
                " sync with a peer (fora sync), then draw"
            )
        roll = eligible_keys(db.conn, community, p["ts"])
        if sortition.roll_hash(roll).hex() != p["roll"]:
            raise NodeError(
                f"the roll recounted here ({len(roll)} keys at the panel's ts) differs from"
                " the panel's committed roll: the draw would not verify"
            )
        selection = sortition.draw(roll, secret, entropy, int(p["seats"]))
        fields = {"secret": secret, "selected": list(selection.selected)}
        refs = [args.panel, *entropy]
        if not args.force:
            check_effect(db, signing.public_key_bytes(key), community, "draw", fields, refs, now)
        try:
            message = publish(db, key, community, "draw", fields, refs, ts=now)
        except LocalProtocolError as exc:
            raise NodeError(str(exc)) from exc
        path.unlink()
    finally:
        db.close()
    print(message.hex_id)
    print(
        f"selected {len(selection.selected)} of {len(roll)} with {len(entropy)} entropy"
        f" messages; seed {selection.seed.hex()}",
        file=sys.stderr,
    )
    return 0


def _member_key(text: str) -> bytes:
    if len(text) == 64:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    return signing.public_key_bytes(read_key(text))


def cmd_grant(args: argparse.Namespace) -> int:
    fields: dict[str, Any] = {"member": _member_key(args.member), "role": args.role}
    if args.until:
        fields["until"] = parse_when(args.until)
    message = _sign_and_store(args, "grant", fields, [])
    print(message.hex_id)
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    message = _sign_and_store(args, "revoke", {"reason": args.reason}, [args.grant])
    print(message.hex_id)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from storage import forum

    _, db = _open_node(args.dir)
    try:
        data = forum.show(db, args.id)
    finally:
        db.close()
    if data is None:
        raise NodeError(f"{args.id.hex()} is not held here")
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return 0
    print(f"{data['kind']} {data['id']} by {data['author']} at {_when(data['ts'])}")
    if "panel" in data:
        p = data["panel"]
        print(f"  panel: {p['name']!r}, {p['seats']} seats, draw {p['draw_status']}")
        print(f"  roll_check: {p['roll_check']} ({p['eligible']} eligible here at the panel's ts)")
    for key in (
        "status",
        "not_counted",
        "note",
        "tally_status",
        "counts",
        "ballot",
        "tally",
        "signature",
        "answer",
        "commit_check",
        "draw",
        "selected",
    ):
        if key in data:
            print(f"  {key}: {json.dumps(data[key], ensure_ascii=False)}")
    return 0


async def _ingest_stream(
    db_path: Path, stream: BinaryIO, name: str, on_result: Callable[[int, IngestResult], None]
) -> Counter[str]:
    """Ingest a stream of messages through the node's own path: a :class:`Store` (its
    writer thread, and its checkpoint thread that copies the log beside the writer)
    and an :class:`Ingestor` (checks in worker processes, the next batch checked while
    one is stored). A thread of its own reads the stream a batch or two ahead; it is a
    daemon, so a read that waits for input (a terminal, a pipe) never holds up an exit
    (Ctrl-C)."""
    loop = asyncio.get_running_loop()
    #: batches read, then None at the end (or the error that ended the reading)
    queue: asyncio.Queue[list[bytes] | NodeError | None] = asyncio.Queue(maxsize=2)
    broken: list[Malformed] = []

    def put(item: list[bytes] | NodeError | None) -> bool:
        try:
            asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()
        except (RuntimeError, concurrent.futures.CancelledError):
            return False  # the ingest has ended (an error, Ctrl-C): stop reading
        return True

    # Read from the file descriptor what has come, up to READ_CHUNK: stream.read would
    # wait for READ_CHUNK bytes (a batch that came whole through a pipe would wait for
    # the next one), and a daemon thread blocked in a buffered stream's read holds its
    # lock, which makes the interpreter abort when it ends (Ctrl-C while waiting).
    fd = stream.fileno()

    def read() -> None:
        decoder = StreamDecoder()
        batch: list[bytes] = []
        end: NodeError | None = None
        try:
            while chunk := os.read(fd, READ_CHUNK):
                for raw in decoder.feed(chunk):
                    batch.append(raw)
                    if len(batch) >= INGEST_BATCH:
                        if not put(batch):
                            return
                        batch = []
            decoder.close()
        except Malformed as exc:  # what came before it is ingested
            broken.append(exc)
        except OSError as exc:
            end = NodeError(f"cannot read {name}: {exc.strerror or exc}")
        if batch and not put(batch):
            return
        put(end)

    async def batches() -> AsyncIterator[list[bytes]]:
        while (item := await queue.get()) is not None:
            if isinstance(item, NodeError):
                raise item
            yield item

    counts: Counter[str] = Counter()
    index = 0
    store = await Store.open(db_path)
    ingestor = Ingestor(store, workers=default_workers())
    threading.Thread(target=read, name="fora-ingest-read", daemon=True).start()
    try:
        async with contextlib.aclosing(ingestor.ingest_all(batches())) as stored:
            async for results in stored:
                for result in results:
                    counts[result.result.value] += 1
                    on_result(index, result)
                    index += 1
                sys.stdout.flush()  # what is reported is on disk: let it be seen now
    finally:
        await asyncio.to_thread(ingestor.close)
        await store.close()
    if broken:
        on_result(index, IngestResult(Result.MALFORMED, None, str(broken[0])))
        counts[Result.MALFORMED.value] += 1
        raise NodeError(f"{broken[0]}; the {index} messages before it were processed")
    return counts


def cmd_ingest(args: argparse.Namespace) -> int:
    config = _node_config(args.dir)

    def on_result(index: int, result: IngestResult) -> None:
        if args.json:
            print(json.dumps(result.as_json(index)))
        elif not result.result.accepted:
            print(f"message {index}: {result.result.value}: {result.detail}", file=sys.stderr)

    if args.file == "-":
        counts = asyncio.run(
            _ingest_stream(config.db_path, sys.stdin.buffer, "standard input", on_result)
        )
    else:
        try:
            stream = open(args.file, "rb")  # noqa: SIM115
        except OSError as exc:
            raise NodeError(f"cannot read {args.file}: {exc.strerror}") from exc
        with stream:
            counts = asyncio.run(_ingest_stream(config.db_path, stream, args.file, on_result))
    total = sum(counts.values())
    if args.json:
        print(json.dumps({"summary": dict(sorted(counts.items())), "total": total}))
    else:
        parts = ", ".join(f"{code} {n}" for code, n in sorted(counts.items())) or "nothing"
        print(f"{total} messages: {parts}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    _, db = _open_node(args.dir)
    try:
        out = open(args.output, "wb") if args.output else sys.stdout.buffer  # noqa: SIM115
        try:
            for raw in iter_raw(db, args.community):
                out.write(raw)
            out.flush()
        finally:
            if args.output:
                out.close()
    finally:
        db.close()
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    _, db = _open_node(args.dir)
    try:
        data = stats(db)
    finally:
        db.close()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"{data['messages']} messages ({data['skeletons']} skeletons)")
    for community, entry in data["communities"].items():
        print(f"community {community}: {entry['messages']} messages")
        for kind, count in entry["kinds"].items():
            print(f"  {kind:<12} {count}")
    print(f"set_hash {data['set_hash']}")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from .folder import backup_node

    config = load_config(args.dir)
    pages = backup_node(config, Path(args.dest))
    print(
        f"backed up {config.name!r} to {args.dest} ({pages:,} database pages,"
        f" config and community key); check it with: fora verify {args.dest}"
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    _, db = _open_node(args.dir)
    try:
        report = verify_store(db)
    finally:
        db.close()
    for problem in report.problems or []:
        print(problem)
    print(
        f"checked {report.checked} messages: {len(report.problems or [])} problems;"
        f" integrity_check: {report.integrity}"
    )
    if not report.ok:
        raise NodeError("verification failed")
    return 0


def _community_arg(text: str) -> bytes:
    try:
        return _hex_id(text)
    except argparse.ArgumentTypeError as exc:
        raise NodeError(f"community id: {exc}") from exc


async def _with_node(directory: str, fn: Callable[..., Any]) -> Any:
    """Run ``fn(config, store, community)`` with the node's store open (off the loop)."""
    config = _node_config(directory)
    community = signing.public_key_bytes(read_key(config.key_path))
    store = await Store.open(config.db_path)
    try:
        return await fn(config, store, community)
    finally:
        await store.close()


def cmd_peer_add(args: argparse.Namespace) -> int:
    import aiohttp

    from storage import peers as peer_fns

    from .sync_client import PeerClient

    async def add(config: NodeConfig, store: Any, community: bytes) -> Any:
        async with aiohttp.ClientSession() as session:
            info = await PeerClient(session, args.url).info()
        if info["community"] == community:
            raise NodeError(f"{args.url} is this node's own community")
        return await store.write(
            peer_fns.add_peer, args.url, info["community"], info["name"], "manual", now_ms=now_ms()
        )

    try:
        peer = asyncio.run(_with_node(args.dir, add))
    except (SyncError, peer_fns.PeerRefused) as exc:
        raise NodeError(str(exc)) from exc
    print(f"peer {peer.url}: {peer.name} (community {peer.community.hex()}), following it")
    return 0


def cmd_peer_list(args: argparse.Namespace) -> int:
    from storage import peers as peer_fns

    _, db = _open_node(args.dir)
    try:
        peers = peer_fns.list_peers(db)
    finally:
        db.close()
    if args.json:
        print(json.dumps([p.as_json() for p in peers], indent=2))
        return 0
    if not peers:
        print("no peers (add one with: fora peer add DIR URL)")
    for p in peers:
        last = _when(p.last_success)
        print(
            f"{p.url}  {p.name}  [{p.kind}] state={p.state} last sync={last}"
            f" received={p.received} sent={p.sent}"
        )
        if p.last_error:
            print(f"    last error: {p.last_error}")
    return 0


def _read_password(args: argparse.Namespace) -> str:
    """The new account's password: from --password-file (first line), else asked twice."""
    if args.password_file:
        text = Path(args.password_file).read_text(encoding="utf-8")
        return text.splitlines()[0] if text else ""
    import getpass

    first = getpass.getpass("Password for the new account: ")
    if getpass.getpass("The same password again: ") != first:
        raise NodeError("the two passwords differ")
    return first


def cmd_account_add(args: argparse.Namespace) -> int:
    from storage.accounts import AccountError
    from web.keys import PasswordError

    config, db = _open_node(args.dir)
    try:
        password = _read_password(args)
        key = read_key(config.key_path)
        until = parse_when(args.until) if args.until else None
        try:
            account, grant = add_account(
                db,
                key,
                name=args.name,
                password=password,
                role=args.role,
                display_name=args.display_name,
                until=until,
            )
        except (AccountError, PasswordError) as exc:
            raise NodeError(str(exc)) from exc
    finally:
        db.close()
    print(account.public_key.hex())
    print(f"account {account.name!r} ({args.role}) approved; grant {grant.hex_id}", file=sys.stderr)
    return 0


def cmd_account_list(args: argparse.Namespace) -> int:
    from storage.accounts import AccountError, list_accounts

    _, db = _open_node(args.dir)
    try:
        accounts = list_accounts(db, args.status)
    except AccountError as exc:
        raise NodeError(str(exc)) from exc
    finally:
        db.close()
    rows = [a.public() for a in accounts]
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not rows:
        print("no accounts (add the first admin with: fora account add DIR NAME --role admin)")
    for r in rows:
        print(
            f"{r['id']}  {r['name']}  {r['status']}  key={r['key']}  created={_when(r['created'])}"
        )
    return 0


def _when(ms: int | None) -> str:
    if not ms:
        return "never"
    import datetime

    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def cmd_peer_remove(args: argparse.Namespace) -> int:
    from storage import peers as peer_fns

    _, db = _open_node(args.dir)
    try:
        removed = peer_fns.remove_peer(db, args.url)
    finally:
        db.close()
    if not removed:
        raise NodeError(f"{args.url} is not a peer")
    print(f"removed peer {args.url}")
    return 0


def cmd_follow(args: argparse.Namespace) -> int:
    from storage import peers as peer_fns

    community = _community_arg(args.community)
    _, db = _open_node(args.dir)
    try:
        added = peer_fns.follow(db, community, via="fora follow", now_ms=now_ms())
    finally:
        db.close()
    print(("now following " if added else "already following ") + community.hex())
    return 0


def cmd_unfollow(args: argparse.Namespace) -> int:
    from storage import peers as peer_fns

    community = _community_arg(args.community)
    _, db = _open_node(args.dir)
    try:
        removed = peer_fns.unfollow(db, community)
    finally:
        db.close()
    if not removed:
        raise NodeError(f"not following {community.hex()}")
    print(f"no longer following {community.hex()} (its messages stay stored)")
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    import aiohttp
    from tqdm import tqdm

    from storage import peers as peer_fns

    from .sync_client import PeerClient
    from .syncer import Ingestor, ItemCache, SyncProgress, sync_with_peer

    bars: dict[str, Any] = {}
    quiet = args.json or (not sys.stderr.isatty() and not args.progress)

    def on_progress(p: SyncProgress) -> None:
        if quiet:
            return
        if p.to_fetch and "fetch" not in bars:
            bars["fetch"] = tqdm(total=p.to_fetch, desc="receiving", unit="msg", file=sys.stderr)
        if "fetch" in bars:
            bar = bars["fetch"]
            bar.total = p.to_fetch
            bar.update(p.fetched - bar.n)
            bar.set_postfix_str(f"{p.bytes_received / 1e6:.1f} MB", refresh=False)
        if p.to_push and "push" not in bars:
            bars["push"] = tqdm(total=p.to_push, desc="sending  ", unit="msg", file=sys.stderr)
        if "push" in bars:
            bar = bars["push"]
            bar.total = p.to_push
            bar.update(p.pushed - bar.n)
            bar.set_postfix_str(
                f"{p.bytes_pushed / 1e6:.1f} of {p.bytes_to_push / 1e6:.1f} MB", refresh=False
            )

    async def run(config: NodeConfig, store: Any, community: bytes) -> Any:
        peer = await store.read(peer_fns.get_peer, args.url)
        ingestor = Ingestor(store)
        try:
            async with aiohttp.ClientSession() as session:
                client = PeerClient(session, args.url)
                return await sync_with_peer(
                    client,
                    store,
                    ItemCache(store),
                    ingestor,
                    community,
                    pinned=peer.community if peer else None,
                    last_success_ms=peer.last_success if peer else None,
                    progress=SyncProgress(args.url),
                    on_progress=on_progress,
                )
        finally:
            ingestor.close()
            for bar in bars.values():
                bar.close()

    async def run_and_record(config: NodeConfig, store: Any, community: bytes) -> Any:
        report = await run(config, store, community)
        if await store.read(peer_fns.get_peer, args.url) is not None:
            await store.write(
                peer_fns.record_success,
                args.url,
                now_ms=now_ms(),
                received=report.received,
                sent=report.sent,
                interval_ms=0,
            )
        return report

    try:
        report = asyncio.run(_with_node(args.dir, run_and_record))
    except (SyncError, peer_fns.PeerRefused) as exc:
        raise NodeError(str(exc)) from exc
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(
            f"synced with {report.peer_name} ({args.url}): {len(report.communities)}"
            f" {'community' if len(report.communities) == 1 else 'communities'},"
            f" received {report.received}, sent {report.sent},"
            f" rejected {report.rejected}; {report.round_trips} round trips,"
            f" {report.bytes_received:,} bytes in, {report.bytes_sent:,} bytes out"
        )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve

    config = load_config(args.dir or default_dir())
    if args.host:
        config.host = args.host
    if args.port is not None:
        config.port = args.port
    serve(config, sync_interval=args.interval, mdns=not args.no_mdns)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(Path(args.dir), base_port=args.port)
    return 0


# --------------------------------------------------------------------------- parser

EPILOG = "Example: fora init ./bomarzo --name Bomarzo --country IT --lang it"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fora",
        description="Fora: a municipality's community forum node, synced node to node.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"fora {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def command(
        name: str, func: Callable[[argparse.Namespace], int], help_: str, example: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_, epilog=f"Example: {example}")
        p.set_defaults(func=func)
        return p

    p = command(
        "init",
        cmd_init,
        "Create a node folder: config, community key, database.",
        "fora init ./bomarzo --name Bomarzo --country IT --region Lazio --lang it",
    )
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--name", required=True, help="the community's name")
    p.add_argument("--country", required=True, help="ISO 3166-1 alpha-2 code, e.g. IT")
    p.add_argument("--region", default="", help="region name")
    p.add_argument("--lang", action="append", help="language tag (repeat for more; first is main)")
    p.add_argument("--about", default="", help="a few words about the community")
    p.add_argument("--port", type=int, default=8470, help="port 'fora serve' listens on")

    p = command("id", cmd_id, "Print the community id (64 hex characters).", "fora id ./bomarzo")
    p.add_argument("dir", metavar="DIR")

    p = command("key", lambda a: 0, "Manage resident keys.", "fora key new alice.key")
    key_sub = p.add_subparsers(dest="key_command", metavar="SUBCOMMAND", parser_class=_Parser)
    key_sub.required = True
    kn = key_sub.add_parser(
        "new",
        help="Make a new resident key file (PEM, mode 0600).",
        epilog="Example: fora key new alice.key",
    )
    kn.add_argument("file", metavar="FILE")
    kn.set_defaults(func=cmd_key_new)

    p = command(
        "post",
        cmd_post,
        "Sign and store a message; print its id.",
        "fora post ./bomarzo proposal --topic ID --title 'Electric bus' --problem 'Old bus'"
        " --solution 'Buy one' --closes 2027-03-01 --key alice.key",
    )
    p.add_argument("dir", metavar="DIR")
    p.add_argument("kind", metavar="KIND")
    p.add_argument("--body", help="the whole body as JSON; bin fields as hex")
    p.add_argument("--ref", action="append", type=_hex_id, default=[], help="an id this refers to")
    p.add_argument("--key", help="sign with this key file instead of the community key")
    for flag in _REF_FLAGS:
        p.add_argument(f"--{flag}", type=_hex_id, help=f"the {flag} this refers to (refs[0])")
    p.add_argument("--edit-of", type=_hex_id, help="id of the first version this edit replaces")
    for name in _FLAG_FIELDS:
        p.add_argument(f"--{name}", help=f"the body's {name}")
    p.add_argument("--tag", action="append", help="a topic tag (repeat for more)")
    p.add_argument(
        "--closes",
        help="close time: a date (2027-03-01: until the END of that day, UTC)"
        " or a time (2027-03-01T18:00Z, 2027-03-01T18:00+01:00; no zone: UTC)",
    )
    p.add_argument(
        "--opens",
        help="survey: open time: a date (2027-03-01: from the START of that day, UTC)"
        " or a time like --closes (default: now)",
    )
    p.add_argument("--goal", type=int, help="petition: signatures wanted")
    p.add_argument(
        "--question",
        action="append",
        help="survey question (repeat): 'text|scale|low,mid,high', 'text|choice|a,b' or"
        " 'text|text'",
    )
    p.add_argument(
        "--answer",
        action="append",
        help="answer (repeat, one per question, in order): an option's text or number"
        " (1 = first), the text, or - to skip",
    )
    p.add_argument("--name", help="panel: its name")
    p.add_argument("--seats", type=int, help="panel: how many keys the draw selects")
    p.add_argument(
        "--force", action="store_true", help="sign even if the message would have no effect"
    )

    p = command(
        "grant",
        cmd_grant,
        "Grant a role (member, moderator, official, admin) to a key.",
        "fora grant ./bomarzo alice.key member --until 2027-12-31",
    )
    p.add_argument("dir", metavar="DIR")
    p.add_argument("member", metavar="KEY", help="a public key (64 hex) or a key file")
    p.add_argument("role", choices=("member", "moderator", "official", "admin"))
    p.add_argument(
        "--until",
        help="the role ends then: a date (2027-12-31: at the END of that day, UTC)"
        " or a time (2027-12-31T18:00Z)",
    )
    p.add_argument("--key", help="sign with this (admin) key file instead of the community key")

    p = command(
        "revoke",
        cmd_revoke,
        "Withdraw a grant.",
        "fora revoke ./bomarzo 3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29",
    )
    p.add_argument("dir", metavar="DIR")
    p.add_argument("grant", metavar="GRANT_ID", type=_hex_id)
    p.add_argument("--reason", default="", help="why (published)")
    p.add_argument("--key", help="sign with this (admin) key file instead of the community key")

    p = command(
        "show",
        cmd_show,
        "Show a message with its derived state (counted or why not).",
        "fora show ./bomarzo 3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"
        " --json",
    )
    p.add_argument("dir", metavar="DIR")
    p.add_argument("id", metavar="ID", type=_hex_id)
    p.add_argument("--json", action="store_true")

    p = command(
        "ingest",
        cmd_ingest,
        "Check and store a stream of concatenated messages.",
        "fora ingest ./bomarzo messages.bin --json",
    )
    p.add_argument("dir", metavar="DIR")
    p.add_argument("file", metavar="FILE", help="a file, or - for standard input")
    p.add_argument("--json", action="store_true", help="one JSON object per message")

    p = command(
        "export",
        cmd_export,
        "Write the stored messages as one stream.",
        "fora export ./bomarzo -o backup.bin",
    )
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--community", type=_hex_id, help="only this community's messages")
    p.add_argument("-o", "--output", help="write to this file instead of standard output")

    p = command(
        "stats",
        cmd_stats,
        "Count messages by community and kind; print the set hash.",
        "fora stats ./bomarzo --json",
    )
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--json", action="store_true")

    p = command(
        "backup",
        cmd_backup,
        "Copy the node (database, config, key) to a new folder while it runs.",
        "fora backup /var/lib/fora /backup/fora-2026-11-23",
    )
    p.add_argument("dir", metavar="DIR")
    p.add_argument("dest", metavar="DEST", help="a folder that does not exist yet")

    p = command(
        "verify",
        cmd_verify,
        "Re-check every stored message and the database.",
        "fora verify ./bomarzo",
    )
    p.add_argument("dir", metavar="DIR")

    p = command(
        "peer",
        lambda a: 0,
        "Manage the peers this node syncs with.",
        "fora peer add ./bomarzo http://192.0.2.10:8470",
    )
    peer_sub = p.add_subparsers(dest="peer_command", metavar="SUBCOMMAND", parser_class=_Parser)
    peer_sub.required = True
    pa = peer_sub.add_parser(
        "add",
        help="Add a peer (pins its community id, follows it).",
        epilog="Example: fora peer add ./bomarzo http://192.0.2.10:8470",
    )
    pa.add_argument("dir", metavar="DIR")
    pa.add_argument("url", metavar="URL")
    pa.set_defaults(func=cmd_peer_add)
    pl = peer_sub.add_parser(
        "list",
        help="List peers: last sync, state, errors.",
        epilog="Example: fora peer list ./bomarzo --json",
    )
    pl.add_argument("dir", metavar="DIR")
    pl.add_argument("--json", action="store_true")
    pl.set_defaults(func=cmd_peer_list)
    pr = peer_sub.add_parser(
        "remove",
        help="Remove a peer.",
        epilog="Example: fora peer remove ./bomarzo http://192.0.2.10:8470",
    )
    pr.add_argument("dir", metavar="DIR")
    pr.add_argument("url", metavar="URL")
    pr.set_defaults(func=cmd_peer_remove)

    p = command(
        "account",
        lambda a: 0,
        "Manage the web view's resident accounts.",
        "fora account add ./bomarzo Anna --role admin",
    )
    acc_sub = p.add_subparsers(dest="account_command", metavar="SUBCOMMAND", parser_class=_Parser)
    acc_sub.required = True
    aa = acc_sub.add_parser(
        "add",
        help="Add an approved account with a role (the first admin); grants the role with"
        " the community key. The password is asked for, or read from --password-file.",
        epilog="Example: fora account add ./bomarzo Anna --role admin --password-file pw.txt",
    )
    aa.add_argument("dir", metavar="DIR")
    aa.add_argument("name", metavar="NAME")
    aa.add_argument(
        "--role", default="member", choices=("member", "moderator", "official", "admin")
    )
    aa.add_argument("--display-name", help="the name shown (default: NAME)")
    aa.add_argument("--password-file", help="read the password from this file's first line")
    aa.add_argument(
        "--until",
        help="the role ends then: a date (2027-12-31: at the END of that day, UTC)"
        " or a time (2027-12-31T18:00Z)",
    )
    aa.set_defaults(func=cmd_account_add)
    al = acc_sub.add_parser(
        "list",
        help="List the accounts: name, status, key.",
        epilog="Example: fora account list ./bomarzo --status pending",
    )
    al.add_argument("dir", metavar="DIR")
    al.add_argument("--status", choices=("pending", "approved", "rejected"))
    al.add_argument("--json", action="store_true")
    al.set_defaults(func=cmd_account_list)

    example_id = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"
    p = command(
        "follow",
        cmd_follow,
        "Hold and sync another community's messages.",
        f"fora follow ./bomarzo {example_id}",
    )
    p.add_argument("dir", metavar="DIR")
    p.add_argument("community", metavar="COMMUNITY_ID")
    p = command(
        "unfollow",
        cmd_unfollow,
        "Stop syncing a community (keeps what is stored).",
        f"fora unfollow ./bomarzo {example_id}",
    )
    p.add_argument("dir", metavar="DIR")
    p.add_argument("community", metavar="COMMUNITY_ID")

    p = command(
        "sync",
        cmd_sync,
        "One full two-way sync with a node now.",
        "fora sync ./bomarzo http://127.0.0.1:8471",
    )
    p.add_argument("dir", metavar="DIR")
    p.add_argument("url", metavar="URL")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--progress", action="store_true", help="progress bars even when not a tty")

    p = command(
        "serve",
        cmd_serve,
        "Run the node (sync API and status page).",
        "fora serve ./bomarzo --port 8470",
    )
    p.add_argument(
        "dir",
        metavar="DIR",
        nargs="?",
        help="node folder (default: $FORA_DIR or ~/.local/share/fora)",
    )
    p.add_argument("--host", help="address to listen on (default from config: 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default from config: 8470)")
    p.add_argument("--interval", type=float, default=60.0, help="seconds between peer syncs")
    p.add_argument(
        "--no-mdns", action="store_true", help="do not announce or look for nodes on the LAN (mDNS)"
    )

    p = command(
        "demo", cmd_demo, "Start demo communities with sample content.", "fora demo --dir ./demo"
    )
    p.add_argument("--dir", default="fora-demo", help="where the demo nodes live")
    p.add_argument("--port", type=int, default=8470, help="first port")
    return parser


def run() -> int:
    """The ``fora`` command (its console script and ``python -m node``): :func:`main`
    in a process tuned as a long-running node (node/runtime.py). Tests call
    :func:`main` in their own process, which keeps its settings."""
    from .runtime import tune_gc

    tune_gc()
    return main()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (NodeError, StorageError, ProtocolError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:  # locked by another writer too long, disk full, ...
        print(f"Error: database: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # pragma: no cover - `fora export | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:
        print(f"Error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
