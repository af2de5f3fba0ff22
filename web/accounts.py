"""Residents' accounts in the browser: register, log in, log out; who is asking; and
publishing a message in a resident's (or the community's) name.

- Registering makes the resident's Ed25519 key on the node and keeps it sealed under
  their password (``web/keys.py``); the account is ``pending`` until an admin or
  official approves it (``web/admin.py``), which publishes the ``grant``.
- Logging in unseals the key into the server-side session (memory only); logging out,
  the session's expiry or a restart drops it. A new session id is issued at login.
- Logins are throttled per name and per address (``web/throttle.py``): a throttled
  login is answered 429 with how long to wait, without checking the password.
- A pending or rejected account can log in, but only to see its status on ``/me``
  (and download its data or key): every form that publishes refuses it with 403.
- Every publish goes through :func:`publish_as`: the message's schema, then
  ``node.publish.check_effect`` (what would have no effect is refused with the reason),
  then the node's ``Ingestor`` (checked, stored on the writer thread, and pushed to every
  peer at once, like a message that arrived by sync).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.appkeys import COMMUNITY_ID, CONFIG, INGESTOR, SESSIONS, STORE
from node.clock import now_ms
from node.folder import NodeError, read_key
from node.publish import check_effect
from protocol import kinds, signing
from protocol.errors import LocalProtocolError, ProtocolError, Result
from protocol.messages import Message, create_message
from storage import accounts as acc
from storage.roles import ADMIN_ROLES, MODERATOR_ROLES, OFFICIAL_ROLES, RoleCache

from . import keys
from .formkit import N_ as _  # marks texts for translation (scripts/i18n)
from .formkit import (
    Field,
    FormError,
    FormSpec,
    form_page,
    form_values,
    schema_field,
    see_other,
)
from .sessions import get_session, new_session
from .throttle import LoginThrottle, Policy, address_key

__all__ = [
    "ACCOUNTS",
    "AccountsState",
    "Viewer",
    "accounts_ctx",
    "announce",
    "publish_as",
    "require_member",
    "require_role",
    "require_viewer",
    "viewer",
]

log = logging.getLogger("fora.web")


REGISTRATION_POLICY = Policy(free=4, base=60.0, factor=2.0, cap=3600.0)


@dataclass
class AccountsState:
    """What the accounts work holds: the community key (to sign approvals' grants),
    the scrypt cost of new records, and the login throttle. Mutable so tests can lower
    the scrypt cost of a running node."""

    community_key: Ed25519PrivateKey | None = None
    params: keys.ScryptParams = keys.DEFAULT_PARAMS
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    #: Registrations per address (each costs a full scrypt derivation): 5 in a row
    #: free (forgotten an hour after the last), then 1 minute, 2, 4 ... up to an hour.
    registrations: LoginThrottle = field(
        default_factory=lambda: LoginThrottle(
            account_policy=REGISTRATION_POLICY, address_policy=REGISTRATION_POLICY
        )
    )


ACCOUNTS = web.AppKey("accounts", AccountsState)


async def accounts_ctx(app: web.Application) -> AsyncIterator[None]:
    """Read the community key (off the loop) for the grants that approvals publish."""
    state = app[ACCOUNTS]
    if state.community_key is None:
        state.community_key = await asyncio.to_thread(read_key, app[CONFIG].key_path)
    yield


# -- who is asking ---------------------------------------------------------------------


@dataclass(frozen=True)
class Viewer:
    """A logged-in resident: their account, unsealed key, and roles now."""

    account: acc.Account
    key: Ed25519PrivateKey
    roles: frozenset[str]

    @property
    def public_key(self) -> bytes:
        return self.account.public_key

    @property
    def approved(self) -> bool:
        return self.account.status == "approved"

    def holds(self, roles: frozenset[str]) -> bool:
        return bool(self.roles & roles)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.account.name,
            "display_name": self.account.display_name,
            "key": self.public_key.hex(),
            "status": self.account.status,
            "roles": sorted(self.roles),
        }


ALL_ROLES = ("member", "moderator", "official", "admin")


def _roles_now(db: Any, community: bytes, key: bytes, now: int) -> frozenset[str]:
    cache = RoleCache(db.conn)
    return frozenset(r for r in ALL_ROLES if cache.holds(community, key, now, frozenset({r})))


def _viewer_data(
    db: Any, account_id: int, community: bytes, now: int
) -> tuple[acc.Account | None, frozenset[str]]:
    account = acc.get_account_by_id(db, account_id)
    if account is None:
        return None, frozenset()
    return account, _roles_now(db, community, account.public_key, now)


async def viewer(request: web.Request) -> Viewer | None:
    """The logged-in resident of this request, or None."""
    session = get_session(request)
    if session is None or session.account_id is None or session.signing_key is None:
        return None
    account, roles = await request.app[STORE].read(
        _viewer_data, session.account_id, request.app[COMMUNITY_ID], now_ms()
    )
    if account is None:
        session.clear_login()
        return None
    return Viewer(account, session.signing_key, roles)


def _to_login(request: web.Request) -> web.HTTPSeeOther:
    return see_other("/login?next=" + quote(request.path_qs, safe=""))


async def require_viewer(request: web.Request) -> Viewer:
    """The logged-in resident; anyone else is sent to the login page."""
    who = await viewer(request)
    if who is None:
        raise _to_login(request)
    return who


def _refusal(request: web.Request, message: str, status: int = 403) -> web.HTTPException:
    from .render import page

    response = page(request, "refused.html", {"error": message}, status=status)
    exc_class = web.HTTPForbidden if status == 403 else web.HTTPBadRequest
    return exc_class(text=response.text, content_type=response.content_type)


async def require_member(request: web.Request) -> Viewer:
    """A logged-in resident whose account is approved and who holds a role now."""
    who = await require_viewer(request)
    if not who.approved:
        raise _refusal(request, _("Your account is waiting for approval, or was rejected."))
    if not who.roles:
        raise _refusal(request, _("You hold no role in this community now."))
    return who


async def require_role(request: web.Request, roles: frozenset[str]) -> Viewer:
    who = await require_member(request)
    if not who.holds(roles):
        raise _refusal(request, _("This page is for moderators, officials or admins."))
    return who


MODERATORS = MODERATOR_ROLES
OFFICIALS_OR_ADMINS = OFFICIAL_ROLES | ADMIN_ROLES


# -- publishing --------------------------------------------------------------------------


def announce(request: web.Request, messages: Sequence[Message]) -> None:
    """Tell the node's listeners (the peer manager's live push) of messages stored
    outside the Ingestor (an approval's grant, written with its account change)."""
    if not messages:
        return
    ids, raws = [m.id for m in messages], [m.raw for m in messages]
    for listener in request.app[INGESTOR].listeners:
        listener(ids, raws, None)


async def publish_as(
    request: web.Request,
    key: Ed25519PrivateKey,
    kind: str,
    fields: dict[str, Any],
    refs: Sequence[bytes] = (),
) -> Message:
    """Sign ``kind`` with ``key`` in this node's community, refuse it (:class:`FormError`)
    if it is malformed or would have no effect, else store it and push it to peers."""
    community = request.app[COMMUNITY_ID]
    author = signing.public_key_bytes(key)
    try:
        kinds.check_body(kind, fields, refs)
    except ProtocolError as exc:
        detail = str(exc)
        raise FormError(
            _("This cannot be published as it is"), schema_field(detail), detail=detail
        ) from None
    ts = now_ms()
    try:
        await request.app[STORE].read(check_effect, author, community, kind, fields, refs, ts)
    except NodeError as exc:
        raise FormError(_("This would have no effect"), None, detail=str(exc), status=409) from None
    try:
        message = create_message(
            key, kind=kind, community=community, ts=ts, fields=fields, refs=refs
        )
    except LocalProtocolError as exc:
        raise FormError(_("This cannot be published as it is"), None, detail=str(exc)) from None
    (result,) = await request.app[INGESTOR].ingest([message.raw])
    if result.result is not Result.OK:
        raise FormError(
            _("The node did not store this message"),
            None,
            detail=f"{result.result.value} {result.detail or ''}".strip(),
            status=409,
        )
    return message


# -- register, log in, log out ---------------------------------------------------------


def _register_spec() -> FormSpec:
    return FormSpec(
        title=_("Register"),
        action="/register",
        submit=_("Register"),
        intro=_(
            "The node makes your key and keeps it sealed under your password. An admin"
            " approves new residents before they can take part."
        ),
        fields=[
            Field(
                "name",
                _("Name"),
                hint=_("2 to 40 letters, digits, spaces and - _ . '"),
                autocomplete="username",
                maxlength=acc.MAX_NAME,
            ),
            Field(
                "display_name",
                _("Display name"),
                required=False,
                autocomplete="nickname",
                maxlength=acc.MAX_DISPLAY_NAME,
            ),
            Field(
                "password",
                _("Password"),
                "password",
                hint=_("At least 8 characters."),
                autocomplete="new-password",
            ),
            Field("password2", _("Password again"), "password", autocomplete="new-password"),
        ],
    )


async def register_form(request: web.Request) -> web.Response:
    return form_page(request, _register_spec())


async def register(request: web.Request) -> web.Response:
    values = await form_values(request)
    spec = _register_spec()
    state = request.app[ACCOUNTS]
    name = values.get("name", "")
    display = values.get("display_name", "").strip() or name
    password = values.get("password", "")
    try:
        try:
            name = acc.check_name(name)
        except acc.AccountError as exc:
            raise FormError(_("Choose another name"), "name", detail=str(exc)) from None
        try:
            display = acc.check_display_name(display)
        except acc.AccountError as exc:
            raise FormError(
                _("Choose another display name"), "display_name", detail=str(exc)
            ) from None
        try:
            keys.check_password(password)
        except keys.PasswordError as exc:
            raise FormError(_("Choose another password"), "password", detail=str(exc)) from None
        if password != values.get("password2", ""):
            raise FormError(_("The two passwords differ"), "password2")
        address = address_key(request.remote or "")
        wait = state.registrations.wait(address, address)
        if wait > 0:
            raise FormError(
                _("Too many registrations from your address: wait before trying again"),
                None,
                detail=f"{int(wait) + 1} s",
                status=429,
            )
        state.registrations.failed(address, address)
        key, sealed = await asyncio.to_thread(keys.new_resident, password, state.params)
        try:
            account = await request.app[STORE].write(
                acc.create_account,
                name=name,
                display_name=display,
                password=sealed.password,
                sealed_key=sealed.sealed_key,
                public_key=signing.public_key_bytes(key),
                now=now_ms(),
            )
        except acc.NameTaken:
            raise FormError(_("This name is taken, or reads like one in use"), "name") from None
        except acc.AccountError as exc:
            raise FormError(_("Choose another name"), "name", detail=str(exc)) from None
    except FormError as exc:
        return form_page(request, spec, values, exc)
    session = new_session(request)
    session.account_id = account.id
    session.signing_key = key
    raise see_other("/me")


def _login_spec(next_url: str) -> FormSpec:
    return FormSpec(
        title=_("Log in"),
        action="/login",
        submit=_("Log in"),
        fields=[
            Field("name", _("Name"), autocomplete="username"),
            Field("password", _("Password"), "password", autocomplete="current-password"),
            Field("next", "next", "hidden", required=False, value=next_url),
        ],
    )


def _safe_next(value: str) -> str:
    """A local path to go to after login (never another site)."""
    if value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/me"


async def login_form(request: web.Request) -> web.Response:
    return form_page(request, _login_spec(_safe_next(request.query.get("next", "/me"))))


async def login(request: web.Request) -> web.Response:
    values = await form_values(request)
    next_url = _safe_next(values.get("next", "/me"))
    spec = _login_spec(next_url)
    state = request.app[ACCOUNTS]
    name = values.get("name", "")[: acc.MAX_NAME * 4]  # no name is longer; cap the work
    password = values.get("password", "")
    if len(password) > keys.MAX_PASSWORD * 4:
        password = ""  # no password is that long: fails like any wrong one
    try:
        throttle_key = acc.name_key(name)[:100]
    except Exception:
        throttle_key = name[:100]
    address = request.remote or ""
    wait = state.throttle.wait(throttle_key, address)
    if wait > 0:
        error = FormError(
            _("Too many failed logins: wait before trying again"),
            None,
            detail=f"{int(wait) + 1} s",
            status=429,
        )
        response = form_page(request, spec, values, error)
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    account = await request.app[STORE].read(acc.get_account, name) if name else None
    try:
        key = await asyncio.to_thread(keys.login, account, password, state.params)
    except keys.LoginFailed:
        state.throttle.failed(throttle_key, address)
        return form_page(
            request, spec, values, FormError(_("Wrong name or password"), "name", status=401)
        )
    except keys.SealedKeyError as exc:
        log.error("account %r: %s", name, exc)
        return form_page(
            request,
            spec,
            values,
            FormError(_("Your stored key is damaged: ask the node's admin"), None, status=500),
        )
    assert account is not None
    state.throttle.succeeded(throttle_key, address)
    if keys.needs_rehash(account.password, state.params):
        # A record made at a lower cost: re-seal it under today's parameters.
        sealed = await asyncio.to_thread(
            keys.change_password,
            password,
            password,
            keys.Sealed(account.password, account.sealed_key),
            account.public_key,
            state.params,
        )
        with contextlib.suppress(acc.AccountError):  # changed meanwhile: next login
            await request.app[STORE].write(
                acc.set_password_record,
                account.id,
                old_password=account.password,
                password=sealed.password,
                sealed_key=sealed.sealed_key,
            )
    session = new_session(request)
    session.account_id = account.id
    session.signing_key = key
    raise see_other(next_url)


async def logout(request: web.Request) -> web.Response:
    session = get_session(request)
    if session is not None:
        request.app[SESSIONS].drop(session.id)
    raise see_other("/")


ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/register", register_form),
    ("POST", "/register", register),
    ("GET", "/login", login_form),
    ("POST", "/login", login),
    ("POST", "/logout", logout),
]
