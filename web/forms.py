"""What a resident publishes from the browser: a topic, a proposal in a topic, a story,
a comment (a threaded reply to anything), a vote, a petition's signature, a survey's
answers, a report.

Every form is server-rendered and works without JavaScript: GET shows it (with the
session's CSRF token), POST checks it, publishes through :func:`accounts.publish_as`
and redirects (303) to what changed; bad input comes back as the same form with the
error, the values kept and a 4xx status (400 bad input, 409 no effect).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from aiohttp import web
from sqlite_utils import Database

from node.appkeys import STORE
from node.clock import now_ms
from protocol.dates import BadTime, parse_time
from storage import forum

from . import i18n
from .accounts import Viewer, publish_as, require_member
from .formkit import N_ as _  # marks texts for translation (scripts/i18n)
from .formkit import Field, FormError, FormSpec, form_page, form_values, see_other

__all__ = ["ROUTES"]

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
SCOPES = (
    ("local", _("Local")),
    ("regional", _("Regional")),
    ("national", _("National")),
    ("european", _("European")),
)
CHOICES = (("yes", _("Yes")), ("no", _("No")), ("abstain", _("Abstain")))
#: A new proposal's vote stays open this long unless the form says otherwise.
DEFAULT_OPEN_DAYS = 14


def _langs() -> list[tuple[str, str]]:
    return list(i18n.LANGUAGES.items())


def _lang_field(request: web.Request) -> Field:
    lang, _remember = i18n.negotiate(request)
    return Field("lang", _("Language of your text"), "select", options=_langs(), value=lang)


def _target_id(request: web.Request) -> bytes:
    value = request.match_info["id"].lower()
    if not _HEX64.match(value):
        raise web.HTTPNotFound()
    return bytes.fromhex(value)


async def _target(request: web.Request, kinds: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The visible thing the form is about, or 404."""
    thing = await request.app[STORE].read(forum.thing, _target_id(request))
    if thing is None or thing["status"] != "visible":
        raise web.HTTPNotFound()
    if kinds is not None and thing["kind"] not in kinds:
        raise web.HTTPNotFound()
    return thing


def _about(thing: dict[str, Any]) -> dict[str, Any]:
    return {k: thing.get(k) for k in ("id", "kind", "title", "text", "lang")}


def _text(values: dict[str, str], name: str) -> str:
    return values.get(name, "").replace("\r\n", "\n").strip()


def _required(values: dict[str, str], *names: str) -> None:
    for name in names:
        if not _text(values, name):
            raise FormError(_("Fill in this field"), name)


def _where(thing_id: bytes, kind: str) -> str:
    return f"/t/{thing_id.hex()}" if kind == "topic" else f"/m/{thing_id.hex()}"


async def _handle(
    request: web.Request,
    spec: FormSpec,
    build: Any,
    *,
    context: dict[str, Any] | None = None,
    template: str = "form.html",
) -> web.Response:
    """GET: the form. POST: ``build(values, viewer)`` -> (kind, fields, refs, where to
    go: a path or None for the new message's page), published; or the form again with
    the error."""
    who = await require_member(request)
    if request.method == "GET":
        return form_page(request, spec, template=template, context=context)
    values = await form_values(request)
    try:
        kind, fields, refs, where = build(values, who)
        message = await publish_as(request, who.key, kind, fields, refs)
    except FormError as exc:
        return form_page(request, spec, values, exc, template=template, context=context)
    raise see_other(where or _where(message.id, kind))


# -- topic ---------------------------------------------------------------------------


def _tags(raw: str) -> list[str]:
    tags: list[str] = []
    for part in re.split(r"[,\s]+", raw):
        tag = part.strip().lstrip("#").casefold()
        if tag and tag not in tags:
            tags.append(tag)
    return tags


async def new_topic(request: web.Request) -> web.Response:
    spec = FormSpec(
        title=_("New topic"),
        action="/new/topic",
        submit=_("Publish the topic"),
        fields=[
            Field("title", _("Title"), maxlength=200),
            Field("text", _("Text"), "textarea", required=False, hint=_("Markdown is allowed.")),
            Field(
                "tags",
                _("Tags"),
                required=False,
                hint=_("Words separated by commas, e.g. schools, transport"),
            ),
            Field("scope", _("Scope"), "select", options=SCOPES, value="local"),
            _lang_field(request),
        ],
    )

    def build(values: dict[str, str], who: Viewer) -> Any:
        _required(values, "title")
        fields = {
            "title": _text(values, "title"),
            "text": _text(values, "text"),
            "tags": _tags(values.get("tags", "")),
            "scope": values.get("scope", ""),
            "lang": values.get("lang", ""),
        }
        return "topic", fields, [], None

    return await _handle(request, spec, build)


# -- proposal ------------------------------------------------------------------------


