"""Admins and officials in the browser.

- Approving a resident (admin or official) publishes the ``grant`` of the member role,
  signed by the community key the node holds, in the same transaction as the account's
  change (``storage.accounts.approve_with_grant``); rejecting publishes nothing.
- Granting a role (with an optional end date) or revoking a grant (admins only) is
  signed with the admin's own key, as ``storage/roles.py`` allows.
- Peers (admins only): add (the node contacts the URL and pins its community), remove,
  and see each one's state.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlite_utils import Database

from node.appkeys import COMMUNITY_ID, PEERS, STORE
from node.clock import now_ms
from node.sync_client import SyncError
from protocol.messages import create_message
from storage import accounts as acc
from storage import forum
from storage import peers as peer_fns

from .accounts import (
    ACCOUNTS,
    OFFICIALS_OR_ADMINS,
    Viewer,
    announce,
    publish_as,
    require_role,
)
from .formkit import N_ as _  # marks texts for translation (scripts/i18n)
from .formkit import FormError, form_values, see_other
from .forms import parse_date
from .render import page
from .sessions import get_session

__all__ = ["ROUTES"]

ADMINS = frozenset({"admin"})
ROLES = ("member", "moderator", "official", "admin")
#: A form error's field -> the id of its input on the page (each form has its prefix).
FIELD_IDS = {
    "member": "g-member",
    "role": "g-role",
    "until": "g-until",
    "grant": "r-grant",
    "reason": "r-reason",
    "url": "p-url",
}
#: What a refused form gets back in its inputs (never a password: there is none here).
_KEPT = tuple(FIELD_IDS)


def _admin_context(db: Database, community: bytes, is_admin: bool) -> dict[str, Any]:
    ctx: dict[str, Any] = {
        "pending": [a.public() for a in acc.list_accounts(db, "pending")],
        "accounts": [a.public() for a in acc.list_accounts(db)],
        "is_admin": is_admin,
        "roles": list(ROLES),
    }
    keys = {a["key"] for a in ctx["accounts"]}
    grants = [
        {"grant": g.hex(), "member": m.hex(), "role": role, "from": start, "until": end}
        for g, m, role, start, end in db.execute(
            "SELECT grant_id, member, role, start_ts, end_ts FROM role_grants"
            " WHERE community = ? AND status = 'valid' ORDER BY start_ts DESC LIMIT 500",
            (community,),
        )
    ]
    names = {a["key"]: a["name"] for a in ctx["accounts"]}
    for g in grants:
        g["name"] = names.get(g["member"]) if g["member"] in keys else None
    ctx["grants"] = grants
    if is_admin:
        ctx["peers"] = [p.as_json() for p in peer_fns.list_peers(db)]
        ctx["names"] = forum.community_names(
            db, [bytes.fromhex(p["community"]) for p in ctx["peers"]]
        )
    return ctx


async def _render(
    request: web.Request,
    who: Viewer,
    error: FormError | None = None,
    values: dict[str, str] | None = None,
) -> web.Response:
    """The page; with ``error``, the summary links to the field at fault (its input's id
    on this page of several forms: :data:`FIELD_IDS`) and ``values`` refill the form."""
    get_session(request, create=True)
    ctx = await request.app[STORE].read(
        _admin_context, request.app[COMMUNITY_ID], who.holds(ADMINS)
    )
    if error is not None:
        ctx["errors"] = [
            {
                "field": error.field,
                "anchor": FIELD_IDS.get(error.field or ""),
                "message": error.message,
                "detail": error.detail,
            }
        ]
        if values is not None:
            ctx["values"] = {k: values.get(k, "") for k in _KEPT}
    return page(request, "admin.html", ctx, status=error.status if error else 200)


async def admin_page(request: web.Request) -> web.Response:
    who = await require_role(request, OFFICIALS_OR_ADMINS)
    return await _render(request, who)


def _account_id(request: web.Request) -> int:
    raw = request.match_info["account"]
    if not raw.isdigit() or len(raw) > 12:
        raise web.HTTPNotFound()
    return int(raw)


async def approve(request: web.Request) -> web.Response:
    who = await require_role(request, OFFICIALS_OR_ADMINS)
    account = await request.app[STORE].read(acc.get_account_by_id, _account_id(request))
    if account is None:
        raise web.HTTPNotFound()
    community_key = request.app[ACCOUNTS].community_key
    assert community_key is not None
    now = now_ms()
    grant = create_message(
        community_key,
        kind="grant",
        community=request.app[COMMUNITY_ID],
        ts=now,
        fields={"member": account.public_key, "role": "member"},
    )
    try:
        await request.app[STORE].write(
            acc.approve_with_grant, account.id, grant, decided_by=who.public_key, now=now
        )
    except acc.AccountError as exc:
        return await _render(
            request, who, FormError(_("Not done"), None, detail=str(exc), status=409)
        )
    announce(request, [grant])
    raise see_other("/admin")


async def reject(request: web.Request) -> web.Response:
    who = await require_role(request, OFFICIALS_OR_ADMINS)
    try:
        await request.app[STORE].write(
            acc.decide, _account_id(request), approve=False, decided_by=who.public_key, now=now_ms()
        )
    except acc.AccountError as exc:
        return await _render(
            request, who, FormError(_("Not done"), None, detail=str(exc), status=409)
        )
    raise see_other("/admin")


def _member_key(db: Database, text: str) -> bytes | None:
    text = text.strip()
    if len(text) == 64:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    account = acc.get_account(db, text) if text else None
    return account.public_key if account is not None else None


async def grant(request: web.Request) -> web.Response:
    who = await require_role(request, ADMINS)
    values = await form_values(request)
    try:
        member = await request.app[STORE].read(_member_key, values.get("member", ""))
        if member is None:
            raise FormError(_("No account of that name, and not a key"), "member")
        role = values.get("role", "")
        if role not in ROLES:
            raise FormError(_("Choose a role"), "role")
        fields: dict[str, Any] = {"member": member, "role": role}
        until = values.get("until", "").strip()
        if until:
            fields["until"] = parse_date(until, "until")
        await publish_as(request, who.key, "grant", fields)
    except FormError as exc:
        return await _render(request, who, exc, values)
    raise see_other("/admin")


async def revoke(request: web.Request) -> web.Response:
    who = await require_role(request, ADMINS)
    values = await form_values(request)
    try:
        raw = values.get("grant", "").strip().lower()
        try:
            grant_id = bytes.fromhex(raw)
        except ValueError:
            grant_id = b""
        if len(grant_id) != 32:
            raise FormError(_("Not a grant id"), "grant")
        reason = values.get("reason", "").strip()
        await publish_as(request, who.key, "revoke", {"reason": reason}, [grant_id])
    except FormError as exc:
        return await _render(request, who, exc, values)
    raise see_other("/admin")


async def peer_add(request: web.Request) -> web.Response:
    who = await require_role(request, ADMINS)
    values = await form_values(request)
    url = values.get("url", "").strip()
    try:
        if not url.startswith(("http://", "https://")):
            raise FormError(_("A peer's address starts with http:// or https://"), "url")
        try:
            await request.app[PEERS].add(url)
        except (SyncError, peer_fns.PeerRefused) as exc:
            raise FormError(
                _("The peer was not added"), "url", detail=str(exc), status=409
            ) from None
    except FormError as exc:
        return await _render(request, who, exc, values)
    raise see_other("/admin")


async def peer_remove(request: web.Request) -> web.Response:
    who = await require_role(request, ADMINS)
    values = await form_values(request)
    removed = await request.app[STORE].write(peer_fns.remove_peer, values.get("url", ""))
    if not removed:
        return await _render(request, who, FormError(_("No such peer"), None, status=404))
    raise see_other("/admin")


ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/admin", admin_page),
    ("POST", "/admin/accounts/{account:[0-9]+}/approve", approve),
    ("POST", "/admin/accounts/{account:[0-9]+}/reject", reject),
    ("POST", "/admin/grant", grant),
    ("POST", "/admin/revoke", revoke),
    ("POST", "/admin/peers/add", peer_add),
    ("POST", "/admin/peers/remove", peer_remove),
]
