"""Making this node's own messages: sign, check, store; and creating a node folder."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlite_utils import Database

from protocol import kinds, signing
from protocol.errors import ProtocolError, Result
from protocol.messages import Message, create_message
from storage.database import open_database, write_transaction
from storage.messages import store_checked
from storage.roles import ADMIN_ROLES, MODERATOR_ROLES, RoleCache, authorize
from storage.views import answers_mismatch

from .clock import now_ms
from .folder import CONFIG_NAME, NodeConfig, NodeError, write_config, write_key

__all__ = ["add_account", "check_effect", "init_node", "publish"]

_TARGET_KIND = {"sign": "petition", "answer": "survey", "draw": "panel"}


def publish(
    db: Database,
    key: Ed25519PrivateKey,
    community: bytes,
    kind: str,
    fields: dict[str, Any],
    refs: Sequence[bytes] = (),
    ts: int | None = None,
) -> Message:
    """Sign and store one message; raise :class:`NodeError` unless it was stored."""
    now = now_ms()
    message = create_message(
        key, kind=kind, community=community, ts=now if ts is None else ts, fields=fields, refs=refs
    )
    (result,) = store_checked(db, [message], now_ms=now)
    if result.result is not Result.OK:
        raise NodeError(f"message not stored: {result.result.value} {result.detail}".rstrip())
    return message


def init_node(
    directory: Path,
    *,
    name: str,
    country: str,
    region: str = "",
    languages: Sequence[str] = ("en",),
    about: str = "",
    port: int = 8470,
    ts: int | None = None,
) -> tuple[NodeConfig, Ed25519PrivateKey, Message]:
    """Create a node folder: config, community key (0600), database, signed profile.

    The profile is checked before anything is written, so bad input leaves no folder.
    """
    if (directory / CONFIG_NAME).exists():
        raise NodeError(f"{directory} is a Fora node folder already")
    fields = {
        "name": name,
        "country": country,
        "region": region,
        "languages": list(languages),
        "about": about,
    }
    try:
        kinds.check_body("community", fields, ())
    except ProtocolError as exc:
        raise NodeError(f"bad community profile: {exc}") from exc
    directory.mkdir(parents=True, exist_ok=True)
    config = NodeConfig(
        dir=directory,
        name=name,
        country=country,
        region=region,
        languages=list(languages),
        port=port,
    )
    key = signing.generate_private_key()
    write_key(config.key_path, key)
    write_config(config)
    db = open_database(config.db_path)
    try:
        profile = publish(db, key, signing.public_key_bytes(key), "community", fields, ts=ts)
    finally:
        db.close()
    return config, key, profile


def check_effect(
    db: Database,
    author: bytes,
    community: bytes,
    kind: str,
    fields: dict[str, Any],
    refs: Sequence[bytes],
    ts: int,
) -> None:
    """Refuse (``NodeError``) a message that would be valid but have no effect.

    A vote by a non-member, a vote on a closed proposal, a second ``sign`` or one after
    the close, an answer that does not fit its survey, a ``hide`` by a non-moderator, a
    ``tally`` by a plain member … are accepted from peers and shown as "not counted";
    the local user is told before signing instead.
    """
    cache = RoleCache(db.conn)
    target = refs[0] if refs else None
    if kind in ("hide", "unhide", "tally", "vote", "erase") and target is not None:
        row = db.execute(
            "SELECT community, author, kind FROM messages WHERE id = ?", (target,)
        ).fetchone()
        if row is None:
            raise NodeError(f"{kind}: the target {target.hex()} is not held here")
        t_community, t_author, t_kind = row
        if kind in ("hide", "unhide") and not cache.holds(t_community, author, ts, MODERATOR_ROLES):
            raise NodeError(
                f"{kind} would have no effect: you are not a moderator of its community"
            )
        if kind == "erase":
            if author != t_author and not cache.holds(t_community, author, ts, ADMIN_ROLES):
                raise NodeError(
                    "erase would have no effect: you are neither its author nor an admin"
                )
            return
        if kind in ("vote", "tally"):
            if t_kind != "proposal":
                raise NodeError(f"{kind}: the target is a {t_kind}, not a proposal")
            closes = db.execute("SELECT closes FROM things WHERE id = ?", (target,)).fetchone()
            if closes is None or closes[0] is None:
                raise NodeError(f"{kind}: the proposal's body is not held here")
            if kind == "vote" and ts >= closes[0]:
                raise NodeError("vote would not be counted: the proposal is closed")
            if kind == "vote" and community != t_community:
                pass  # support from another community: shown apart, allowed
            if kind == "tally" and ts < closes[0]:
                raise NodeError("tally would not be counted: the proposal is still open")
            if kind == "tally" and community != t_community:
                raise NodeError("tally would not be counted: the proposal is another community's")
    if kind in ("sign", "answer", "draw") and target is not None:
        _check_target(db, kind, community, fields, target, ts)
    if kind in ("petition", "survey") and "edit_of" not in fields:
        closes = fields.get("closes")
        if isinstance(closes, int) and closes <= ts:
            raise NodeError(f"{kind} would have no effect: it would be closed already")
    if kind == "sign" and target is not None:
        again = db.execute(
            "SELECT 1 FROM message_refs r JOIN messages m ON m.id = r.id WHERE r.ref = ?"
            " AND r.position = 0 AND m.kind = 'sign' AND m.author = ? AND m.has_body = 1"
            " LIMIT 1",  # an erased sign counts no more: signing again counts (docs/civic.md)
            (target, author),
        ).fetchone()
        if again is not None:
            raise NodeError("sign would not be counted: you signed this petition already")
    if kind in ("grant", "revoke", "erase"):
        if kind != "erase" and not cache.holds(community, author, ts, ADMIN_ROLES):
            raise NodeError(f"{kind} would have no effect: you are not an admin")
        return
    verdict = authorize(cache, kind, community, author, ts)
    if not verdict.authorized and kind not in ("hide", "unhide"):
        why = verdict.reason.replace("author", "you are").replace(" at ts", " now")
        raise NodeError(f"{kind} would not be counted: {why}")


def _check_target(
    db: Database,
    kind: str,
    community: bytes,
    fields: dict[str, Any],
    target: bytes,
    ts: int,
) -> None:
    """A sign, answer or draw whose petition, survey or panel would not take it."""
    want = _TARGET_KIND[kind]
    row = db.execute(
        "SELECT m.kind, t.status, t.community, t.closes, t.fields FROM messages m"
        " LEFT JOIN things t ON t.id = m.id WHERE m.id = ?",
        (target,),
    ).fetchone()
    if row is None:
        raise NodeError(f"{kind}: the {want} {target.hex()} is not held here")
    t_kind, status, t_community, closes, body = row
    if t_kind != want:
        raise NodeError(f"{kind}: the target is a {t_kind}, not a {want}")
    if kind == "draw":
        return  # checked against the panel by the draw command itself
    if status is None or status not in ("visible", "hidden") or body is None:
        raise NodeError(f"{kind} would not be counted: the {want} is {status or 'not shown'}")
    if closes is not None and ts >= closes:
        raise NodeError(f"{kind} would not be counted: the {want} is closed")
    if kind == "answer":
        survey = json.loads(body)
        if ts < int(survey.get("opens", 0)):
            raise NodeError("answer would not be counted: the survey is not open yet")
        if community != t_community:
            raise NodeError("answer would not be counted: the survey is another community's")
        why = answers_mismatch(survey.get("questions", []), fields.get("answers"))
        if why:
            raise NodeError(f"answer would not be counted: {why}")


def add_account(
    db: Database,
    community_key: Ed25519PrivateKey,
    *,
    name: str,
    password: str,
    role: str = "member",
    display_name: str | None = None,
    params: Any = None,
    until: int | None = None,
) -> tuple[Any, Message]:
    """An approved web account with ``role`` on this node (the first admin, demo
    residents): the key is made and sealed under ``password``, and the ``grant`` of
    ``role``, signed by the community key, is stored with the approval.

    Returns (account, grant). ``AccountError`` / ``PasswordError`` for a bad name or
    password; nothing is written then.
    """
    from storage import accounts as acc
    from web import keys

    name = acc.check_name(name)
    display = acc.check_display_name(display_name or name)
    keys.check_password(password)
    if role not in ("member", "moderator", "official", "admin"):
        raise NodeError(f"unknown role {role!r}")
    key, sealed = keys.new_resident(password, params or keys.DEFAULT_PARAMS)
    public = signing.public_key_bytes(key)
    community = signing.public_key_bytes(community_key)
    now = now_ms()
    fields: dict[str, Any] = {"member": public, "role": role}
    if until is not None:
        fields["until"] = until
    grant = create_message(community_key, kind="grant", community=community, ts=now, fields=fields)
    with write_transaction(db):
        account = acc.create_account(
            db,
            name=name,
            display_name=display,
            password=sealed.password,
            sealed_key=sealed.sealed_key,
            public_key=public,
            now=now,
        )
        account = acc.approve_with_grant(db, account.id, grant, decided_by=community, now=now)
    return account, grant
