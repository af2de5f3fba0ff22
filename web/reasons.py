"""The node's reasons, in the reader's language.

The checks of the node (storage/roles.py, storage/views.py, storage/panels.py,
protocol/sortition.py, node/publish.py's ``check_effect``) explain in English why
something does not count or would have no effect: "author not a member at ts", "sign
would not be counted: you signed this petition already" … Those texts stay English and
stable in storage and in the JSON (``fora show --json`` and the JSON twins expose
them). This module translates them at display time, in the templates:
``{{ thing.reason|reason }}``.

A reason is looked up in :data:`EXACT`, then matched against :data:`PATTERNS` (whose
group ``why`` is itself a reason, translated in turn; the other groups are kept as they
are). A reason nobody taught this module is shown as it is, marked ``lang="en"``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from markupsafe import Markup, escape

from . import i18n

__all__ = ["EXACT", "PATTERNS", "explain", "reason_filter"]


def _(text: str) -> str:
    """Marks a text for translation (scripts/i18n extracts it); translated at display."""
    return text


_THINGS = ("proposal", "petition", "survey")


def _per_thing(state: str, *msgids: str) -> list[tuple[re.Pattern[str], str]]:
    """One (pattern, msgid) per kind of :data:`_THINGS`, in that order: the reason
    ``"{kind} {state}"`` of a proposal, petition or survey (the msgids stay literal
    so that extraction finds them)."""
    return [
        (re.compile(rf"{thing} {state}"), msgid)
        for thing, msgid in zip(_THINGS, msgids, strict=True)
    ]


#: Reasons (and the status words shown next to them) with no variable part.
EXACT: dict[str, str] = {
    # storage/roles.py: authorize() and the grants' verdicts
    "author not a member at ts": _("the author was not a member at that time"),
    "author not a moderator at ts": _("the author was not a moderator at that time"),
    "author not an official at ts": _("the author was not an official at that time"),
    "author not an admin at ts": _("the author was not an admin at that time"),
    "author not the community key at ts": _("the author is not the community's key"),
    "author not the community key or an admin at ts": _(
        "the author was neither the community's key nor an admin at that time"
    ),
    "body not held (erased or not yet received)": _(
        "its content is not held here (erased, or not received yet)"
    ),
    "refers to no earlier grant of this community": _(
        "it refers to no earlier grant of this community"
    ),
    # storage/views.py: things, moderation
    "not authorized": _("not authorized"),
    "erased": _("erased"),
    "body not held": _("its content is not held here"),
    "hidden by a moderator": _("hidden by a moderator"),
    "pending: the target is not held yet": _("pending: the target is not held here yet"),
    "author not a moderator of the target's community at ts": _(
        "the author was not a moderator of the target's community at that time"
    ),
    # ballots, tallies
    "the ballot was erased (or its body is not held)": _(
        "the ballot was erased (or its content is not held here)"
    ),
    "cast at or after the close": _("cast at or after the close"),
    "a newer ballot by the same voter counts": _("a newer ballot by the same voter counts"),
    "a member of another community: shown as support, not counted": _(
        "a member of another community: shown as support, not counted"
    ),
    "the tally's body is not held": _("the tally's content is not held here"),
    "a tally from another community": _("a tally from another community"),
    "published before the proposal closed": _("published before the proposal closed"),
    # signatures
    "the signature was erased (or its body is not held)": _(
        "the signature was erased (or its content is not held here)"
    ),
    "signed at or after the close": _("signed at or after the close"),
    "an earlier signature by the same key counts": _("an earlier signature by the same key counts"),
    # survey answers
    "the answer was erased (or its body is not held)": _(
        "the answer was erased (or its content is not held here)"
    ),
    "answered before the survey opened": _("answered before the survey opened"),
    "answered at or after the close": _("answered at or after the close"),
    "a member of another community: not counted": _("a member of another community: not counted"),
    "a newer answer by the same member counts": _("a newer answer by the same member counts"),
    # a proposal's, petition's or survey's own state, which blocks every ballot,
    # signature or answer (views._blocked)
    "pending: the proposal is not held": _("pending: the proposal is not held here"),
    "pending: the petition is not held": _("pending: the petition is not held here"),
    "pending: the survey is not held": _("pending: the survey is not held here"),
    # node/publish.py check_effect: why a message would have no effect (the ``why``
    # of "KIND would not be counted: WHY" and "KIND would have no effect: WHY")
    "you are not a member now": _("you are not a member now"),
    "you are not a moderator now": _("you are not a moderator now"),
    "you are not an official now": _("you are not an official now"),
    "you are not an admin now": _("you are not an admin now"),
    "you are not the community key now": _("you are not the community's key"),
    "you are not a moderator of its community": _("you are not a moderator of its community"),
    "you are neither its author nor an admin": _("you are neither its author nor an admin"),
    "you are not an admin": _("you are not an admin"),
    "the proposal is closed": _("the proposal is closed"),
    "the proposal is still open": _("the proposal is still open"),
    "the proposal is another community's": _("the proposal belongs to another community"),
    "it would be closed already": _("it would be closed already"),
    "you signed this petition already": _("you signed this petition already"),
    "the petition is closed": _("the petition is closed"),
    "the survey is closed": _("the survey is closed"),
    "the petition is erased": _("the petition was erased"),
    "the survey is erased": _("the survey was erased"),
    "the petition is not shown": _("the petition is not shown here"),
    "the survey is not shown": _("the survey is not shown here"),
    "the survey is not open yet": _("the survey is not open yet"),
    "the survey is another community's": _("the survey belongs to another community"),
    # statuses of a ballot, signature, answer or tally (shown next to the reason)
    "counted": _("counted"),
    "superseded": _("superseded"),
    "late": _("late"),
    "early": _("early"),
    "unauthorized": _("not authorized"),
    "support": _("support from another community"),
    "blocked": _("blocked"),
    "duplicate": _("duplicate"),
    "mismatch": _("does not match"),
    "verified": _("verified"),
    "other": _("another community's"),
    "pending": _("pending"),
    "invalid": _("invalid"),
    # panels and draws (storage/panels.py)
    "the panel is not held here": _("the panel is not held here"),
    "the panel's body is not held here": _("the panel's content is not held here"),
    "the draw was erased": _("the draw was erased"),
    "an earlier draw of this panel counts": _("an earlier draw of this panel counts"),
    "a draw of another community": _("a draw of another community"),
    "the draw's body is not held here": _("the draw's content is not held here"),
    "the draw is not after the panel": _("the draw is not after the panel"),
    "the secret does not match the panel's commit": _(
        "the secret does not match the panel's commit"
    ),
    "entropy ids not in ascending order (or repeated)": _(
        "the entropy messages are not in ascending order (or one is repeated)"
    ),
    "the roll recounted here differs from the committed one: the selection cannot be re-run": _(
        "the roll recounted here differs from the committed one: the selection cannot be re-run"
    ),
    # a message's own status (storage/views.py)
    "visible": _("visible"),
    "hidden": _("hidden"),
    "skeleton": _("content not held here"),
}

#: Reasons with variable parts: (pattern, msgid). The group ``why`` is a reason in turn.
PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # check_effect: "vote would not be counted: the proposal is closed"
    (re.compile(r"[a-z]+ would not be counted: (?P<why>.+)"), _("it would not count: %(why)s")),
    (
        re.compile(r"[a-z]+ would have no effect: (?P<why>.+)"),
        _("it would have no effect: %(why)s"),
    ),
    (
        re.compile(
            r"[a-z]+: the (?:target|petition|survey|panel) (?P<id>[0-9a-f]{64}) is not held here"
        ),
        _("%(id)s is not held on this node"),
    ),
    (
        re.compile(r"[a-z]+: the proposal's body is not held here"),
        _("the proposal's content is not held here"),
    ),
    # storage/roles.py
    (
        re.compile(r"unknown kind '(?P<kind>[^']*)': stored, never shown"),
        _("unknown kind %(kind)s: stored, never shown"),
    ),
    # a proposal's, petition's or survey's own state (views._blocked)
    *_per_thing(
        r"erased(?:: .*)?",
        _("the proposal was erased"),
        _("the petition was erased"),
        _("the survey was erased"),
    ),
    *_per_thing(
        r"skeleton(?:: .*)?",
        _("the proposal's content is not held here"),
        _("the petition's content is not held here"),
        _("the survey's content is not held here"),
    ),
    *_per_thing(
        r"unauthorized: (?P<why>.+)",
        _("the proposal does not count: %(why)s"),
        _("the petition does not count: %(why)s"),
        _("the survey does not count: %(why)s"),
    ),
    # a draw's entropy messages (protocol/sortition.py entropy_problems)
    (
        re.compile(r"(?P<n>\d+) entropy ids \(1\.\.(?P<max>\d+) allowed\)"),
        _("%(n)s entropy messages (1 to %(max)s allowed)"),
    ),
    (
        re.compile(r"entropy (?P<id>[0-9a-f]+): a message of the panel's own community"),
        _("entropy %(id)s: a message of the panel's own community"),
    ),
    (
        re.compile(
            r"entropy (?P<id>[0-9a-f]+): a second message of community (?P<other>[0-9a-f]+)"
        ),
        _("entropy %(id)s: a second message of community %(other)s"),
    ),
    (
        re.compile(
            r"entropy (?P<id>[0-9a-f]+): not after the panel \(ts (?P<ts>\d+) <= (?P<panel>\d+)\)"
        ),
        _("entropy %(id)s: not after the panel (ts %(ts)s <= %(panel)s)"),
    ),
    (
        re.compile(r"entropy (?P<id>[0-9a-f]+): after the draw \(ts (?P<ts>\d+) > (?P<draw>\d+)\)"),
        _("entropy %(id)s: after the draw (ts %(ts)s > %(draw)s)"),
    ),
    (
        re.compile(r"entropy (?P<id>[0-9a-f]+): its author holds no role in its community at ts"),
        _("entropy %(id)s: its author held no role in its community at that time"),
    ),
    # survey answers that do not fit (views.answers_mismatch)
    (
        re.compile(r"(?P<n>\d+) answers for (?P<questions>\d+) questions"),
        _("%(n)s answers for %(questions)s questions"),
    ),
    (
        re.compile(r"question (?P<n>\d+): a text question needs a text answer"),
        _("question %(n)s: a text question needs a text answer"),
    ),
    (
        re.compile(r"question (?P<n>\d+): needs an option index"),
        _("question %(n)s: choose one of the options"),
    ),
    (
        re.compile(r"question (?P<n>\d+): option (?P<option>-?\d+) out of range"),
        _("question %(n)s: option %(option)s does not exist"),
    ),
]

_MAX_DEPTH = 4


def explain(text: str | None, lang: str) -> Markup:
    """``text`` (a reason of the node) in ``lang``, escaped; a reason this module does
    not know is kept as it is, in a ``<span lang="en">``."""
    return _explain(text or "", i18n.translations(lang).gettext, 0)


def _explain(text: str, gettext: Callable[[str], str], depth: int) -> Markup:
    if not text:
        return Markup("")
    msgid = EXACT.get(text)
    if msgid is not None:
        return escape(gettext(msgid))
    if depth < _MAX_DEPTH:
        for pattern, msgid in PATTERNS:
            match = pattern.fullmatch(text)
            if match is None:
                continue
            values = {
                name: _explain(value, gettext, depth + 1) if name == "why" else escape(value)
                for name, value in match.groupdict().items()
            }
            return escape(gettext(msgid)) % values
    return Markup('<span lang="en">%s</span>') % text


def reason_filter(lang: str) -> Callable[[str | None], Markup]:
    """The Jinja filter ``reason`` of the environment of ``lang``."""

    def reason(text: str | None) -> Markup:
        return explain(text, lang)

    return reason
