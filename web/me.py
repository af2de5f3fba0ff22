"""A resident's own page (``/me``): the account's status and roles, what they published,
their ballots, petition signatures and survey answers; download all their data (JSON) or
their key (PEM, after typing the password again); change the password (the same key
re-sealed); erase a message, a ballot, a signature or a survey answer of theirs
(publishes ``erase``: an erased ballot, signature or answer stops counting)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from sqlite_utils import Database

from node.appkeys import COMMUNITY_ID, STORE
from node.clock import now_ms
from storage import accounts as acc
from storage import forum, views

from . import keys
from .accounts import ACCOUNTS, Viewer, publish_as, require_viewer
from .formkit import N_ as _  # marks texts for translation (scripts/i18n)
from .formkit import FormError, form_values, see_other
from .forms import _target_id
from .render import page
from .sessions import get_session

__all__ = ["ROUTES"]


def _me_context(db: Database, who_key: bytes) -> dict[str, Any]:
    activity = forum.member_activity(db, who_key, limit=100)
    # Every ballot (the one that counts, superseded and erased ones) with its proposal's
    # title: each not yet erased gets an Erase button.
    ballots = forum.ballots_of(db, who_key, limit=100)
    # Likewise every signature and survey answer, erased ones without a button.
    return {
        "activity": activity,
        "ballots": ballots,
        "signatures": forum.signatures_of(db, who_key, limit=100),
        "answers": forum.survey_answers_of(db, who_key, limit=100),
        "names": forum.community_names(db, []),
    }


async def _render(
    request: web.Request, who: Viewer, error: FormError | None = None
) -> web.Response:
    get_session(request, create=True)
    ctx = await request.app[STORE].read(_me_context, who.public_key)
    ctx["me"] = who.as_json()
    ctx["account"] = who.account.public()
    ctx["community"] = request.app[COMMUNITY_ID].hex()
    if error is not None:
        ctx["errors"] = [{"field": error.field, "message": error.message, "detail": error.detail}]
    return page(request, "me.html", ctx, status=error.status if error else 200)


async def me(request: web.Request) -> web.Response:
    who = await require_viewer(request)
    return await _render(request, who)


def _my_messages(db: Database, author: bytes) -> list[dict[str, Any]]:
    rows = db.execute(
        f"SELECT m.id, m.kind, m.community, m.ts, m.refs, m.has_body, {views.BODY_COLUMNS}"  # noqa: S608
        " FROM messages m LEFT JOIN bodies b ON b.id = m.id WHERE m.author = ?"
        " ORDER BY m.ts, m.id",
        (author,),
    ).fetchall()
    out = []
    for mid, kind, community, ts, refs, has_body, text, raw in rows:
        out.append(
            {
                "id": mid.hex(),
                "kind": kind,
                "community": community.hex(),
                "ts": ts,
                "refs": [refs[i : i + 32].hex() for i in range(0, len(refs), 32)],
                "erased": not has_body,
                "fields": views.body_fields(kind, text, raw),
            }
        )
    return out


async def my_data(request: web.Request) -> web.Response:
    """Everything this node holds about the resident, as one JSON file."""
    who = await require_viewer(request)
    messages = await request.app[STORE].read(_my_messages, who.public_key)
    data = {
        "account": who.account.public(),
        "roles": sorted(who.roles),
        "messages": messages,
        "exported_at": now_ms(),
    }
    return web.json_response(
        data,
        dumps=lambda d: json.dumps(d, ensure_ascii=False, indent=1),
        headers={"Content-Disposition": 'attachment; filename="fora-my-data.json"'},
    )


async def _check_password(request: web.Request, who: Viewer, password: str) -> None:
    """The account's password, throttled like a login."""
    state = request.app[ACCOUNTS]
    throttle_key = who.account.name_key
    address = request.remote or ""
    wait = state.throttle.wait(throttle_key, address)
    if wait > 0:
        raise FormError(
            _("Too many failed logins: wait before trying again"),
            None,
            detail=f"{int(wait) + 1} s",
            status=429,
        )
    try:
        await asyncio.to_thread(keys.login, who.account, password, state.params)
    except keys.LoginFailed:
        state.throttle.failed(throttle_key, address)
        raise FormError(_("Wrong password"), "password", status=401) from None
    state.throttle.succeeded(throttle_key, address)


async def download_key(request: web.Request) -> web.Response:
    who = await require_viewer(request)
    values = await form_values(request)
    try:
        await _check_password(request, who, values.get("password", ""))
    except FormError as exc:
        return await _render(request, who, exc)
    return web.Response(
        body=keys.export_key(who.key),
        content_type="application/x-pem-file",
        headers={
            "Content-Disposition": f'attachment; filename="{who.public_key.hex()[:12]}.key"',
            "Cache-Control": "no-store",
        },
    )


async def change_password(request: web.Request) -> web.Response:
    who = await require_viewer(request)
    values = await form_values(request)
    state = request.app[ACCOUNTS]
    try:
        new = values.get("new_password", "")
        try:
            keys.check_password(new)
        except keys.PasswordError as exc:
            raise FormError(_("Choose another password"), "new_password", detail=str(exc)) from None
        if new != values.get("new_password2", ""):
            raise FormError(_("The two passwords differ"), "new_password2")
        await _check_password(request, who, values.get("password", ""))
        sealed = await asyncio.to_thread(keys.seal, new, who.key, state.params)
        try:
            await request.app[STORE].write(
                acc.set_password_record,
                who.account.id,
                old_password=who.account.password,
                password=sealed.password,
                sealed_key=sealed.sealed_key,
            )
        except acc.AccountError as exc:
            raise FormError(_("Not done"), None, detail=str(exc), status=409) from None
    except FormError as exc:
        return await _render(request, who, exc)
    raise see_other("/me?changed=password")


async def erase(request: web.Request) -> web.Response:
    who = await require_viewer(request)
    target = _target_id(request)
    try:
        await publish_as(request, who.key, "erase", {}, [target])
    except FormError as exc:
        return await _render(request, who, exc)
    raise see_other("/me")


ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/me", me),
    ("GET", "/me/data.json", my_data),
    ("POST", "/me/key", download_key),
    ("POST", "/me/password", change_password),
    ("POST", "/m/{id:[0-9a-fA-F]{64}}/erase", erase),
]
