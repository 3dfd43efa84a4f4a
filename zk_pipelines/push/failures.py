"""What a failed push raises: one message naming the document and the cause (Kaseya's own message when
Kaseya refused a write), fit for the Dagster UI, the audit log and `zk push`, and whether another attempt
may succeed."""

from __future__ import annotations

import duckdb

from zk_pipelines.clients.http import ApiError, ApiUnavailable, RateLimited, WriteOutcomeUnknown
from zk_pipelines.clients.kaseya import BudgetExhausted


class PushFailed(Exception):
    def __init__(self, document_id: str, message: str, *, document_version: str | None = None,
                 entity: str = "documents", retryable: bool = False) -> None:
        self.document_id = document_id
        self.document_version = document_version
        self.entity = entity  # the audit-log entity the failure is recorded under
        self.message = message
        # True when the cause is passing (an API down or garbled, an answer lost, a DuckDB lock held): the
        # next attempt resumes from the ledger and adopts what was written. False for a refusal or a wrong
        # document, which a repeat would only refuse again.
        self.retryable = retryable
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"push of Zomentum document {self.document_id} failed: {self.message}"


def passing(exc: BaseException) -> bool:
    """Whether the error is of the passing kind another attempt of the push may get past."""
    if isinstance(exc, duckdb.Error):
        return True
    if isinstance(exc, BudgetExhausted):  # more calls this hour only collect 429s
        return False
    if isinstance(exc, ApiUnavailable | WriteOutcomeUnknown | RateLimited):
        return True
    # Kaseya answers some server faults as a 200 with success:false and a 5xx error code.
    return isinstance(exc, ApiError) and _code(exc) >= 500


def _code(exc: ApiError) -> int:
    for value in (exc.status, exc.code):
        try:
            if value is not None and int(value) >= 500:
                return int(value)
        except (TypeError, ValueError):
            continue
    return 0
