"""The names that exist in the live systems, as the settings check needs them.

`kaseya_catalog_from_rows` and `zomentum_catalog_from_records` are pure: `zk settings check` feeds them
what the clients read now, and the pipeline feeds them the lookup snapshots it extracted, so both resolve
the settings the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from zk_pipelines.clients.kaseya import KaseyaClient
from zk_pipelines.clients.zomentum import ZomentumClient
from zk_pipelines.clients.zomentum_models import Pipeline
from zk_pipelines.domain.kaseya_staging import read_field
from zk_pipelines.domain.settings_check import KaseyaCatalog, ZomentumCatalog, ZomentumPipeline, ZomentumStage

KASEYA_CATALOG_SOURCES = ("opportunity_statuses", "quote_statuses", "warehouses", "product_categories",
                          "labour_periods", "employees")


def _active(row: Mapping[str, Any]) -> bool:
    return read_field(row, "IsActive") is not False


def _names(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    return {read_field(r, "Name"): int(read_field(r, "Id")) for r in rows
            if _active(r) and read_field(r, "Name") is not None}


def kaseya_catalog_from_rows(rows: Mapping[str, Iterable[Mapping[str, Any]]]) -> KaseyaCatalog:
    """`rows` holds Kaseya's answers keyed by KASEYA_CATALOG_SOURCES."""
    employees = {str(read_field(r, "EmailAddress")).lower(): int(read_field(r, "Id")) for r in rows["employees"]
                 if _active(r) and read_field(r, "EmailAddress")}
    return KaseyaCatalog(
        opportunity_statuses=_names(rows["opportunity_statuses"]),
        quote_statuses=_names(rows["quote_statuses"]),
        warehouses=_names(rows["warehouses"]),
        product_categories=_names(rows["product_categories"]),
        labour_periods=_names(rows["labour_periods"]),
        employees=employees,
    )


def zomentum_catalog_from_records(pipelines: Iterable[Pipeline], users: Iterable[Mapping[str, Any]]
                                  ) -> ZomentumCatalog:
    return ZomentumCatalog(
        pipelines=tuple(
            ZomentumPipeline(id=p.id, name=p.name, is_default=p.is_default,
                             stages=tuple(ZomentumStage(id=s.id, name=s.name, kind=s.kind) for s in p.stages))
            for p in pipelines
        ),
        users={u["email"].lower(): u["id"] for u in users if u.get("is_active", True) and u.get("email")},
    )


def read_kaseya_catalog_rows(client: KaseyaClient) -> dict[str, list[Any]]:
    return {
        "opportunity_statuses": client.opportunity_statuses(),
        "quote_statuses": client.lookup("quote_statuses"),
        "warehouses": client.warehouses(),
        "product_categories": client.product_categories(),
        "labour_periods": client.lookup("labour_periods"),
        "employees": client.employees(),
    }


def fetch_kaseya_catalog(client: KaseyaClient) -> KaseyaCatalog:
    return kaseya_catalog_from_rows(read_kaseya_catalog_rows(client))


def fetch_zomentum_catalog(client: ZomentumClient) -> ZomentumCatalog:
    return zomentum_catalog_from_records(client.pipelines(), client.users())


def catalogs_to_json(kaseya: KaseyaCatalog, zomentum: ZomentumCatalog) -> dict[str, Any]:
    return {
        "kaseya": {name: dict(getattr(kaseya, name)) for name in KASEYA_CATALOG_SOURCES},
        "zomentum": {
            "pipelines": [{"id": p.id, "name": p.name, "is_default": p.is_default,
                           "stages": [{"id": s.id, "name": s.name, "kind": s.kind} for s in p.stages]}
                          for p in zomentum.pipelines],
            "users": dict(zomentum.users),
        },
    }


def catalogs_from_json(data: Mapping[str, Any]) -> tuple[KaseyaCatalog, ZomentumCatalog]:
    kaseya = KaseyaCatalog(**{name: {k: int(v) for k, v in data["kaseya"][name].items()}
                              for name in KASEYA_CATALOG_SOURCES})
    zomentum = ZomentumCatalog(
        pipelines=tuple(ZomentumPipeline(id=p["id"], name=p["name"], is_default=p["is_default"],
                                         stages=tuple(ZomentumStage(**s) for s in p["stages"]))
                        for p in data["zomentum"]["pipelines"]),
        users=dict(data["zomentum"]["users"]),
    )
    return kaseya, zomentum
