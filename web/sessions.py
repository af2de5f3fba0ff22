"""Server-side sessions: in memory, bounded, expiring.

The cookie holds only a random id; everything else stays on the node. A session is
created when a page first needs one (a CSRF token for a form, a login), never for a
plain read. The accounts work fills :attr:`Session.account_id` and
:attr:`Session.signing_key` (the resident's unsealed key, kept only in memory while
logged in and dropped with the session).
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = [
    "COOKIE",
    "Session",
    "SessionStore",
    "get_session",
    "new_session",
    "session_middleware",
]

COOKIE = "fora_session"
#: A session ends after this long without a request, or this long after it began.
IDLE_SECONDS = 2 * 3600
MAX_AGE_SECONDS = 24 * 3600
#: At most this many sessions are held; the least recently used goes first.
MAX_SESSIONS = 10_000


@dataclass
class Session:
    id: str
    created: float
    seen: float
    csrf_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    #: Filled by the accounts work at login.
    account_id: int | None = None
    signing_key: Any = None
    data: dict[str, Any] = field(default_factory=dict)

    def clear_login(self) -> None:
        self.account_id = None
        self.signing_key = None


class SessionStore:
    """Sessions by id, least recently used first; ``clock`` is injectable for tests."""

    def __init__(
        self,
        *,
        max_sessions: int = MAX_SESSIONS,
        idle_seconds: float = IDLE_SECONDS,
        max_age_seconds: float = MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_sessions = max_sessions
        self.idle_seconds = idle_seconds
        self.max_age_seconds = max_age_seconds
        self.clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def _expired(self, session: Session, now: float) -> bool:
        return (
            now - session.seen >= self.idle_seconds or now - session.created >= self.max_age_seconds
        )

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = self.clock()
        if self._expired(session, now):
            self.drop(session_id)
            return None
        session.seen = now
        self._sessions.move_to_end(session_id)
        return session

    def create(self) -> Session:
        now = self.clock()
        # Drop expired sessions from the old end, then the least recently used.
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if self._expired(oldest, now) or len(self._sessions) >= self.max_sessions:
                self.drop(oldest.id)
            else:
                break
        session = Session(id=secrets.token_urlsafe(32), created=now, seen=now)
        self._sessions[session.id] = session
        return session

    def drop(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            session.clear_login()


_SESSION = web.RequestKey("fora_session", Session)
_NEW = web.RequestKey("fora_session_new", bool)
_STORE = web.RequestKey("fora_sessions", SessionStore)


def get_session(request: web.Request, *, create: bool = False) -> Session | None:
    """The request's session; with ``create``, start one (its cookie is set on the
    response by :func:`session_middleware`)."""
    session = request.get(_SESSION)
    if session is None and create:
        session = request[_STORE].create()
        request[_SESSION] = session
        request[_NEW] = True
    return session


def new_session(request: web.Request) -> Session:
    """Drop the request's session (if any) and start a fresh one: a login gets a new id
    and CSRF token, so an id planted before the login (session fixation) is worthless."""
    old = request.get(_SESSION)
    if old is not None:
        request[_STORE].drop(old.id)
        del request[_SESSION]
    request.pop(_NEW, None)
    session = get_session(request, create=True)
    assert session is not None
    return session


def session_middleware(store: SessionStore) -> Any:
    """Looks the request's session up (never creates one) and sets the cookie of a
    session the handler created. The sync API has no sessions."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        request[_STORE] = store
        if request.path.startswith("/sync/"):
            return await handler(request)  # type: ignore[no-any-return]
        session = store.get(request.cookies.get(COOKIE))
        if session is not None:
            request[_SESSION] = session
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPException as exc:
            _set_cookie(request, exc)
            raise
        _set_cookie(request, response)
        return response

    return middleware


def _set_cookie(request: web.Request, response: web.StreamResponse) -> None:
    if not request.get(_NEW):
        return
    session = request[_SESSION]
    response.set_cookie(
        COOKIE,
        session.id,
        httponly=True,
        samesite="Lax",
        secure=request.secure,
        path="/",
        max_age=int(request[_STORE].max_age_seconds),
    )
