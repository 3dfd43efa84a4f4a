"""The tenant's Kaseya call budget kept in its DuckDB file (`budget.*`), shared by every process of the tenant
(clients/kaseya_budget.py says how it is spent). Each grant is one short transaction: DuckDB's file lock
orders the processes, the engine's lock the threads of one."""

from __future__ import annotations

from pathlib import Path

from zk_pipelines.clients.kaseya_budget import HOUR, Grant, Spent
from zk_pipelines.storage.database import connect
from zk_pipelines.storage.schema import create_tables


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
                used, oldest = connection.execute(
                    """SELECT coalesce(sum(calls), 0), min(granted_at) FROM budget.kaseya_grants
                       WHERE endpoint = $endpoint AND granted_at > $since AND calls > 0""",
                    {"endpoint": endpoint, "since": now - HOUR}).fetchone()
                calls = max(0, min(wanted, hourly_limit - int(used)))
                grant_id = connection.execute(
                    """INSERT INTO budget.kaseya_grants (endpoint, granted_at, calls) VALUES ($endpoint, $now, $calls)
                       RETURNING grant_id""", {"endpoint": endpoint, "now": now, "calls": calls}).fetchone()[0]
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
