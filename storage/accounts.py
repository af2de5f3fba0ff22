"""Resident accounts of the web view: local to this node, never synced.

An account is a name, a display name, a password record and the resident's Ed25519 key
sealed under that password (both made by ``web/keys.py``; this module never sees a
password or a key in clear), the public key, and a status: ``pending`` until an admin
or official decides, then ``approved`` (with the id of the grant the node published)
or ``rejected``.

Names are compared by :func:`name_key`: NFKC, case folded, and every character that
Unicode's confusables data lists as a look-alike of another (Cyrillic ``а`` and Latin
``a``, ``0`` and ``O``, ``l``, ``I`` and ``1`` …) folded to one representative, so a
second resident cannot register a name that reads like an existing one. This errs on
the strict side: as names ignore case and a capital ``I`` reads as ``l``, ``i`` and
``l`` are one class too ("Ali" and "All" are the same name).

Plain synchronous functions taking a ``Database``; the node runs them on the store's
writer thread (``store.write``) or a reader (``store.read``).
"""

from __future__ import annotations

import functools
import json
import sqlite3
import unicodedata
from dataclasses import dataclass
from importlib import resources
from typing import Any

from sqlite_utils import Database

from protocol.errors import Result
from protocol.messages import Message

from .database import write_transaction
from .messages import store_checked

__all__ = [
    "MAX_DISPLAY_NAME",
    "MAX_NAME",
    "MIN_NAME",
    "STATUSES",
    "Account",
    "AccountError",
    "NameTaken",
    "approve_with_grant",
    "check_display_name",
    "check_name",
    "create_account",
    "decide",
    "get_account",
    "get_account_by_id",
    "list_accounts",
    "name_key",
    "set_password_record",
]

STATUSES = ("pending", "approved", "rejected")
MIN_NAME = 2
MAX_NAME = 40
MAX_DISPLAY_NAME = 80
#: Punctuation allowed inside a name besides letters, digits and single spaces.
NAME_PUNCTUATION = frozenset("-_.'")


class AccountError(Exception):
    """A request the resident or admin can fix (bad name, wrong state)."""


class NameTaken(AccountError):
    """The name, or one that reads the same, belongs to another account."""


@dataclass(frozen=True)
class Account:
    id: int
    name: str
    name_key: str
    display_name: str
    password: str
    sealed_key: bytes
    public_key: bytes
    status: str
    created: int
    decided_at: int | None
    decided_by: bytes | None
    grant_id: bytes | None

    def public(self) -> dict[str, Any]:
        """The account as pages and ``fora account list --json`` show it: never its
        password record or sealed key."""
        return {
            "id": self.id,
            "name": self.name,
            "display_name": self.display_name,
            "key": self.public_key.hex(),
            "status": self.status,
            "created": self.created,
            "decided_at": self.decided_at,
            "decided_by": self.decided_by.hex() if self.decided_by else None,
            "grant": self.grant_id.hex() if self.grant_id else None,
        }


_COLUMNS = (
    "id, name, name_key, display_name, password, sealed_key, public_key, status, created,"
    " decided_at, decided_by, grant_id"
)


def _account(row: Any) -> Account:
    return Account(*row)


# -- names -----------------------------------------------------------------------------


@functools.cache
def _lookalikes() -> dict[str, str]:
    """Character -> representative of its look-alike class (the smallest code point).

    Classes join each character of Unicode's confusables data (as shipped by the
    confusable-homoglyphs package) with its single-character look-alikes and its case
    fold; multi-character look-alikes (``rn`` for ``m``) are not folded.
    """
    data = json.loads(
        (resources.files("confusable_homoglyphs") / "confusables.json").read_text("utf-8")
    )
    parent: dict[str, str] = {}

    def find(c: str) -> str:
        root = c
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(c, c) != root:  # path compression
            parent[c], c = root, parent[c]
        return root

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    for char, glyphs in data.items():
        if len(char) != 1:
            continue
        folded = char.casefold()
        if len(folded) == 1:
            union(char, folded)
        for glyph in glyphs:
            other = glyph["c"].strip("\u200e\u200f")  # the data wraps RTL glyphs in marks
            if len(other) == 1:
                union(char, other)
    return {c: find(c) for c in parent}


