"""The Kaseya sandbox's state for one tenant: its records, login, clock, knobs, tokens, fault plan and
request log (a sandbox serving several tenants holds one per tenant: `tenants.py`).

Every control-surface operation (`/_sandbox/...`) is a method here too, so tests can drive the sandbox
from Python or over HTTP alike. One re-entrant lock serialises the server thread and the caller's thread.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any

from zk_pipelines.sandbox.faults import EVERY_KIND, FaultControls, FaultInjector
from zk_pipelines.sandbox.kaseya import editing
from zk_pipelines.sandbox.kaseya.auth import TokenStore
from zk_pipelines.sandbox.kaseya.records import Login, Tenant, login_of
from zk_pipelines.sandbox.kaseya.seed import seed_tenant
from zk_pipelines.sandbox.runtime import RequestLog, SandboxClock, SlidingWindowLimiter
from zk_pipelines.sandbox.world import SCALES


@dataclass(frozen=True)
class Knobs:
    """What a test or the demo may turn. `denied_routes` holds route templates, optionally with the method
    (`"GET /v2/inventory/products/{productIndexId}/pricingLevels"`); parameter names do not matter."""

    token_lifetime_seconds: float = 1200.0
    # ASSUMED: Kaseya does not publish the refresh token's lifetime.
    refresh_token_lifetime_seconds: float = 7200.0
    rate_limit: int = 1500  # calls per user, method and route template in any sliding hour
    api_access: bool = True  # the user's role has "Has API Access"
    denied_routes: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["denied_routes"] = list(self.denied_routes)
        return data


def _checked_knobs(current: Knobs, changes: dict[str, Any]) -> Knobs:
    known = {f.name for f in fields(Knobs)}
    unknown = set(changes) - known
    if unknown:
        raise ValueError(f"unknown knobs {sorted(unknown)} (known: {sorted(known)})")
    values: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "denied_routes":
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise ValueError("denied_routes must be a list of route templates")
            values[name] = tuple(value)
        elif name == "api_access":
            if not isinstance(value, bool):
                raise ValueError("api_access must be true or false")
            values[name] = value
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name} must be a positive number")
            values[name] = int(value) if name == "rate_limit" else float(value)
    return replace(current, **values)


class KaseyaState(FaultControls):
    def __init__(self, seed: int = 7, scale: str = "small", knobs: Knobs | None = None,
                 seeded_at: datetime | None = None, number: int = 1) -> None:
        """`seeded_at`: the moment the tenant's history is laid out before (default: now); two sandboxes seeded
        at one moment hold the same records with the same stamps. `number`: the tenant's number in its
        sandbox, which names its company and API user (`records.login_of`)."""
        if scale not in SCALES:
            raise ValueError(f"unknown scale {scale!r} (known: {', '.join(SCALES)})")
        self.lock = threading.RLock()
        self.clock = SandboxClock()
        self.log = RequestLog()
        self.tokens = TokenStore()
        self.default_knobs = knobs or Knobs()
        self.knobs = self.default_knobs
        self.limiter = SlidingWindowLimiter(self.clock, self.knobs.rate_limit)
        self.faults = FaultInjector(EVERY_KIND)
        self.seed, self.scale = seed, scale
        self.number = number
        self.login: Login = login_of(number)
        self.tenant: Tenant = seed_tenant(seed, scale, seeded_at or self.clock.now(), number)

    def __repr__(self) -> str:
        return f"KaseyaState({self.login.tenant!r}, seed={self.seed}, scale={self.scale!r}, knobs={self.knobs})"

    # --- control operations ---------------------------------------------------------------------------

    def reset(self, seed: int | None = None, scale: str | None = None) -> None:
        """A fresh tenant (the given or current seed and scale), default knobs, no fault plan, no tokens, an
        empty request log, the clock back to real time and the rate-limit windows empty."""
        scale = scale or self.scale
        if scale not in SCALES:
            raise ValueError(f"unknown scale {scale!r} (known: {', '.join(SCALES)})")
        with self.lock:
            self.seed = self.seed if seed is None else int(seed)
            self.scale = scale
            self.clock.reset()
            self.knobs = self.default_knobs
            self.limiter.limit = self.knobs.rate_limit
            self.limiter.reset()
            self.faults.clear()
            self.tokens.clear()
            self.log.clear()
            self.tenant = seed_tenant(self.seed, self.scale, self.clock.now(), self.number)

    def now(self) -> datetime:
        return self.clock.now()

    def advance_clock(self, seconds: float) -> datetime:
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        return self.clock.advance(seconds)

    def set_knobs(self, **changes: Any) -> Knobs:
        with self.lock:
            self.knobs = _checked_knobs(self.knobs, changes)
            self.limiter.limit = self.knobs.rate_limit
            return self.knobs

    def expire_access_token(self, access_token: str) -> None:
        """The access token stops working now, as if its lifetime had run out; its refresh token still works."""
        with self.lock:
            grant = self.tokens.resolve(access_token, self.clock.now())
            grant.access_expires = self.clock.now()

    def requests(self) -> list[dict[str, Any]]:
        return self.log.as_json()

    def clear_requests(self) -> None:
        self.log.clear()

    def records(self, entity: str) -> list[dict[str, Any]]:
        kind = editing.entity(entity)
        with self.lock:
            return [kind.view(self.tenant, record) for record in kind.table(self.tenant).values()]

    def record(self, entity: str, record_id: int) -> dict[str, Any]:
        kind = editing.entity(entity)
        with self.lock:
            record = kind.table(self.tenant).get(record_id)
            if record is None:
                raise KeyError(f"{kind.name} {record_id} does not exist")
            return kind.view(self.tenant, record)

    def create_record(self, entity: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Create a record as a Kaseya user would in the UI; returns the sandbox's view of it."""
        kind = editing.entity(entity)
        with self.lock:
            record = editing.create(self.tenant, kind, fields, self.clock.now())
            return kind.view(self.tenant, record)

    def update_record(self, entity: str, record_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        """Change the given fields of a record as a Kaseya user would; ModifiedOn moves."""
        kind = editing.entity(entity)
        with self.lock:
            record = editing.update(self.tenant, kind, record_id, fields, self.clock.now())
            return kind.view(self.tenant, record)

    def delete_record(self, entity: str, record_id: int) -> dict[str, Any]:
        """A Kaseya user deletes a record: it is no longer listed nor found (returns what was deleted)."""
        kind = editing.entity(entity)
        with self.lock:
            table = kind.table(self.tenant)
            if record_id not in table:
                raise KeyError(f"{kind.name} {record_id} does not exist")
            view = kind.view(self.tenant, table[record_id])
            del table[record_id]
            return view

    def clock_json(self) -> dict[str, Any]:
        now = self.clock.now()
        offset = (now - datetime.now(UTC)).total_seconds()
        return {"now": now.isoformat().replace("+00:00", "Z"), "offset_seconds": round(offset, 3)}
