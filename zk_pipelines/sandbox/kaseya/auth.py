"""Login, token refresh and "who am I", as `kaseya-bms-notes.md` describes them.

Login takes form fields (urlencoded or multipart; field names in any case): `UserName`, `Password`, `Tenant`
(the company *name*), `GrantType=password`. Wrong credentials are HTTP 200 with `success:false`, and a wrong
tenant gets a message of its own. Tokens are opaque; their lifetimes run on the sandbox clock. A refresh
returns a new pair and retires the old one, so the old access token stops working at once.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from zk_pipelines.sandbox.kaseya import dto
from zk_pipelines.sandbox.kaseya.dto import wire_datetime
from zk_pipelines.sandbox.kaseya.routing import ApiFailure, Call, Invalid, Reply, routes


def no_api_access(username: str) -> str:
    return (f"The user {username} does not have API access: give the user's role 'Has API Access' "
            "(Admin > Roles) in Kaseya BMS.")


@dataclass
class Grant:
    user_id: int
    refresh_token: str
    access_expires: datetime
    refresh_expires: datetime

    def __repr__(self) -> str:  # never show a token
        return f"Grant(user_id={self.user_id}, access_expires={self.access_expires.isoformat()})"


class TokenStore:
    """Access token -> grant. Tokens are kept out of every repr and log line."""

    def __init__(self) -> None:
        self._grants: dict[str, Grant] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TokenStore({len(self._grants)} grants)"

    def clear(self) -> None:
        with self._lock:
            self._grants.clear()

    def issue(self, user_id: int, now: datetime, access_lifetime: float, refresh_lifetime: float
              ) -> tuple[str, Grant]:
        access = secrets.token_urlsafe(32)
        grant = Grant(user_id, secrets.token_urlsafe(32), now + timedelta(seconds=access_lifetime),
                      now + timedelta(seconds=refresh_lifetime))
        with self._lock:
            self._grants[access] = grant
        return access, grant

    def holds(self, access: str | None) -> bool:
        """Whether this store issued the access token (expired or not): how a request finds its tenant."""
        with self._lock:
            return (access or "") in self._grants

    def resolve(self, access: str | None, now: datetime) -> Grant:
        """The grant of a bearer token, or a 401."""
        with self._lock:
            grant = self._grants.get(access or "")
        if grant is None:
            raise ApiFailure(401, "The access token is missing or not valid.",
                             headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if now >= grant.access_expires:
            raise ApiFailure(401, "The access token has expired.",
                             headers={"WWW-Authenticate": 'Bearer error="invalid_token", '
                                                          'error_description="The token expired"'})
        return grant

    def exchange(self, access: str, refresh: str, now: datetime) -> Grant:
        """Retire the pair (access, refresh) and return its grant, or refuse with success:false."""
        with self._lock:
            grant = self._grants.get(access)
            if grant is None or not secrets.compare_digest(grant.refresh_token, refresh):
                raise Invalid("The refresh token is not valid for this access token.", code=401)
            if now >= grant.refresh_expires:
                raise Invalid("The refresh token has expired; authenticate again.", code=401)
            del self._grants[access]
        return grant


def _form(call: Call) -> dict[str, str]:
    """Form fields by lower-cased name (Kaseya ignores the case of field names)."""
    return {str(k).lower(): str(v) for k, v in (call.body or {}).items()}


def _required(form: dict[str, str], *names: str) -> list[str]:
    return [f"The {name} field is required." for name in names if not form.get(name.lower(), "").strip()]


def _tokens(call: Call, user_id: int) -> Reply:
    knobs = call.state.knobs
    access, grant = call.state.tokens.issue(user_id, call.now, knobs.token_lifetime_seconds,
                                            knobs.refresh_token_lifetime_seconds)
    return Reply(dto.render("TokenOutputDto", AccessToken=access, RefreshToken=grant.refresh_token,
                            AccessTokenExpireOn=wire_datetime(grant.access_expires),
                            RefreshTokenExpireOn=wire_datetime(grant.refresh_expires)))


def authenticate(call: Call) -> Reply:
    form = _form(call)
    problems = _required(form, "UserName", "Password", "Tenant", "GrantType")
    if problems:
        raise Invalid(problems)
    if form["granttype"].strip().lower() != "password":
        raise Invalid(f"GrantType '{form['granttype']}' is not supported here; use 'password'.")
    tenant, login = form["tenant"].strip(), call.state.login
    if tenant.casefold() != login.tenant.casefold():
        raise Invalid(f"Tenant '{tenant}' was not found: Tenant is the company name as shown in Kaseya BMS.",
                      code=401)
    if form["username"].strip().casefold() != login.username.casefold() or form["password"] != login.password:
        raise Invalid("Invalid username or password.", code=401)
    if not call.state.knobs.api_access:
        raise Invalid(no_api_access(login.username), code=403)
    return _tokens(call, call.tenant.api_user_id)


def refresh_token(call: Call) -> Reply:
    form = _form(call)
    problems = _required(form, "AccessToken", "RefreshToken")
    if problems:
        raise Invalid(problems)
    grant = call.state.tokens.exchange(form["accesstoken"], form["refreshtoken"], call.now)
    if not call.state.knobs.api_access:
        raise Invalid(no_api_access(call.state.login.username), code=403)
    return _tokens(call, grant.user_id)


def user_info(call: Call) -> Reply:
    tenant = call.tenant
    user = tenant.employees[call.user_id]
    result: dict[str, Any] = dto.render("UserInfoOutputDto",
        UserId=user.id, FullName=user.full_name, EmailAddress=user.email_address, TimeStamp=wire_datetime(call.now),
        TimeZoneValue=0.0, TimeZoneName="(UTC) Coordinated Universal Time", OlsonTimeZoneName="Etc/UTC",
        DateFormat="MM/dd/yyyy", TimeFormat="hh:mm tt", TimeFormatWithSeconds="hh:mm:ss tt",
        TenantId=tenant.tenant_id, BusinessName=tenant.name, UserAccessRights=[], SpecialFeatures=[], ViewsMenus=[],
        QueuesMenus=[], CurrencyCode="USD", CultureCode="en-US", FilesVersionNumber="2.0", NewTicketingUI=True,
        IsUserSystemAdmin=False, ProductName="Kaseya BMS",
    )
    return Reply(result)


# Login and token refresh take a form and need no bearer token.
ROUTES = routes({
    "POST /v2/security/authenticate": authenticate,
    "POST /v2/security/refreshtoken": refresh_token,
}, anonymous=True, form=True) + routes({
    "GET /v2/security/userinfo": user_info,
})
