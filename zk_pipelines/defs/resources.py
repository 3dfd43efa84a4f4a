"""Dagster resources: the one place where configuration enters from the environment (`EnvVar`)."""

from __future__ import annotations

import dagster as dg

from zk_pipelines.config import KaseyaCredentials
from zk_pipelines.secrets import Secret


class KaseyaResource(dg.ConfigurableResource):
    """Kaseya BMS credentials of the tenant; `credentials()` hands them to the client."""

    base_url: str
    username: str
    password: str
    tenant: str
    mfa_code: str | None = None
    hourly_call_budget: int = 1400

    def credentials(self) -> KaseyaCredentials:
        return KaseyaCredentials(
            base_url=self.base_url,
            username=self.username,
            password=Secret(self.password),
            tenant=self.tenant,
            mfa_code=Secret(self.mfa_code) if self.mfa_code else None,
            hourly_call_budget=self.hourly_call_budget,
        )


def resource_definitions() -> dict[str, dg.ConfigurableResource]:
    return {
        "kaseya": KaseyaResource(
            base_url=dg.EnvVar("KASEYA_BASE_URL"),
            username=dg.EnvVar("KASEYA_USERNAME"),
            password=dg.EnvVar("KASEYA_PASSWORD"),
            tenant=dg.EnvVar("KASEYA_TENANT"),
        ),
    }
