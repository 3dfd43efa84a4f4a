"""Dagster wiring only: resources, assets, checks, jobs, sensors and schedules."""
