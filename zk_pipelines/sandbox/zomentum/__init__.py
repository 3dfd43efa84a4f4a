"""A real HTTP server that behaves like Zomentum's REST API v2, for the demo and the tests.

    with start_zomentum_sandbox(seed=7, scale="small") as sandbox:
        sandbox.base_url        # server root; the API is under /v2
        sandbox.refresh_token   # the API user's refresh token
        sandbox.state           # records, knobs, clock, request log (see state.py)

With `tenants=N` one server holds N accounts, told apart by their tokens (`accounts.py`): `sandbox.state` and
`sandbox.refresh_token` are account 1's, `sandbox.tenant_state(n)` and `sandbox.refresh_token_of(n)` another's.

The contract it implements is `zomentum-api-notes.md`, known and assumed parts; `schema.py` and
`openapi.yaml` write the assumed parts down.
"""

from __future__ import annotations

from datetime import datetime

from zk_pipelines.sandbox.runtime import RunningServer
from zk_pipelines.sandbox.tenancy import SandboxTenant, ServedTenants
from zk_pipelines.sandbox.zomentum.accounts import ZomentumAccounts
from zk_pipelines.sandbox.zomentum.app import create_zomentum_app
from zk_pipelines.sandbox.zomentum.seed import API_USER_EMAIL
from zk_pipelines.sandbox.zomentum.state import REFRESH_TOKEN, ZomentumState, refresh_token_of


class ZomentumSandbox(ServedTenants[ZomentumState]):
    """A started sandbox server and its accounts; stop it with `stop()` or by leaving the `with` block.

    `state` and `refresh_token` are account 1's (the only account of a single-account sandbox); `tenants` lists
    every account, `tenant_state(t)` and `refresh_token_of(t)` address one by number or registry key
    (`sandbox_02`)."""

    def __init__(self, accounts: ZomentumAccounts, server: RunningServer) -> None:
        super().__init__(accounts, server)
        self.accounts = accounts

    def refresh_token_of(self, tenant: int | str | SandboxTenant) -> str:
        return refresh_token_of(self.accounts.tenant(tenant).number)

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/v2"

    @property
    def refresh_token(self) -> str:
        return REFRESH_TOKEN

    def __repr__(self) -> str:
        return (f"ZomentumSandbox({self.base_url}, seed={self.state.seed}, scale={self.state.scale!r}, "
                f"{len(self.tenants)} tenants)")


def start_zomentum_sandbox(
    seed: int = 7,
    scale: str = "small",
    host: str = "127.0.0.1",
    port: int = 0,
    access_token_lifetime_seconds: float = 86400.0,
    rate_limit: int | None = None,
    rate_limit_window_seconds: float = 60.0,
    seeded_at: datetime | None = None,
    tenants: int = 1,
) -> ZomentumSandbox:
    """Seed account 1 and start serving it on `host:port` (0 = a free port) in a background thread; accounts
    2..`tenants` are seeded on their first use, as of the same moment.

    `rate_limit` is the number of requests one access token may make per `rate_limit_window_seconds`
    (None: unlimited); past it the API answers 429 with `Retry-After`. `seeded_at`: the moment the accounts'
    history is laid out before (default: now).
    """
    accounts = ZomentumAccounts(seed, scale, tenants, access_token_lifetime_seconds=access_token_lifetime_seconds,
                                rate_limit=rate_limit, rate_limit_window_seconds=rate_limit_window_seconds,
                                seeded_at=seeded_at)
    server = RunningServer(create_zomentum_app(accounts), host=host, port=port).start()
    return ZomentumSandbox(accounts, server)


__all__ = ["API_USER_EMAIL", "REFRESH_TOKEN", "ZomentumAccounts", "ZomentumSandbox", "ZomentumState",
           "create_zomentum_app", "refresh_token_of", "start_zomentum_sandbox"]
