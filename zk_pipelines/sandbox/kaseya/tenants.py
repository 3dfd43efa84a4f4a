"""The Kaseya companies one sandbox server holds, and how a request finds its own.

Kaseya tells companies apart at login, by the form's `Tenant` (the company name); from then on the bearer
token alone says whose data a call reads. So each company keeps its tokens in its own state, and a request
goes to the company whose store issued its token (a token refresh: the access token it names). The API has
no tenant parameter: a token of company A cannot address company B.

A request that names no company of the server (a wrong `Tenant`, an unknown or missing token, no route) is
answered by tenant 1, exactly as a single-tenant sandbox answers it, and shows in tenant 1's request log.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from zk_pipelines.sandbox.kaseya.records import login_of
from zk_pipelines.sandbox.kaseya.state import KaseyaState, Knobs
from zk_pipelines.sandbox.tenancy import SandboxTenant, TenantStates, sandbox_tenants
from zk_pipelines.sandbox.world import SCALES


class KaseyaTenants(TenantStates[KaseyaState]):
    """`count` companies, tenant n seeded from `sandbox_tenants(seed, count)[n-1]` on its first use, each with
    `knobs` to start with. Addressed by number, registry key (`sandbox_02`) or company name."""

    def __init__(self, seed: int = 7, scale: str = "small", count: int = 1, knobs: Knobs | None = None,
                 seeded_at: datetime | None = None, *, first: KaseyaState | None = None) -> None:
        if scale not in SCALES:
            raise ValueError(f"unknown scale {scale!r} (known: {', '.join(SCALES)})")
        moment = seeded_at or datetime.now(UTC)

        def seed_company(tenant: SandboxTenant) -> KaseyaState:
            return KaseyaState(tenant.seed, scale, knobs, seeded_at=moment, number=tenant.number)

        super().__init__(sandbox_tenants(seed, count), seed_company,
                         names=lambda tenant: (login_of(tenant.number).tenant,), first=first)

    @classmethod
    def of_one(cls, state: KaseyaState) -> KaseyaTenants:
        """A server of one company whose state exists already."""
        return cls(state.seed, state.scale, first=state)

    def for_token(self, access_token: str | None) -> KaseyaState | None:
        """The company that issued the access token, if any did."""
        return next((state for state in self.seeded() if state.tokens.holds(access_token)), None)

    def for_form(self, form: Mapping[str, Any] | None) -> KaseyaState | None:
        """The company a login names (`Tenant`) or whose access token a refresh names (`AccessToken`)."""
        fields = {str(k).lower(): str(v) for k, v in (form or {}).items()}
        if "tenant" in fields:
            name = fields["tenant"].strip()
            try:
                tenant = self.tenant(name)
            except KeyError:
                return None
            if login_of(tenant.number).tenant.casefold() != name.casefold():  # a number or key is no company name
                return None
            return self.state(tenant)
        return self.for_token(fields.get("accesstoken"))
