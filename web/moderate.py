"""Moderators in the browser: the queue of reports on this community's messages, and
hiding or showing again a message with a reason, signed with the moderator's own key
(``hide`` / ``unhide``; every node honours them in this community's views)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.appkeys import COMMUNITY_ID, STORE
from storage import forum

from .accounts import Viewer, publish_as, require_role
from .formkit import N_ as _  # marks texts for translation (scripts/i18n)
from .formkit import Field, FormError, FormSpec, form_page, form_values, see_other
from .forms import _target_id
from .render import page

__all__ = ["ROUTES"]

MODERATORS = frozenset({"moderator", "admin"})


async def reports(request: web.Request) -> web.Response:
    await require_role(request, MODERATORS)
    queue = await request.app[STORE].read(forum.report_queue, request.app[COMMUNITY_ID])
    return page(request, "reports.html", {"reports": queue})


async def _moderate(request: web.Request, action: str) -> web.Response:
    who: Viewer = await require_role(request, MODERATORS)
    thing = await request.app[STORE].read(forum.thing, _target_id(request))
    if thing is None or thing["community"] != request.app[COMMUNITY_ID].hex():
        raise web.HTTPNotFound()
    title = _("Hide a message") if action == "hide" else _("Show a message again")
    spec = FormSpec(
        title=title,
        action=f"/m/{thing['id']}/{action}",
        submit=_("Hide it") if action == "hide" else _("Show it again"),
        intro=_("The reason is published in the moderation log."),
        fields=[Field("reason", _("Reason"), "textarea")],
    )
    about = {k: thing.get(k) for k in ("id", "kind", "title", "text", "lang", "status")}
    context = {"target": about if thing["status"] == "visible" else {"id": thing["id"]}}
    if request.method == "GET":
        return form_page(request, spec, context=context)
    values = await form_values(request)
    try:
        reason = values.get("reason", "").strip()
        if not reason:
            raise FormError(_("Fill in this field"), "reason")
        await publish_as(request, who.key, action, {"reason": reason}, [bytes.fromhex(thing["id"])])
    except FormError as exc:
        return form_page(request, spec, values, exc, context=context)
    raise see_other("/mod/reports" if action == "hide" else "/moderation")


async def hide(request: web.Request) -> web.Response:
    return await _moderate(request, "hide")


async def unhide(request: web.Request) -> web.Response:
    return await _moderate(request, "unhide")


_ID = "{id:[0-9a-fA-F]{64}}"
ROUTES: list[tuple[str, Any]] = [
    (f"/m/{_ID}/hide", hide),
    (f"/m/{_ID}/unhide", unhide),
]
