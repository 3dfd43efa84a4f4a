"""The code location: every asset, check, job, schedule, sensor and resource of zk_pipelines."""

import dagster as dg

from zk_pipelines.defs.resources import resource_definitions

defs = dg.Definitions(resources=resource_definitions())
