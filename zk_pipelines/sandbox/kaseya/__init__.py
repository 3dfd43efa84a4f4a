"""The Kaseya BMS sandbox: a real HTTP server that behaves like Kaseya BMS REST API v2 for one seeded MSP
tenant, with a sandbox-only control surface under `/_sandbox/`. See README.md beside this file."""

from zk_pipelines.sandbox.kaseya.app import create_kaseya_app
from zk_pipelines.sandbox.kaseya.records import PASSWORD, TENANT, USERNAME
from zk_pipelines.sandbox.kaseya.server import KaseyaSandbox, start_kaseya_sandbox
from zk_pipelines.sandbox.kaseya.state import KaseyaState, Knobs

__all__ = ["PASSWORD", "TENANT", "USERNAME", "KaseyaSandbox", "KaseyaState", "Knobs", "create_kaseya_app",
           "start_kaseya_sandbox"]
