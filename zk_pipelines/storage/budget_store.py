"""The tenant's Kaseya call budget, kept with its durable state (the DuckDB file's `budget.*`, or the tenant's
PostgreSQL schema) and shared by every process of the tenant (clients/kaseya_budget.py says how it is spent).
Each grant is one short transaction: in DuckDB the file lock orders the processes and the engine's lock the
threads of one; in PostgreSQL an advisory lock per endpoint orders them all."""

from __future__ import annotations

from pathlib import Path

from zk_pipelines.clients.kaseya_budget import HOUR, Grant, Spent
from zk_pipelines.storage.database import connect, one_row
from zk_pipelines.storage.schema import create_tables
from zk_pipelines.storage.state_store import PostgresStateStore, StateStore


class DuckDBBudgetStore:
    def __init__(self, database: Path) -> None:
        self.database = database
        self._ready = False

    def _ensure(self, connection) -> None:
        if not self._ready:
            create_tables(connection)
            self._ready = True

    def grant(self, endpoint: str, wanted: int, hourly_limit: int, now: float) -> Grant:
        with connect(self.database) as connection:
            self._ensure(connection)
            connection.execute("BEGIN TRANSACTION")
            try:
                connection.execute("DELETE FROM budget.kaseya_grants WHERE granted_at <= $old", {"old": now - HOUR})
                used, oldest = one_row(connection.execute(
                    """SELECT coalesce(sum(calls), 0), min(granted_at) FROM budget.kaseya_grants
                       WHERE endpoint = $endpoint AND granted_at > $since AND calls > 0""",
                    {"endpoint": endpoint, "since": now - HOUR}))
                calls = max(0, min(wanted, hourly_limit - int(used)))
                grant_id = one_row(connection.execute(
                    """INSERT INTO budget.kaseya_grants (endpoint, granted_at, calls) VALUES ($endpoint, $now, $calls)
                       RETURNING grant_id""", {"endpoint": endpoint, "now": now, "calls": calls}))[0]
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        if calls:
            return Grant(int(grant_id), calls)
        return Grant(int(grant_id), 0, retry_after=max(0.0, (oldest if oldest is not None else now) + HOUR - now))

    def settle(self, grant_id: int, used: int) -> None:
        with connect(self.database) as connection:
            self._ensure(connection)
            connection.execute("UPDATE budget.kaseya_grants SET calls = $used WHERE grant_id = $id",
                               {"used": used, "id": grant_id})

    def mark_spent(self, endpoint: str, until: float, message: str) -> None:
        with connect(self.database) as connection:
            self._ensure(connection)
            connection.execute(
                """INSERT INTO budget.kaseya_spent (endpoint, until, message) VALUES ($endpoint, $until, $message)
                   ON CONFLICT (endpoint) DO UPDATE SET until = excluded.until, message = excluded.message""",
                {"endpoint": endpoint, "until": until, "message": message})

    def spent(self, endpoint: str, now: float) -> Spent | None:
        with connect(self.database) as connection:
            self._ensure(connection)
            row = connection.execute("SELECT until, message FROM budget.kaseya_spent WHERE endpoint = $endpoint",
                                     {"endpoint": endpoint}).fetchone()
        return Spent(row[0], row[1]) if row is not None and now < row[0] else None

    def used(self, now: float) -> dict[str, int]:
        with connect(self.database) as connection:
            self._ensure(connection)
            rows = connection.execute(
                """SELECT endpoint, sum(calls) FROM budget.kaseya_grants WHERE granted_at > $since
                   GROUP BY endpoint HAVING sum(calls) > 0 ORDER BY endpoint""", {"since": now - HOUR}).fetchall()
        return {endpoint: int(calls) for endpoint, calls in rows}


class PostgresBudgetStore:
    """The same budget in the tenant's PostgreSQL state schema (`budget_grants`, `budget_spent`), for every
    worker of the tenant: each grant is one transaction under the endpoint's advisory lock, so workers and
    threads granting calls of one endpoint take turns and other endpoints never wait."""

    def __init__(self, store: PostgresStateStore) -> None:
        self.store = store

    def grant(self, endpoint: str, wanted: int, hourly_limit: int, now: float) -> Grant:
        with self.store.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                           (f"{self.store.schema}:budget:{endpoint}",))
            cursor.execute("DELETE FROM budget_grants WHERE endpoint = %s AND granted_at <= %s",
                           (endpoint, now - HOUR))
            cursor.execute("""SELECT coalesce(sum(calls), 0), min(granted_at) FROM budget_grants
                              WHERE endpoint = %s AND granted_at > %s AND calls > 0""", (endpoint, now - HOUR))
            used, oldest = cursor.fetchone()
            calls = max(0, min(wanted, hourly_limit - int(used)))
            cursor.execute("INSERT INTO budget_grants (endpoint, granted_at, calls) VALUES (%s, %s, %s) "
                           "RETURNING grant_id", (endpoint, now, calls))
            grant_id = cursor.fetchone()[0]
        if calls:
            return Grant(int(grant_id), calls)
        return Grant(int(grant_id), 0, retry_after=max(0.0, (oldest if oldest is not None else now) + HOUR - now))

    def settle(self, grant_id: int, used: int) -> None:
        with self.store.cursor() as cursor:
            cursor.execute("UPDATE budget_grants SET calls = %s WHERE grant_id = %s", (used, grant_id))

    def mark_spent(self, endpoint: str, until: float, message: str) -> None:
        with self.store.cursor() as cursor:
            cursor.execute("""INSERT INTO budget_spent (endpoint, until, message) VALUES (%s, %s, %s)
                              ON CONFLICT (endpoint) DO UPDATE SET until = excluded.until,
                                  message = excluded.message""", (endpoint, until, message))

    def spent(self, endpoint: str, now: float) -> Spent | None:
        with self.store.cursor() as cursor:
            cursor.execute("SELECT until, message FROM budget_spent WHERE endpoint = %s", (endpoint,))
            row = cursor.fetchone()
        return Spent(row[0], row[1]) if row is not None and now < row[0] else None

    def used(self, now: float) -> dict[str, int]:
        with self.store.cursor() as cursor:
            cursor.execute("""SELECT endpoint, sum(calls) FROM budget_grants WHERE granted_at > %s
                              GROUP BY endpoint HAVING sum(calls) > 0 ORDER BY endpoint""", (now - HOUR,))
            rows = cursor.fetchall()
        return {endpoint: int(calls) for endpoint, calls in rows}


def budget_store_for(database: Path, store: StateStore) -> DuckDBBudgetStore | PostgresBudgetStore:
    """Where the tenant's budget is counted: beside the rest of its durable state."""
    return PostgresBudgetStore(store) if isinstance(store, PostgresStateStore) else DuckDBBudgetStore(database)
