"""What every web response carries and what every form post must show.

- :func:`headers_middleware`: the Content-Security-Policy (no inline scripts or
  styles; the pages need neither), nosniff and the referrer policy.
- :func:`csrf_middleware`: any POST (or other unsafe method) outside ``/sync/v1/``
  without its session's CSRF token (form field ``csrf_token`` or header
  ``X-CSRF-Token``) gets a 403. The sync API is signed-message traffic between nodes,
  with no cookies and no sessions.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

from .sessions import get_session

__all__ = ["CSP", "SECURITY_HEADERS", "csrf_middleware", "headers_middleware"]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
SYNC_PREFIX = "/sync/v1/"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _add_headers(response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


@web.middleware
async def headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _add_headers(exc)
        raise
    _add_headers(response)
    return response


async def _token_of(request: web.Request) -> str:
    header = request.headers.get("X-CSRF-Token")
    if header:
        return header
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()  # cached: the handler reads it again for free
        value = form.get("csrf_token")
        return value if isinstance(value, str) else ""
    return ""


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method in SAFE_METHODS or request.path.startswith(SYNC_PREFIX):
        return await handler(request)
    session = get_session(request)
    token = await _token_of(request)
    if session is None or not token or not hmac.compare_digest(token, session.csrf_token):
        raise web.HTTPForbidden(text="Error: missing or wrong CSRF token; reload the page\n")
    return await handler(request)
