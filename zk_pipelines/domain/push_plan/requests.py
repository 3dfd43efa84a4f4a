"""The requests a push sends to Kaseya, and the placeholders (`PendingId`) for the ids of records the same
push creates first: a plan names every request before any is sent, and fills the ids in as they come back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from zk_pipelines.domain.kaseya_endpoints import ENDPOINTS, Endpoint

# The Kaseya operations a push sends: rows of the client's endpoint table (`domain/kaseya_endpoints.py`).
PUSH_ENDPOINTS = frozenset({
    "create_account", "create_contact", "create_opportunity", "update_opportunity", "create_quote", "update_quote",
    "add_quote_line_item", "update_quote_line_item", "create_service", "create_product",
})


@dataclass(frozen=True)
class PendingId:
    """The id of a record the same push creates first; known only once it is sent."""

    what: str  # "opportunity", "quote", "account", "product for line zk:D1:L2", ...

    def __str__(self) -> str:
        return f"<id of the new {self.what}>"


KaseyaId = int | PendingId


@dataclass(frozen=True)
class PlannedRequest:
    """One Kaseya request. `endpoint` and `path_params` are what `KaseyaClient.call` takes; `body` is
    JSON-ready once every `PendingId` in it is replaced (`with_ids`)."""

    endpoint: str
    method: str
    path: str
    body: Any
    purpose: str
    path_params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def pending(self) -> frozenset[PendingId]:
        return frozenset(_pending_in(self.body)) | frozenset(_pending_in(dict(self.path_params)))

    def with_ids(self, ids: Mapping[PendingId, int]) -> PlannedRequest:
        """The request with the ids of records created earlier in the push filled in."""
        params = {key: _fill(value, ids) for key, value in self.path_params.items()}
        return replace(self, path_params=params, path=_path(self.endpoint, params), body=_fill(self.body, ids))

    def as_record(self) -> dict[str, Any]:
        """For the push ledger: what was sent."""
        return {"endpoint": self.endpoint, "method": self.method, "path": self.path, "body": self.body,
                "purpose": self.purpose}


def _pending_in(value: Any) -> list[PendingId]:
    if isinstance(value, PendingId):
        return [value]
    if isinstance(value, Mapping):
        return [p for item in value.values() for p in _pending_in(item)]
    if isinstance(value, list | tuple):
        return [p for item in value for p in _pending_in(item)]
    return []


def _fill(value: Any, ids: Mapping[PendingId, int]) -> Any:
    if isinstance(value, PendingId):
        return ids.get(value, value)
    if isinstance(value, Mapping):
        return {key: _fill(item, ids) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, ids) for item in value]
    return value


def _push_endpoint(name: str) -> Endpoint:
    if name not in PUSH_ENDPOINTS:
        raise KeyError(name)
    return ENDPOINTS[name]


def _path(endpoint: str, params: Mapping[str, Any]) -> str:
    # Not `Endpoint.path`: a parameter may still be a placeholder (`PendingId`), filled in when it is sent.
    return _push_endpoint(endpoint).template.format(**{key: str(value) for key, value in params.items()})


def planned_request(endpoint: str, purpose: str, body: Any = None, **path_params: Any) -> PlannedRequest:
    method = _push_endpoint(endpoint).method
    return PlannedRequest(endpoint, method, _path(endpoint, path_params), body, purpose, dict(path_params))
