"""zk_pipelines: keeps Kaseya BMS and Zomentum in sync, orchestrated by Dagster."""
