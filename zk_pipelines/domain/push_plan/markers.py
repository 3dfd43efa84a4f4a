"""The markers that tie Kaseya records to the Zomentum records they were pushed from, so a push happens
exactly once: the opportunity's `Description` carries `[zk_pipelines document <id>]` (appended once, kept on
every update, several documents of one opportunity each add theirs); the quote's `Name` ends with the same
marker, because the quote DTO has no description and a crash between creating the quote and writing anything
else must still leave a findable record. An account created by the push carries `[zk_pipelines client <id>]`
in its description. (Quote lines carry their `line_key` in `ExtDistReference`: see `bundles`.)"""

from __future__ import annotations

import re

from zk_pipelines.domain.bundles import PushPlanError

_MARKER = re.compile(r"\[zk_pipelines (document|client) ([^\[\]\s]+)\]")


def _marker(kind: str, record_id: str) -> str:
    if not record_id or re.search(r"[\[\]\s]", record_id):
        raise PushPlanError(f"a Zomentum {kind} id cannot be empty or contain spaces or brackets: {record_id!r}")
    return f"[zk_pipelines {kind} {record_id}]"


def document_marker(document_id: str) -> str:
    """The text that ties a Kaseya record to the Zomentum document it was pushed from."""
    return _marker("document", document_id)


def client_marker(client_id: str) -> str:
    return _marker("client", client_id)


def _marked(text: str | None, kind: str) -> tuple[str, ...]:
    return tuple(m.group(2) for m in _MARKER.finditer(text or "") if m.group(1) == kind)


def document_markers(text: str | None) -> tuple[str, ...]:
    """Every document id marked in `text`, in order."""
    return _marked(text, "document")


def client_markers(text: str | None) -> tuple[str, ...]:
    """Every client id marked in `text` (an account the push created), in order."""
    return _marked(text, "client")


def find_marker(text: str | None) -> str | None:
    """The first document id marked in `text`, or None."""
    found = document_markers(text)
    return found[0] if found else None


def with_marker(text: str | None, marker: str, separator: str = "\n\n") -> str:
    """`text` ending with `marker`, appended only when `text` does not already carry it."""
    text = (text or "").rstrip()
    if marker in text:
        return text
    return f"{text}{separator}{marker}" if text else marker
