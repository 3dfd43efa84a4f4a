"""Which Zomentum documents were newly marked Won: what the Won-document sensor polls (Zomentum as CRM).

Zomentum has no event for "marked Won", so the sensor lists the Won documents updated since its cursor
(the newest `updated_at` seen), looking back `POLL_OVERLAP` before it: an update Zomentum stamps a moment
before it becomes visible in the list is still caught. A document seen twice in that overlap is launched
once: the cursor remembers the run keys (document id and version) it launched within the overlap, and
Dagster drops a run key it has seen anyway. The first poll only sets the cursor: documents Won before the
sensor first ran are pushed on demand (`zk push`), not all at once on its first tick.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from zk_pipelines.clients.zomentum import ZomentumClient
from zk_pipelines.clients.zomentum_models import parse_timestamp
from zk_pipelines.push.document import document_version

WON = "won"
POLL_OVERLAP = timedelta(minutes=5)


@dataclass(frozen=True)
class WonDocument:
    document_id: str
    version: str
    updated_at: datetime

    @property
    def run_key(self) -> str:
        return f"push:{self.document_id}:{self.version}"


@dataclass(frozen=True)
class PollCursor:
    since: datetime  # the newest `updated_at` seen
    launched: Mapping[str, datetime] = field(default_factory=dict)  # run key -> updated_at, within the overlap

    def to_json(self) -> str:
        return json.dumps({"since": self.since.isoformat(),
                           "launched": {key: moment.isoformat() for key, moment in self.launched.items()}},
                          sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PollCursor:
        data = json.loads(text)
        return cls(datetime.fromisoformat(data["since"]),
                   {key: datetime.fromisoformat(value) for key, value in data.get("launched", {}).items()})


def won_documents(documents: Iterable[Mapping[str, Any]]) -> list[WonDocument]:
    """The Won ones among `documents`, oldest update first (the sensor pushes no other status)."""
    found = [WonDocument(str(d["id"]), document_version(d), parse_timestamp(d["updated_at"]))
             for d in documents if d.get("status") == WON]
    return sorted(found, key=lambda d: (d.updated_at, d.document_id))


def next_poll(cursor: PollCursor, documents: Iterable[Mapping[str, Any]]) -> tuple[list[WonDocument], PollCursor]:
    """Pure: (the Won documents to launch, the new cursor) from what a poll listed."""
    found = won_documents(documents)
    new = [document for document in dict((d.run_key, d) for d in found).values()
           if document.run_key not in cursor.launched]
    since = max([cursor.since, *(document.updated_at for document in found)])
    launched = {**cursor.launched, **{document.run_key: document.updated_at for document in new}}
    recent = {key: moment for key, moment in launched.items() if moment >= since - POLL_OVERLAP}
    return new, PollCursor(since, recent)


def poll_won_documents(zomentum: ZomentumClient, cursor: PollCursor | None, now: datetime
                       ) -> tuple[list[WonDocument], PollCursor]:
    """(documents to push, the new cursor); the first poll (no cursor) starts it at `now`."""
    if cursor is None:
        return [], PollCursor(now)
    listed = zomentum.documents(updated_since=cursor.since - POLL_OVERLAP, status=WON)
    return next_poll(cursor, listed)
