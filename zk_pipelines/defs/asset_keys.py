"""Every asset key of the project, made here: one component, `<layer>_<table>`, dbt's naming (the asset
`stg_kaseya_accounts` is the table `stg.kaseya_accounts`).

Dagster's asset graph labels a node with the last component of its key and has no display name (an open
request, dagster-io/dagster#25555): keys of two components, `raw/kaseya_accounts` and `stg/kaseya_accounts`,
both read "kaseya_accounts" there. With the layer in the name, every label says which table it is. The layer
is also the asset's group (`PULL_GROUPS`) and its `layer` tag (`catalogue.py`). A key's op, and so its step in
a run, has the key's name (`stg_kaseya_accounts`).
"""

import dagster as dg

# The layers, in the order data flows through them (the DuckDB schemas of the same names).
LAYERS = ("raw", "settings", "stg", "mapped", "zomentum", "audit", "push")


def asset_key(layer: str, table: str) -> dg.AssetKey:
    """The asset of the table `<layer>.<table>` (the loads, `zomentum_<target>`, are rows of the id map)."""
    if layer not in LAYERS:
        raise ValueError(f"unknown layer {layer!r}; the layers are {', '.join(LAYERS)}")
    return dg.AssetKey(f"{layer}_{table}")


def layer_of(key: dg.AssetKey) -> str:
    return key.path[-1].split("_", 1)[0]


def table_of_key(key: dg.AssetKey) -> str:
    """`stg_kaseya_accounts` -> `stg.kaseya_accounts`."""
    layer, table = key.path[-1].split("_", 1)
    return f"{layer}.{table}"


def step_of(key: dg.AssetKey) -> str:
    """The step (op) of the asset with this key, as run config and the run's events name it."""
    return key.to_python_identifier()


def step_prefix(layer: str) -> str:
    """What the steps of a layer's assets start with."""
    return f"{layer}_"


def staged_key(entity: str) -> dg.AssetKey:
    """The staged table of a Kaseya entity (`entities.KaseyaSource.name`): `stg_kaseya_<entity>`."""
    return asset_key("stg", f"kaseya_{entity}")
