"""A running Kaseya BMS sandbox: the app served by uvicorn in a background thread."""

from __future__ import annotations

from datetime import datetime

from zk_pipelines.sandbox.kaseya.app import create_kaseya_app
from zk_pipelines.sandbox.kaseya.records import Login, login_of
from zk_pipelines.sandbox.kaseya.state import KaseyaState, Knobs
from zk_pipelines.sandbox.kaseya.tenants import KaseyaTenants
from zk_pipelines.sandbox.runtime import RunningServer
from zk_pipelines.sandbox.tenancy import SandboxTenant, ServedTenants


class KaseyaSandbox(ServedTenants[KaseyaState]):
    """`base_url` is the server root (the API is under `/v2`). `state` and the credentials are tenant 1's (the
    only tenant of a single-tenant sandbox); `tenants` lists every company, `tenant_state(t)` and `login(t)`
    address one by number, registry key (`sandbox_02`) or company name."""

    def __init__(self, tenants: KaseyaTenants, server: RunningServer) -> None:
        super().__init__(tenants, server)
        self.companies = tenants

    def __repr__(self) -> str:
        return f"KaseyaSandbox({self.base_url}, {len(self.tenants)} tenants)"

    def login(self, tenant: int | str | SandboxTenant = 1) -> Login:
        """The company's login: `tenant` (the company name), `username`, `password`."""
        return login_of(self.companies.tenant(tenant).number)

    @property
    def username(self) -> str:
        return self.login().username

    @property
    def password(self) -> str:
        return self.login().password

    @property
    def tenant(self) -> str:
        return self.login().tenant


def start_kaseya_sandbox(seed: int = 7, scale: str = "small", host: str = "127.0.0.1", port: int = 0,
                         token_lifetime_seconds: float = 1200, rate_limit: int = 1500,
                         seeded_at: datetime | None = None, tenants: int = 1) -> KaseyaSandbox:
    """Seed tenant 1 (its history laid out before `seeded_at`, default now; tenants 2..`tenants` as of the same
    moment, on their first use) and serve them; returns once the server accepts connections."""
    companies = KaseyaTenants(seed, scale, tenants, Knobs(token_lifetime_seconds=float(token_lifetime_seconds),
                                                          rate_limit=int(rate_limit)), seeded_at=seeded_at)
    server = RunningServer(create_kaseya_app(companies), host=host, port=port).start()
    return KaseyaSandbox(companies, server)
