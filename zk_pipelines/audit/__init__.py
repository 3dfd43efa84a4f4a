"""The audit views in the terminal: `zk audit` (the entity-level log) and `zk history` (one record's trail
between the two systems), answered from the ledger in the tenant's DuckDB file. No Dagster here: the
run-level audit log is the materialization history of the load and push assets in the Dagster UI."""
