"""The naive reference loop (a peer, never product code): every hour, fetch every Kaseya record and write
every record to Zomentum, one request at a time.

It reads the four lists whole (and every product's three pricing answers), maps them with the project's
own domain mappers (so the payloads are the pipeline's), then POSTs what it has never written and PUTs the
whole payload of everything else. Its only state is a JSON file of Kaseya key -> Zomentum id. It knows no
windows, no hashes, no matching, no validation: a record Zomentum refuses is counted and skipped. A Kaseya
endpoint that answers 429 (its hourly quota spent) is given up for this hour and counted.

    python benchmarks/naive_peer.py REPORT STATE_FILE      (the tenant from KASEYA_* / ZOMENTUM_*)
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
from contacts_per_record import stage_contacts
from measure import write_report

from zk_pipelines.clients.http import ApiError
from zk_pipelines.clients.zomentum import ZomentumClient
from zk_pipelines.config import ZomentumCredentials
from zk_pipelines.domain.kaseya_staging import (
    STAGING_PROBLEM,
    ProductPricing,
    stage_accounts,
    stage_opportunities,
    stage_products,
)
from zk_pipelines.domain.zomentum_mapping import map_client, map_client_user, map_item, map_opportunity
from zk_pipelines.secrets import Secret

PAGE_SIZE = 100
TIMEOUT = (5, 60)


class QuotaSpent(Exception):
    pass


class NaiveKaseya:
    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/") + "/v2"
        self.session = requests.Session()
        self.quota_blocked: Counter = Counter()

    def login(self, username: str, password: str, tenant: str) -> None:
        answer = self.session.post(f"{self.base}/security/authenticate", timeout=TIMEOUT, data={
            "UserName": username, "Password": password, "Tenant": tenant, "GrantType": "password"})
        answer.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {answer.json()['result']['accessToken']}"

    def get(self, path: str, **params: Any) -> Any:
        answer = self.session.get(f"{self.base}/{path}", params=params, timeout=TIMEOUT)
        if answer.status_code == 429:
            raise QuotaSpent(path)
        answer.raise_for_status()
        return answer.json()["result"]

    def every_page(self, path: str) -> Iterator[dict[str, Any]]:
        page = 1
        while True:
            try:
                rows = self.get(path, PageNumber=page, PageSize=PAGE_SIZE) or []
            except QuotaSpent:
                self.quota_blocked[path] += 1
                return
            yield from rows
            if len(rows) < PAGE_SIZE:
                return
            page += 1

    def pricing(self, index_id: int) -> ProductPricing | None:
        try:
            return ProductPricing(self.get(f"inventory/products/{index_id}/pricingLevels") or (),
                                  self.get(f"inventory/products/{index_id}/suppliers/lookup") or (),
                                  self.get(f"inventory/products/{index_id}/defaultcost"))
        except QuotaSpent:
            self.quota_blocked["inventory/products/{id}/pricing"] += 1
            return None


def readable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row for row in rows if row.get(STAGING_PROBLEM) is None]


def sync_everything(kaseya: NaiveKaseya, zomentum: ZomentumClient, ids: dict[str, dict[str, str]]
                    ) -> dict[str, Any]:
    outcomes: Counter = Counter()
    accounts = readable(stage_accounts(kaseya.every_page("crm/accounts/summary")))
    contacts = readable(stage_contacts(kaseya.every_page("crm/contacts/summary")))
    opportunities = readable(stage_opportunities(kaseya.every_page("crm/opportunities")))
    product_rows = list(kaseya.every_page("inventory/products/searchselect"))
    index_ids = sorted({int(row["productIndexId"]) for row in product_rows})
    pricing = {index_id: found for index_id in index_ids if (found := kaseya.pricing(index_id)) is not None}
    products = readable(stage_products(product_rows, pricing))

    owner = next(u["id"] for u in zomentum.iter_records("users") if u.get("email") == "api.user@msp.example")
    pipeline = next(p for p in zomentum.iter_records("pipelines") if p.get("is_default"))
    first_stage = min(pipeline["stages"], key=lambda s: s["order"])["id"]

    def owner_for(_email: str | None) -> str:
        return owner

    def stage_for(_status: int, _current: str | None) -> tuple[str, str]:
        return pipeline["id"], first_stage

    def write(kind: str, resource: str, key: int, payload: dict[str, Any]) -> None:
        known = ids.setdefault(kind, {}).get(str(key))
        try:
            if known is None:
                ids[kind][str(key)] = zomentum.create(resource, payload)["id"]
                outcomes[f"{kind} created"] += 1
            else:
                zomentum.update(resource, known, payload)
                outcomes[f"{kind} rewritten"] += 1
        except ApiError:
            outcomes[f"{kind} refused"] += 1

    for row in accounts:
        write("clients", "client/companies", row["kaseya_id"], map_client(row, owner_for))
    for row in contacts:
        client = ids["clients"].get(str(row["account_id"]))
        if client is None:
            outcomes["client_users skipped"] += 1
            continue
        write("client_users", "client/users", row["kaseya_id"], map_client_user(row, client))
    for row in opportunities:
        client = ids["clients"].get(str(row["account_id"]))
        contact = ids.get("client_users", {}).get(str(row["contact_id"])) if row.get("contact_id") else None
        if client is None:
            outcomes["opportunities skipped"] += 1
            continue
        write("opportunities", "opportunities", row["kaseya_id"],
              map_opportunity(row, client_id=client, contact_id=contact, owner_for=owner_for, stage_for=stage_for))
    for row in products:
        if row.get("pricing_levels") is None:
            outcomes["items skipped"] += 1
            continue
        write("items", "items", row["kaseya_id"], map_item(row))
    return {"records": {"accounts": len(accounts), "contacts": len(contacts), "opportunities": len(opportunities),
                        "products": len(products)},
            "outcomes": dict(sorted(outcomes.items())), "quota_blocked": dict(kaseya.quota_blocked)}


def main(argv: list[str]) -> int:
    report_path, state_path = Path(argv[0]), Path(argv[1])
    env = os.environ
    started = time.monotonic()
    ids = json.loads(state_path.read_text()) if state_path.exists() else {}
    kaseya = NaiveKaseya(env["KASEYA_BASE_URL"])
    kaseya.login(env["KASEYA_USERNAME"], env["KASEYA_PASSWORD"], env["KASEYA_TENANT"])
    zomentum = ZomentumClient(ZomentumCredentials(base_url=env["ZOMENTUM_BASE_URL"],
                                                  refresh_token=Secret(env["ZOMENTUM_REFRESH_TOKEN"])))
    report = sync_everything(kaseya, zomentum, ids)
    state_path.write_text(json.dumps(ids))
    report["success"] = True
    report["run_s"] = round(time.monotonic() - started, 3)
    write_report(report_path, report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
