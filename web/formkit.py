"""What every form of the web view shares: its fields, how it is rendered (one template,
``form.html``: labelled fields, an error summary linking to each field), and how an
error comes back (the same form, the values kept, a 4xx status).

Labels, hints and fixed error texts are marked with :func:`N_` so ``scripts/i18n``
extracts them; the template translates them at render time. Reasons that come from the
node's checks (``check_effect``, the message schema) are shown as they are, in English,
after a translated lead-in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .render import page
from .sessions import get_session

__all__ = ["N_", "Field", "FormError", "form_page", "form_values", "see_other"]


def N_(text: str) -> str:
    """Mark ``text`` for translation without translating it here."""
    return text


#: Kinds of field the template knows.
TYPES = frozenset(
    {"text", "textarea", "password", "select", "radio", "date", "number", "hidden", "checkbox"}
)


@dataclass
class Field:
    name: str
    label: str
    type: str = "text"
    required: bool = True
    options: Sequence[tuple[str, str]] = ()
    hint: str = ""
    value: str = ""
    error: str = ""
    autocomplete: str = ""
    maxlength: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "id": "f-" + self.name,
            "label": self.label,
            "type": self.type,
            "required": self.required,
            "options": [list(o) for o in self.options],
            "hint": self.hint,
            # a password never comes back in a page
            "value": "" if self.type == "password" else self.value,
            "error": self.error,
            "autocomplete": self.autocomplete,
            "maxlength": self.maxlength,
        }


class FormError(Exception):
    """Bad input: ``message`` is shown in the summary and at ``field`` (if any).

    ``detail`` is an untranslated reason from the node's checks, shown after the
    (translated) message. ``status`` is the answer's HTTP status (400 unless told).
    """

    def __init__(
        self, message: str, field: str | None = None, *, detail: str = "", status: int = 400
    ) -> None:
        super().__init__(f"{message} {detail}".strip())
        self.message = message
        self.field = field
        self.detail = detail
        self.status = status


_SCHEMA_FIELD = re.compile(r"^[a-z_]+\.([a-z_]+)")


def schema_field(detail: str) -> str | None:
    """The field a schema complaint names (``topic.title: ...`` -> ``title``)."""
    match = _SCHEMA_FIELD.match(detail)
    return match.group(1) if match else None


@dataclass
class FormSpec:
    title: str
    action: str
    submit: str
    fields: list[Field]
    intro: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def form_page(
    request: web.Request,
    spec: FormSpec,
    values: Mapping[str, str] | None = None,
    error: FormError | None = None,
    *,
    template: str = "form.html",
    context: dict[str, Any] | None = None,
) -> web.Response:
    """The form (with a session, so it carries a CSRF token), filled with ``values``;
    with ``error``, the error summary, the field's message and the error's status."""
    get_session(request, create=True)
    values = values or {}
    fields = []
    for f in spec.fields:
        d = f.as_dict()
        if f.name in values and f.type != "password":
            d["value"] = values[f.name]
        if error is not None and error.field == f.name:
            d["error"] = error.message
            d["detail"] = error.detail
        fields.append(d)
    errors = []
    if error is not None:
        names = {f.name for f in spec.fields if f.type != "hidden"}
        errors.append(
            {
                "field": error.field if error.field in names else None,
                "message": error.message,
                "detail": error.detail,
            }
        )
    ctx = {
        "form": {
            "title": spec.title,
            "intro": spec.intro,
            "action": spec.action,
            "submit": spec.submit,
            "fields": fields,
            "errors": errors,
        },
        **spec.extra,
        **(context or {}),
    }
    return page(request, template, ctx, status=error.status if error is not None else 200)


async def form_values(request: web.Request) -> dict[str, str]:
    """The posted fields as text (files and the CSRF token left out)."""
    data = await request.post()
    return {k: v for k, v in data.items() if isinstance(v, str) and k != "csrf_token"}


def see_other(location: str) -> web.HTTPSeeOther:
    """Redirect after post (303: the browser GETs the new page)."""
    return web.HTTPSeeOther(location)
