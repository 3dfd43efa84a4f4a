"""Dagster wiring only: resources, assets, checks, jobs, sensors and schedules.

Dagster marks as beta what the project uses knowingly and has pinned its version for; it would warn once per
asset on every load of the code location (the code server, `dagster dev`, every run worker, `zk`). Those
warnings, and only those, are silenced here, where every load of the definitions passes."""

import warnings

import dagster as dg

ACCEPTED_BETA_FEATURES = (
    # the single-run backfill policy of raw_kaseya_changes: a range of hours is one run and one query per list
    r"Parameter `backfill_policy` of function `asset` is currently in beta",
    # the catalogue's references from each asset to its code (defs/catalogue.py)
    r"Function `with_source_code_references` is currently in beta",
    r"Class `LocalFileCodeReference` is currently in beta",
    r"Class `CodeReferencesMetadataValue` is currently in beta",
    # raised by Dagster itself when it copies a sensor (binding resources), whether or not it has owners
    r"Parameter `owners` of initializer `SensorDefinition.__init__` is currently in beta",
)
for accepted in ACCEPTED_BETA_FEATURES:
    warnings.filterwarnings("ignore", message=accepted, category=dg.BetaWarning)
