"""Staging: raw payloads -> typed rows validated by pandera; valid rows to `stg.*`, the others to
`audit.rejects` with the record, the failed check and the offending value. One bad row never stops the
others."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from zk_pipelines.domain.incremental import ExtractionWindow
from zk_pipelines.domain.kaseya_staging import (
    ProductPricing,
    employee_emails,
    stage_accounts,
    stage_contacts,
    stage_employees,
    stage_opportunities,
    stage_opportunity_statuses,
    stage_products,
)
from zk_pipelines.domain.staging_schemas import validate_rows
from zk_pipelines.storage.database import connect
from zk_pipelines.storage.pull_store import (
    deferred_ids,
    insert_rejects,
    read_pricing,
    read_raw_ids,
    read_raw_window,
    read_snapshot,
    read_stg,
    stg_ids,
    upsert_stg,
)


# Checks of references (known_account, known_status): the record waits for its parent rather than being bad.
FOREIGN_KEY_CHECK = "known_"


@dataclass(frozen=True)
class StageReport:
    entity: str
    read: int
    staged: int
    rejected_records: int  # failed a check on their own content
    waiting_records: int  # only their account or status is not staged yet: retried every run, not bad
    rejects: pd.DataFrame  # one line per failed check

    @property
    def reject_share(self) -> float:
        judged = self.read - self.waiting_records
        return self.rejected_records / judged if judged else 0.0


def _staged_rows(connection, entity: str, window: ExtractionWindow | None) -> list[dict]:
    if entity in ("accounts", "contacts", "opportunities"):
        assert window is not None
        records = read_raw_window(connection, f"kaseya_{entity}", window.query_from, window.query_to)
        seen = {int(r.get("id") or r.get("Id") or 0) for r in records if isinstance(r, dict)}
        retry = [i for i in deferred_ids(connection, entity) if i not in seen]
        records += read_raw_ids(connection, f"kaseya_{entity}", retry)
        if entity == "contacts":
            return stage_contacts(records)
        emails = employee_emails(read_stg(connection, "employees").to_dict("records"))
        stage = stage_accounts if entity == "accounts" else stage_opportunities
        return stage(records, employee_emails=emails)
    if entity == "employees":
        return stage_employees(read_snapshot(connection, "kaseya_employees"))
    if entity == "opportunity_statuses":
        return stage_opportunity_statuses(read_snapshot(connection, "kaseya_opportunity_statuses"))
    if entity == "products":
        products = read_snapshot(connection, "kaseya_products")
        rows = [row for product in products for row in product.get("warehouseRows") or []]
        categories = {int(p["productIndexId"]): p["category"] for p in products if p.get("category")}
        pricing = {index_id: ProductPricing(tuple(p["pricing_levels"]), tuple(p["suppliers"]), p["default_cost"])
                   for index_id, p in read_pricing(connection).items()}
        return stage_products(rows, pricing, categories=categories)
    raise KeyError(entity)


def stage_entity(database: Path, entity: str, window: ExtractionWindow | None, *, run_id: str,
                 partition_key: str | None, now: datetime) -> StageReport:
    with connect(database) as connection:
        rows = _staged_rows(connection, entity, window)
        known = {"accounts": stg_ids(connection, "accounts"),
                 "opportunity_statuses": stg_ids(connection, "opportunity_statuses")}
        valid, rejects = validate_rows(entity, pd.DataFrame(rows), known_ids=known)
        staged = upsert_stg(connection, entity, valid, run_id=run_id, now=now)
        insert_rejects(connection, rejects, run_id=run_id, partition_key=partition_key, now=now)
    waiting_only = set()
    rejected = set()
    if len(rejects):
        for kaseya_id, checks in rejects.groupby("kaseya_id", dropna=False)["check"]:
            (waiting_only if all(str(c).startswith(FOREIGN_KEY_CHECK) for c in checks) else rejected).add(kaseya_id)
    return StageReport(entity=entity, read=len(rows), staged=staged, rejected_records=len(rejected),
                       waiting_records=len(waiting_only), rejects=rejects)
