"""The Zomentum accounts one sandbox server holds, and how a request finds its own.

Zomentum tells accounts apart by their tokens alone: the refresh call (`GET /v2/auth0/access_token`) names the
account's refresh token, and every other call carries the access token a refresh gave. So each account keeps
its tokens in its own state, and a request goes to the account that issued its token. The API has no account
parameter: a token of account A cannot address account B.

A request that names no account of the server (an unknown refresh or access token, none, no route) is
answered by account 1, exactly as a single-account sandbox answers it, and shows in account 1's request log.
"""

from __future__ import annotations

from datetime import UTC, datetime

from zk_pipelines.sandbox.tenancy import SandboxTenant, TenantStates, sandbox_tenants
from zk_pipelines.sandbox.world import SCALES
from zk_pipelines.sandbox.zomentum.schema import bad_request
from zk_pipelines.sandbox.zomentum.state import ZomentumState, refresh_token_of


class ZomentumAccounts(TenantStates[ZomentumState]):
    """`count` accounts, account n seeded from `sandbox_tenants(seed, count)[n-1]` on its first use, each with the
    given knobs to start with. Addressed by number or registry key (`sandbox_02`)."""

    def __init__(self, seed: int = 7, scale: str = "small", count: int = 1, *,
                 access_token_lifetime_seconds: float = 86400.0, rate_limit: int | None = None,
                 rate_limit_window_seconds: float = 60.0, seeded_at: datetime | None = None,
                 first: ZomentumState | None = None) -> None:
        if scale not in SCALES:
            raise bad_request("scale", f"{scale!r} is not one of {', '.join(SCALES)}")
        moment = seeded_at or datetime.now(UTC)

        def seed_account(tenant: SandboxTenant) -> ZomentumState:
            return ZomentumState(tenant.seed, scale, access_token_lifetime_seconds=access_token_lifetime_seconds,
                                 rate_limit=rate_limit, rate_limit_window_seconds=rate_limit_window_seconds,
                                 seeded_at=moment, number=tenant.number)

        tenants = sandbox_tenants(seed, count)
        self._by_refresh_token = {refresh_token_of(tenant.number): tenant for tenant in tenants}
        super().__init__(tenants, seed_account, first=first)

    @classmethod
    def of_one(cls, state: ZomentumState) -> ZomentumAccounts:
        """A server of one account whose state exists already."""
        return cls(state.seed, state.scale, first=state)

    def for_refresh_token(self, refresh_token: str | None) -> ZomentumState | None:
        """The account whose refresh token this is (seeded now if this is its first use)."""
        tenant = self._by_refresh_token.get(refresh_token or "")
        return self.state(tenant) if tenant is not None else None

    def for_authorization(self, authorization: str | None) -> ZomentumState | None:
        """The account that issued the `Bearer` access token, if any did."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return next((state for state in self.seeded() if state.holds(token.strip())), None)
