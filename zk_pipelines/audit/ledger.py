"""Where the audit views read from: the tenant's DuckDB file (`ZK_DUCKDB_PATH`), opened read-only, and the
link templates of the settings file (`ZK_SETTINGS`, optional: without it, only the links the ledger
stored are shown)."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TextIO

import duckdb

from zk_pipelines.config import TENANT_VARIABLES
from zk_pipelines.domain.entities import KASEYA_LINK_ENTITY, ZOMENTUM_LINK_ENTITY
from zk_pipelines.domain.settings import Links
from zk_pipelines.domain.settings_file import load_settings
from zk_pipelines.storage.database import LOCK_WAIT_SECONDS, connect
from zk_pipelines.storage.state_store import open_store, shown_url, unbind

DEFAULT_DUCKDB_PATH = "zk_pipelines.duckdb"


class LedgerUnavailable(Exception):
    """The DuckDB file is missing or stayed locked: one line a person can act on."""


def ledger_path(environ: Mapping[str, str]) -> Path:
    """The DuckDB file the audit views read. With a PostgreSQL state store (`ZK_STATE_URL`), a replica of the
    ledger of this command's own, brought up to date first (in the temp directory, one per state schema): it
    never waits for a running sync, which holds the tenant's DuckDB file."""
    url = (environ.get("ZK_STATE_URL") or "").strip()
    if not url:
        return Path(environ.get("ZK_DUCKDB_PATH") or DEFAULT_DUCKDB_PATH)
    schema = (environ.get("ZK_STATE_SCHEMA") or "").strip() or None
    key = hashlib.sha256(f"{shown_url(url)}|{schema}".encode()).hexdigest()[:16]
    replica = Path(tempfile.gettempdir()) / f"zk-ledger-{key}.duckdb"
    store = open_store(replica, url, schema)
    unbind(replica)
    store.close()
    return replica


def settings_links(environ: Mapping[str, str]) -> Links | None:
    """The settings' link templates, when `ZK_SETTINGS` names a settings file (an invalid file is an error,
    as for every `zk` command)."""
    path = environ.get("ZK_SETTINGS")
    if not path:
        return None
    return load_settings(path).links.for_systems(environ.get(TENANT_VARIABLES.kaseya_base_url),
                                                 environ.get(TENANT_VARIABLES.zomentum_base_url))


def kaseya_url(links: Links | None, entity: str, kaseya_id: str | None) -> str | None:
    if links is None or links.kaseya.base_url is None or kaseya_id is None or entity not in KASEYA_LINK_ENTITY:
        return None
    return links.kaseya.url(KASEYA_LINK_ENTITY[entity], kaseya_id)


def zomentum_url(links: Links | None, entity: str, zomentum_id: str | None) -> str | None:
    if links is None or links.zomentum.base_url is None or zomentum_id is None or entity not in ZOMENTUM_LINK_ENTITY:
        return None
    return links.zomentum.url(ZOMENTUM_LINK_ENTITY[entity], zomentum_id)


@contextmanager
def open_ledger(path: Path, *, command: str, err: TextIO) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection. DuckDB lets no reader in while a run writes the file: say so, then wait
    (bounded) for the run to let go of it."""
    if not path.exists():
        raise LedgerUnavailable(f"no DuckDB file at {path} (ZK_DUCKDB_PATH): no sync has written to it yet")
    with ExitStack() as stack:
        try:
            connection = stack.enter_context(connect(path, read_only=True, wait_seconds=0))
        except duckdb.IOException:
            print(f"zk {command}: {path} is in use by a running sync; waiting up to {LOCK_WAIT_SECONDS:.0f} s for it",
                  file=err, flush=True)
            try:
                connection = stack.enter_context(connect(path, read_only=True))
            except duckdb.IOException as exc:
                raise LedgerUnavailable(f"{path} stayed in use by another process: {exc}") from None
        yield connection

