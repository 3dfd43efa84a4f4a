"""The result of probing one endpoint for `zk check`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EndpointCheck:
    api: str  # "kaseya" | "zomentum"
    endpoint: str  # e.g. "GET /v2/crm/accounts/summary"
    ok: bool
    detail: str  # "ok", or the precise reason a person can act on

    def line(self) -> str:
        status = "ok" if self.ok else "FAILED"
        return f"{self.api:<9} {status:<6} {self.endpoint}" + ("" if self.ok else f"  - {self.detail}")
