"""The dlt peer (benchmark-only dependency, `benchmarks/requirements.txt`): dlt's `rest_api` source
extracting the Kaseya endpoints our extract step reads into a DuckDB file, configured as a dlt user would
for this API.

- The three incremental lists with the same `Filter.ModifiedOnFrom/To` window as our run, merged on `id`;
  the snapshot lists (products and their five category scans, employees, statuses, account types,
  categories, warehouses, the five lookup tables) read whole, replaced.
- Paging: `page_number` from 1 with `PageSize=100`. Kaseya answers `totalRecords`, and dlt's page-number
  paginator only knows a total of *pages*, so it stops at the first empty page: one call more than the
  pages per paged list (dlt's documented behaviour for such an API).
- `--pricing N`: the three per-product endpoints as dependent resources for the first N distinct products
  (our extract step's budget, new products first; 0 on the hourly runs, when our prices are fresh).
- Login: one form POST before the source runs (dlt's `rest_api` has no form-login auth), bearer after.

    python benchmarks/dlt_peer.py REPORT WORKDIR --from ISO --to ISO [--pricing N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import requests
from measure import write_report

CATEGORIES = ("Hardware", "Software", "Managed Services", "Professional Services", "Bundles")
LOOKUPS = ("QuoteStatus", "LabourPeriod", "OpportunityType", "OpportunityRating", "LeadSource")
PAGED = {"paginator": {"type": "page_number", "base_page": 1, "page_param": "PageNumber", "total_path": None,
                       "stop_after_empty_page": True}}
SINGLE = {"paginator": "single_page"}


def kaseya_datetime(value: str) -> str:
    """ISO-8601 UTC -> Kaseya's naive UTC form with milliseconds (as our client sends it)."""
    return value.replace("+00:00", "").replace("Z", "")[:23]


def login(base_url: str) -> str:
    env = os.environ
    answer = requests.post(f"{base_url}/v2/security/authenticate", timeout=30, data={
        "UserName": env["KASEYA_USERNAME"], "Password": env["KASEYA_PASSWORD"], "Tenant": env["KASEYA_TENANT"],
        "GrantType": "password"})
    answer.raise_for_status()
    return answer.json()["result"]["accessToken"]


def source_config(base_url: str, token: str, window: tuple[str, str], pricing: int) -> dict[str, Any]:
    since, until = (kaseya_datetime(v) for v in window)

    def incremental(name: str, path: str) -> dict[str, Any]:
        return {"name": name, "write_disposition": "merge", "primary_key": "id",
                "endpoint": {"path": path, **PAGED, "params": {"PageSize": 100, "Filter.ModifiedOnFrom": since,
                                                               "Filter.ModifiedOnTo": until}}}

    def snapshot(name: str, path: str, *, paged: bool, **params: Any) -> dict[str, Any]:
        return {"name": name, "write_disposition": "replace",
                "endpoint": {"path": path, **(PAGED if paged else SINGLE),
                             "params": {"PageSize": 100, **params} if paged else params}}

    resources: list[dict[str, Any]] = [
        incremental("accounts", "crm/accounts/summary"),
        incremental("contacts", "crm/contacts/summary"),
        incremental("opportunities", "crm/opportunities"),
        snapshot("products", "inventory/products/searchselect", paged=True),
        *(snapshot(f"products_{c.lower().replace(' ', '_')}", "inventory/products/searchselect", paged=True,
                   **{"Filter.Category": c}) for c in CATEGORIES),
        snapshot("employees", "hr/employees/searchselect", paged=True),
        snapshot("product_categories", "inventory/products/categories/lookup", paged=True),
        snapshot("opportunity_statuses", "crm/opportunities/statuses/Lookup", paged=False),
        snapshot("account_types", "system/accounttypes/lookup", paged=False),
        snapshot("warehouses", "inventory/warehouses/lookup", paged=False),
        *(snapshot(f"lookup_{t.lower()}", f"system/lookup/{t}", paged=False) for t in LOOKUPS),
    ]
    if pricing:
        seen: set[int] = set()

        def first_distinct(row: dict[str, Any]) -> bool:
            index_id = int(row["productIndexId"])
            if index_id in seen or len(seen) >= pricing:
                return False
            seen.add(index_id)
            return True

        resources.append({"name": "priced_products", "write_disposition": "replace", "selected": False,
                          "endpoint": {"path": "inventory/products/searchselect", **PAGED,
                                       "params": {"PageSize": 100}},
                          "processing_steps": [{"filter": first_distinct}]})
        for name, path in (("pricing_levels", "pricingLevels"), ("suppliers", "suppliers/lookup"),
                           ("default_cost", "defaultcost")):
            resources.append({"name": name, "write_disposition": "replace", "include_from_parent": ["productIndexId"],
                              "endpoint": {"path": f"inventory/products/{{resources.priced_products.productIndexId}}/"
                                                   f"{path}", **SINGLE}})
    return {"client": {"base_url": f"{base_url}/v2/", "auth": {"type": "bearer", "token": token}},
            "resource_defaults": {"endpoint": {"data_selector": "result"}},
            "resources": resources}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--from", dest="since", required=True)
    parser.add_argument("--to", dest="until", required=True)
    parser.add_argument("--pricing", type=int, default=0)
    args = parser.parse_args(argv)

    started = time.monotonic()
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    import dlt  # noqa: PLC0415 - benchmark-only dependency, imported once the arguments are known
    from dlt.sources.rest_api import rest_api_source  # noqa: PLC0415

    imported = time.monotonic()
    base_url = os.environ["KASEYA_BASE_URL"].rstrip("/")
    source = rest_api_source(source_config(base_url, login(base_url), (args.since, args.until), args.pricing))
    args.workdir.mkdir(parents=True, exist_ok=True)
    pipeline = dlt.pipeline(pipeline_name="kaseya_peer", pipelines_dir=str(args.workdir / "pipelines"),
                            destination=dlt.destinations.duckdb(str(args.workdir / "extract.duckdb")),
                            dataset_name="kaseya", progress=None)
    pipeline.run(source)
    rows = dict(pipeline.last_trace.last_normalize_info.row_counts)
    write_report(args.report, {"success": True, "dlt_version": dlt.__version__,
                               "import_s": round(imported - started, 3),
                               "run_s": round(time.monotonic() - imported, 3), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
