"""The ledger's audit views, read from the tenant's DuckDB file: opening the ledger, the links to both systems'
records, and what a selection (`--entity`, `--since`, ...) means. The commands that print them, `zk audit` and
`zk history`, are in `zk_pipelines/commands/`. No Dagster here: the run-level audit log is the materialization
history of the load and push assets in the Dagster UI."""