def _clean(text: str) -> str:
    """NFKC, whitespace runs collapsed to one space, stripped."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def name_key(name: str) -> str:
    """The form names are compared in: two names with the same key are the same name."""
    table = _lookalikes()
    folded = _clean(name).casefold()
    return "".join(table.get(c, c) for c in unicodedata.normalize("NFKC", folded))


def check_name(name: str) -> str:
    """The name as stored (NFKC, single spaces), or :class:`AccountError` saying why not.

    2 to 40 characters: letters, digits, single spaces and ``- _ . '``; starting with a
    letter or digit.
    """
    if not isinstance(name, str):
        raise AccountError("the name must be text")
    clean = _clean(name)
    if not MIN_NAME <= len(clean) <= MAX_NAME:
        raise AccountError(f"a name has {MIN_NAME} to {MAX_NAME} characters")
    for c in clean:
        category = unicodedata.category(c)
        if not (category[0] in "LN" or c == " " or c in NAME_PUNCTUATION or category == "Mn"):
            raise AccountError(f"a name cannot contain {c!r}: use letters, digits, - _ . '")
    if unicodedata.category(clean[0])[0] not in "LN":
        raise AccountError("a name starts with a letter or a digit")
    return clean


def check_display_name(display_name: str) -> str:
    """The display name as stored (NFKC, single spaces): 1 to 80 printable characters."""
    if not isinstance(display_name, str):
        raise AccountError("the display name must be text")
    clean = _clean(display_name)
    if not 1 <= len(clean) <= MAX_DISPLAY_NAME:
        raise AccountError(f"a display name has 1 to {MAX_DISPLAY_NAME} characters")
    if any(unicodedata.category(c)[0] == "C" for c in clean):
        raise AccountError("a display name cannot contain control or format characters")
    return clean


# -- accounts ----------------------------------------------------------------------------


def create_account(
    db: Database,
    *,
    name: str,
    display_name: str,
    password: str,
    sealed_key: bytes,
    public_key: bytes,
    now: int,
) -> Account:
    """Register a pending account; :class:`NameTaken` if the name (or a look-alike) is
    in use. ``password`` is the record from ``web.keys`` (never the password itself)."""
    clean = check_name(name)
    display = check_display_name(display_name)
    key = name_key(clean)
    if len(public_key) != 32:
        raise AccountError("a public key has 32 bytes")
    with write_transaction(db):
        taken = db.execute("SELECT name FROM accounts WHERE name_key = ?", (key,)).fetchone()
        if taken is not None:
            raise NameTaken(f"the name {clean!r} is taken, or reads like one in use")
        try:
            cursor = db.execute(
                "INSERT INTO accounts (name, name_key, display_name, password, sealed_key,"
                " public_key, status, created) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)",
                (clean, key, display, password, sealed_key, public_key, now),
            )
        except sqlite3.IntegrityError as exc:
            raise AccountError(f"account not created: {exc}") from exc
        account_id = cursor.lastrowid
    account = get_account_by_id(db, int(account_id or 0))
    assert account is not None
    return account


def get_account(db: Database, name: str) -> Account | None:
    """The account whose name reads like ``name``, if any."""
    row = db.execute(
        f"SELECT {_COLUMNS} FROM accounts WHERE name_key = ?",  # noqa: S608 - constant columns
        (name_key(name),),
    ).fetchone()
    return None if row is None else _account(row)


def get_account_by_id(db: Database, account_id: int) -> Account | None:
    sql = f"SELECT {_COLUMNS} FROM accounts WHERE id = ?"  # noqa: S608 - constant columns
    row = db.execute(sql, (account_id,)).fetchone()
    return None if row is None else _account(row)


def list_accounts(db: Database, status: str | None = None, limit: int = 1000) -> list[Account]:
    """Accounts oldest first, all or those with ``status`` (the admin's queue: pending)."""
    if status is None:
        sql = f"SELECT {_COLUMNS} FROM accounts ORDER BY id LIMIT ?"  # noqa: S608 - constant
        rows = db.execute(sql, (limit,))
    else:
        if status not in STATUSES:
            raise AccountError(f"unknown status {status!r}")
        rows = db.execute(
            f"SELECT {_COLUMNS} FROM accounts"  # noqa: S608 - constant columns
            " WHERE status = ? ORDER BY created, id LIMIT ?",
            (status, limit),
        )
    return [_account(row) for row in rows]


def _pending(db: Database, account_id: int) -> Account:
    """The account waiting for a decision, or an AccountError saying why not."""
    account = get_account_by_id(db, account_id)
    if account is None:
        raise AccountError(f"no account {account_id}")
    if account.status != "pending":
        raise AccountError(f"account {account.name!r} is {account.status} already")
    return account


def decide(
    db: Database,
    account_id: int,
    *,
    approve: bool,
    decided_by: bytes,
    now: int,
    grant_id: bytes | None = None,
) -> Account:
    """Approve (with the id of the grant the node published) or reject a pending account.

    Run it in the same transaction as the grant's ``publish`` so an approval is never
    recorded without its grant, nor a grant without its approval.
    """
    if approve and grant_id is None:
        raise AccountError("approving needs the id of the published grant")
    if not approve and grant_id is not None:
        raise AccountError("a rejection has no grant")
    with write_transaction(db):
        _pending(db, account_id)  # or AccountError
        db.execute(
            "UPDATE accounts SET status = ?, decided_at = ?, decided_by = ?, grant_id = ?"
            " WHERE id = ? AND status = 'pending'",
            ("approved" if approve else "rejected", now, decided_by, grant_id, account_id),
        )
    decided = get_account_by_id(db, account_id)
    assert decided is not None
    return decided


def set_password_record(
    db: Database, account_id: int, *, old_password: str, password: str, sealed_key: bytes
) -> None:
    """Replace the password record and sealed key (a password change or a re-hash at
    stronger parameters), only if the record is still ``old_password``: two changes at
    once cannot interleave."""
    with write_transaction(db):
        cursor = db.execute(
            "UPDATE accounts SET password = ?, sealed_key = ? WHERE id = ? AND password = ?",
            (password, sealed_key, account_id, old_password),
        )
        if cursor.rowcount != 1:
            raise AccountError("the password changed meanwhile; try again")


def approve_with_grant(
    db: Database, account_id: int, grant: Message, *, decided_by: bytes, now: int
) -> Account:
    """Store the ``grant`` that makes a pending account's key a member and approve the
    account, in one transaction: neither happens without the other."""
    if grant.kind != "grant" or grant.fields is None:
        raise AccountError("approving needs a grant message")
    with write_transaction(db):
        account = _pending(db, account_id)
        if grant.fields.get("member") != account.public_key:
            raise AccountError("the grant is for another key")
        (result,) = store_checked(db, [grant], now_ms=now)
        if result.result is not Result.OK:
            raise AccountError(f"grant not stored: {result.result.value} {result.detail}")
        return decide(
            db, account_id, approve=True, decided_by=decided_by, now=now, grant_id=grant.id
        )
