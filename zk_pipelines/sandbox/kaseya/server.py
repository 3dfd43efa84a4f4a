"""A running Kaseya BMS sandbox: the app served by uvicorn in a background thread."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from zk_pipelines.sandbox.kaseya.app import create_kaseya_app
from zk_pipelines.sandbox.kaseya.records import PASSWORD, TENANT, USERNAME
from zk_pipelines.sandbox.kaseya.state import KaseyaState, Knobs
from zk_pipelines.sandbox.runtime import RunningServer


@dataclass
class KaseyaSandbox:
    """`base_url` is the server root (the API is under `/v2`); `state` is the Python side of the control
    surface. The credentials are the sandbox's own, fixed across the project."""

    state: KaseyaState
    server: RunningServer
    username: str = USERNAME
    password: str = field(default=PASSWORD, repr=False)
    tenant: str = TENANT

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> KaseyaSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_kaseya_sandbox(seed: int = 7, scale: str = "small", host: str = "127.0.0.1", port: int = 0,
                         token_lifetime_seconds: float = 1200, rate_limit: int = 1500,
                         seeded_at: datetime | None = None) -> KaseyaSandbox:
    """Seed a tenant (its history laid out before `seeded_at`, default now) and serve it; returns once the
    server accepts connections."""
    state = KaseyaState(seed, scale, Knobs(token_lifetime_seconds=float(token_lifetime_seconds),
                                           rate_limit=int(rate_limit)), seeded_at=seeded_at)
    server = RunningServer(create_kaseya_app(state), host=host, port=port).start()
    return KaseyaSandbox(state, server)