def parse_date(text: str, field: str, *, end_of_day: bool = True) -> int:
    """A date or a time, as ms since the epoch, by the rule of :mod:`protocol.dates`
    (the CLI's too): a bare date (2027-03-01) is the end of that day, UTC, unless
    ``end_of_day`` is False (a time that opens something: the start of the day). A bad
    one is a :class:`FormError` on ``field`` (no default: the error names the form's own
    input, e.g. ``until`` on the admin's grant form, not ``closes``)."""
    try:
        return parse_time(text, end_of_day=end_of_day)
    except BadTime:
        raise FormError(_("Enter a date like 2027-03-01"), field) from None


async def new_proposal(request: web.Request) -> web.Response:
    topic = await _target(request, ("topic",))
    default_close = dt.datetime.fromtimestamp(now_ms() / 1000, dt.UTC) + dt.timedelta(
        days=DEFAULT_OPEN_DAYS
    )
    spec = FormSpec(
        title=_("New proposal"),
        action=f"/t/{topic['id']}/proposal",
        submit=_("Publish the proposal"),
        fields=[
            Field("title", _("Title"), maxlength=200),
            Field("problem", _("The problem"), "textarea"),
            Field("solution", _("The solution you propose"), "textarea"),
            Field(
                "closes",
                _("Voting closes"),
                "date",
                hint=_("Votes count until the end of this day (UTC)."),
                value=default_close.date().isoformat(),
            ),
            _lang_field(request),
        ],
    )

    def build(values: dict[str, str], who: Viewer) -> Any:
        _required(values, "title", "problem", "solution", "closes")
        closes = parse_date(values.get("closes", ""), "closes")
        if closes <= now_ms():
            raise FormError(_("The closing date is in the past"), "closes")
        fields = {
            "title": _text(values, "title"),
            "problem": _text(values, "problem"),
            "solution": _text(values, "solution"),
            "closes": closes,
            "lang": values.get("lang", ""),
        }
        return "proposal", fields, [bytes.fromhex(topic["id"])], None

    return await _handle(request, spec, build, context={"target": _about(topic)})


# -- story ---------------------------------------------------------------------------


async def new_story(request: web.Request) -> web.Response:
    topic_hex = request.query.get("topic", "").lower()
    if request.method == "POST":
        topic_hex = (await form_values(request)).get("topic", "").lower()
    topic = None
    if topic_hex:
        if not _HEX64.match(topic_hex):
            raise web.HTTPBadRequest(text="Error: topic must be a 64-character hex id\n")
        topic = await request.app[STORE].read(forum.thing, bytes.fromhex(topic_hex))
        if topic is None or topic["kind"] != "topic" or topic["status"] != "visible":
            raise web.HTTPNotFound()
    spec = FormSpec(
        title=_("Tell a story"),
        action="/new/story",
        submit=_("Publish the story"),
        intro=_("Share an experience or a point of view with the community."),
        fields=[
            Field("title", _("Title"), maxlength=200),
            Field("text", _("Your story"), "textarea", hint=_("Markdown is allowed.")),
            _lang_field(request),
            Field("topic", "topic", "hidden", required=False, value=topic_hex),
        ],
    )

    def build(values: dict[str, str], who: Viewer) -> Any:
        _required(values, "title", "text")
        fields = {
            "title": _text(values, "title"),
            "text": _text(values, "text"),
            "lang": values.get("lang", ""),
        }
        refs = [bytes.fromhex(topic["id"])] if topic is not None else []
        return "story", fields, refs, None

    context = {"target": _about(topic)} if topic is not None else None
    return await _handle(request, spec, build, context=context)


# -- comment -------------------------------------------------------------------------

COMMENTABLE = ("topic", "proposal", "story", "comment", "petition", "meeting", "survey")


async def comment(request: web.Request) -> web.Response:
    target = await _target(request, COMMENTABLE)
    spec = FormSpec(
        title=_("Reply"),
        action=f"/m/{target['id']}/comment",
        submit=_("Publish the reply"),
        fields=[
            Field("text", _("Your reply"), "textarea", hint=_("Markdown is allowed.")),
            _lang_field(request),
        ],
    )
    # Back to the page that shows the thread: the topic (or the thing) replied under.
    back = await request.app[STORE].read(_thread_page, bytes.fromhex(target["id"]))

    def build(values: dict[str, str], who: Viewer) -> Any:
        _required(values, "text")
        fields = {"text": _text(values, "text"), "lang": values.get("lang", "")}
        return "comment", fields, [bytes.fromhex(target["id"])], back

    return await _handle(request, spec, build, context={"target": _about(target)})


def _thread_page(db: Database, thing_id: bytes) -> str:
    """The page a thing's thread is read on: climb from comments to what they reply to."""
    for _step in range(64):
        thing = forum.thing(db, thing_id)
        if thing is None:
            break
        if thing["kind"] != "comment" or not thing.get("parent"):
            return _where(thing_id, thing["kind"])
        thing_id = bytes.fromhex(thing["parent"])
    return _where(thing_id, "comment")


# -- vote ----------------------------------------------------------------------------


