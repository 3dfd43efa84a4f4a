"""The MSP tenants one sandbox server serves: who each is, and its state, seeded the first time it is used.

Tenant 1 is the sandboxes' original single tenant, unchanged: the sandbox's seed, the project's fixed
credentials and names. Tenant n > 1 has a seed derived from the sandbox's, customers whose names carry its
number (`world.py`), Kaseya record ids n-1 ten-millions above tenant 1's, and credentials of its own (each
sandbox derives its part: `kaseya/records.py` `login_of`, `zomentum/state.py` `refresh_token_of`). Kaseya
company n and Zomentum account n are one MSP: they share the seed and so the world, as the single tenant
always did.

Tenants past the first are seeded lazily, on their first use. Measured on the 2-core dev machine, a tenant
seeds in ~15 ms at scale small and ~0.7 s at medium (both sandboxes), and holds ~0.6 MB at small: seeding
200 up front would hold `zk sandbox --tenants 200` for 3 s at small and over two minutes at medium, while a
tenant nobody calls costs nothing. Every tenant is seeded as of the sandbox's start (`seeded_at`), so the
moment of its first use does not change its records.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, Self, TypeVar

from zk_pipelines.sandbox.faults import FaultInjector, ServedRoute

if TYPE_CHECKING:
    from zk_pipelines.sandbox.runtime import RunningServer

MAX_TENANTS = 200
# Tenant n's seed is the sandbox's plus (n-1) strides: a stride of 1001 moves `seed % 50` (the Kaseya lookup
# id block, `kaseya/seed.py`) and `seed % 100` (the part numbers, `world.py`) by one per tenant, so tenants'
# lookup ids and part numbers differ as real tenants' do.
_SEED_STRIDE = 1001


@dataclass(frozen=True)
class SandboxTenant:
    """One MSP among a sandbox's tenants: its number (1-based) and the seed its world grows from."""

    number: int
    seed: int

    @property
    def key(self) -> str:
        """Its name in a tenant registry, `sandbox_01`: lowercase letters, digits, underscores."""
        return f"sandbox_{self.number:02d}"


def sandbox_tenants(seed: int, count: int) -> tuple[SandboxTenant, ...]:
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_TENANTS:
        raise ValueError(f"a sandbox serves 1 to {MAX_TENANTS} tenants, not {count!r}")
    return tuple(SandboxTenant(n, seed + _SEED_STRIDE * (n - 1)) for n in range(1, count + 1))


class _WithFaults(Protocol):
    faults: FaultInjector


S = TypeVar("S", bound=_WithFaults)


class TenantStates(Generic[S]):
    """Each tenant's state, seeded by `seed_state` on first use (tenant 1 at once, or given as `first`).

    A tenant is addressed by its number, its registry key (`sandbox_02`) or one of the names `names` gives it
    (the Kaseya company name), case-insensitively.
    """

    def __init__(self, tenants: Iterable[SandboxTenant], seed_state: Callable[[SandboxTenant], S], *,
                 names: Callable[[SandboxTenant], Iterable[str]] = lambda tenant: (), first: S | None = None) -> None:
        self.tenants = tuple(tenants)
        self._seed_state = seed_state
        self._routes: tuple[ServedRoute, ...] | None = None
        self._lock = threading.Lock()
        self._by_name = {str(name).casefold(): tenant for tenant in self.tenants
                         for name in (tenant.key, str(tenant.number), *names(tenant))}
        self._states: dict[int, S] = {}
        self.first: S = first if first is not None else self.state(1)
        self._states[1] = self.first

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.tenants)} tenants, {len(self._states)} seeded)"

    def tenant(self, tenant: int | str | SandboxTenant) -> SandboxTenant:
        """The tenant so addressed; KeyError names the known ones."""
        if isinstance(tenant, SandboxTenant):
            tenant = tenant.number
        if isinstance(tenant, int) and not isinstance(tenant, bool) and 1 <= tenant <= len(self.tenants):
            return self.tenants[tenant - 1]
        found = self._by_name.get(str(tenant).strip().casefold())
        if found is None:
            raise KeyError(f"no tenant {tenant!r} in this sandbox (tenants 1..{len(self.tenants)}, "
                           f"{self.tenants[0].key}..{self.tenants[-1].key})")
        return found

    def state(self, tenant: int | str | SandboxTenant) -> S:
        """The tenant's state, seeded now if this is its first use."""
        chosen = self.tenant(tenant)
        with self._lock:
            state = self._states.get(chosen.number)
            if state is None:
                state = self._states[chosen.number] = self._seed_state(chosen)
                if self._routes is not None:
                    state.faults.serve(self._routes)
            return state

    def seeded(self) -> list[S]:
        """The states seeded so far (a snapshot), tenant 1 first."""
        with self._lock:
            return [self._states[number] for number in sorted(self._states)]

    def is_seeded(self, tenant: int | str | SandboxTenant) -> bool:
        with self._lock:
            return self.tenant(tenant).number in self._states

    def serve(self, routes: Iterable[ServedRoute]) -> None:
        """The routes every tenant's fault plan may name, now and for tenants seeded later."""
        with self._lock:
            self._routes = tuple(routes)
            for state in self._states.values():
                state.faults.serve(self._routes)


class ServedTenants(Generic[S]):
    """A started sandbox server and its tenants' states; stop it with `stop()` or by leaving the `with` block.
    `base_url` is the server root (the API is under `/v2`); `state` is tenant 1's."""

    def __init__(self, states: TenantStates[S], server: RunningServer) -> None:
        self.states = states
        self.server = server

    @property
    def state(self) -> S:
        return self.states.first

    @property
    def tenants(self) -> tuple[SandboxTenant, ...]:
        return self.states.tenants

    def tenant_state(self, tenant: int | str | SandboxTenant) -> S:
        """The tenant's state (seeded now if this is its first use); KeyError for an unknown one."""
        return self.states.state(tenant)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
