"""The Kaseya BMS sandbox: a real HTTP server that behaves like Kaseya BMS REST API v2 for one or more seeded
MSP tenants, with a sandbox-only control surface under `/_sandbox/`. See README.md beside this file."""

from zk_pipelines.sandbox.kaseya.app import create_kaseya_app
from zk_pipelines.sandbox.kaseya.records import PASSWORD, TENANT, USERNAME, Login, login_of
from zk_pipelines.sandbox.kaseya.server import KaseyaSandbox, start_kaseya_sandbox
from zk_pipelines.sandbox.kaseya.state import KaseyaState, Knobs
from zk_pipelines.sandbox.kaseya.tenants import KaseyaTenants

__all__ = ["PASSWORD", "TENANT", "USERNAME", "KaseyaSandbox", "KaseyaState", "KaseyaTenants", "Knobs", "Login",
           "create_kaseya_app", "login_of", "start_kaseya_sandbox"]