def _vote_context(db: Database, proposal: bytes, voter: bytes, now: int) -> dict[str, Any] | None:
    ctx = forum.proposal_page(db, proposal, now_ms=now)
    if ctx is None:
        return None
    # The newest ballot not erased: an erased one no longer counts (an older one may).
    mine = [b for b in forum.ballots_of(db, voter, proposal=proposal) if b["choice"]]
    return {
        "target": _about(ctx["proposal"]),
        "counts": ctx["counts"],
        "open": ctx.get("open", False),
        "closes": ctx["proposal"].get("closes"),
        "my_ballot": {k: mine[0][k] for k in ("id", "choice", "ts", "status")} if mine else None,
    }


async def vote(request: web.Request) -> web.Response:
    target = await _target(request, ("proposal",))
    who = await require_member(request)
    proposal = bytes.fromhex(target["id"])
    context = await request.app[STORE].read(_vote_context, proposal, who.public_key, now_ms())
    if context is None:
        raise web.HTTPNotFound()
    mine = context["my_ballot"]
    spec = FormSpec(
        title=_("Vote"),
        action=f"/m/{target['id']}/vote",
        submit=_("Cast my vote"),
        intro=_("A new vote replaces your previous one until the vote closes."),
        fields=[
            Field(
                "choice",
                _("Your vote"),
                "radio",
                options=CHOICES,
                value=mine["choice"] if mine else "",
            )
        ],
    )

    def build(values: dict[str, str], who: Viewer) -> Any:
        choice = values.get("choice", "")
        if choice not in ("yes", "no", "abstain"):
            raise FormError(_("Choose yes, no or abstain"), "choice")
        return "vote", {"choice": choice}, [proposal], f"/m/{target['id']}/vote"

    return await _handle(request, spec, build, context=context, template="vote.html")


# -- petition signature --------------------------------------------------------------


async def sign(request: web.Request) -> web.Response:
    target = await _target(request, ("petition",))
    spec = FormSpec(
        title=_("Sign the petition"),
        action=f"/m/{target['id']}/sign",
        submit=_("Sign"),
        intro=_("Your signature is public and counts once."),
        fields=[],
    )

    def build(values: dict[str, str], who: Viewer) -> Any:
        return "sign", {}, [bytes.fromhex(target["id"])], f"/m/{target['id']}"

    return await _handle(request, spec, build, context={"target": _about(target)})


# -- survey answers ------------------------------------------------------------------


async def answer(request: web.Request) -> web.Response:
    target = await _target(request, ("survey",))
    questions = (target.get("fields") or {}).get("questions", [])
    fields = []
    for i, q in enumerate(questions):
        label = str(q.get("text", ""))
        if q.get("type") == "text":
            fields.append(Field(f"q{i}", label, "textarea", required=False))
        else:
            options = [(str(j), str(o)) for j, o in enumerate(q.get("options", []))]
            fields.append(Field(f"q{i}", label, "radio", required=False, options=options))
    spec = FormSpec(
        title=_("Answer the survey"),
        action=f"/m/{target['id']}/answer",
        submit=_("Send my answers"),
        intro=_("Leave a question blank to skip it. New answers replace your earlier ones."),
        fields=fields,
    )

    def build(values: dict[str, str], who: Viewer) -> Any:
        answers: list[Any] = []
        for i, q in enumerate(questions):
            raw = _text(values, f"q{i}")
            if not raw:
                answers.append(None)
            elif q.get("type") == "text":
                answers.append(raw)
            else:
                if not raw.isdigit() or int(raw) >= len(q.get("options", [])):
                    raise FormError(_("Choose one of the options"), f"q{i}")
                answers.append(int(raw))
        return "answer", {"answers": answers}, [bytes.fromhex(target["id"])], None

    return await _handle(request, spec, build, context={"target": _about(target)})


# -- report --------------------------------------------------------------------------


async def report(request: web.Request) -> web.Response:
    target = await _target(request)
    spec = FormSpec(
        title=_("Report to the moderators"),
        action=f"/m/{target['id']}/report",
        submit=_("Send the report"),
        intro=_("Reports are public. A moderator reads each one."),
        fields=[Field("reason", _("What is wrong with it?"), "textarea")],
    )

    back = await request.app[STORE].read(_thread_page, bytes.fromhex(target["id"]))

    def build(values: dict[str, str], who: Viewer) -> Any:
        _required(values, "reason")
        return "report", {"reason": _text(values, "reason")}, [bytes.fromhex(target["id"])], back

    return await _handle(request, spec, build, context={"target": _about(target)})


_ID = "{id:[0-9a-fA-F]{64}}"

#: (path, handler): each answers GET (the form) and POST (publish).
ROUTES: list[tuple[str, Any]] = [
    ("/new/topic", new_topic),
    ("/new/story", new_story),
    (f"/t/{_ID}/proposal", new_proposal),
    (f"/m/{_ID}/comment", comment),
    (f"/m/{_ID}/vote", vote),
    (f"/m/{_ID}/sign", sign),
    (f"/m/{_ID}/answer", answer),
    (f"/m/{_ID}/report", report),
]
