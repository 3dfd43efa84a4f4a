"""What a failed push raises: one message naming the document and the cause (Kaseya's own message when
Kaseya refused a write), fit for the Dagster UI, the audit log and `zk push`."""

from __future__ import annotations


class PushFailed(Exception):
    def __init__(self, document_id: str, message: str, *, document_version: str | None = None,
                 entity: str = "documents") -> None:
        self.document_id = document_id
        self.document_version = document_version
        self.entity = entity  # the audit-log entity the failure is recorded under
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"push of Zomentum document {self.document_id} failed: {self.message}"
