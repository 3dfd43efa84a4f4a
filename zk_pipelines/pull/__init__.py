"""The hourly pull as plain Python: Kaseya -> raw -> stg -> mapped -> Zomentum. The Dagster assets in
`defs/` call these functions; nothing here imports Dagster."""
