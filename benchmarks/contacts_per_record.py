"""The contact staging rules one record at a time in Python: the reference the benchmarks measure the pipeline
against (the naive peer's staging, the transform benchmark's per-record step), never product code. The
pipeline stages contacts column-wise in SQL, its one implementation of these rules
(`zk_pipelines/storage/contacts_store.py`); this copy reads fields with the per-record readers every other
entity's staging uses (`zk_pipelines/domain/kaseya_staging.py`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from zk_pipelines.domain.kaseya_staging import _flag, _integer, _moment, _objects, _stage, _text


def _default_entry(entries: list[Mapping[str, Any]], column: str, *names: str) -> str | None:
    """The value of the first entry flagged IsDefault, else of the first entry that has one."""
    with_value = [(entry, _text(entry, column, *names)) for entry in entries]
    with_value = [(entry, value) for entry, value in with_value if value]
    flagged = [value for entry, value in with_value if _flag(entry, column, "IsDefault")]
    if flagged:
        return flagged[0]
    return with_value[0][1] if with_value else None


def stage_contacts(records: Iterable[Any], *, positions: Iterable[int] | None = None) -> list[dict[str, Any]]:
    """`GET /v2/crm/contacts/summary` records -> `ContactModel` rows. `positions` are the records' places in
    the whole batch (default 1, 2, ...), which name a record without a usable id in its reject."""

    def build(record: Mapping[str, Any], kaseya_id: int) -> dict[str, Any]:
        return {
            "kaseya_id": kaseya_id,
            "account_id": _integer(record, "account_id", "AccountId"),
            "account_name": _text(record, "account_name", "AccountName"),
            "location_id": _integer(record, "location_id", "LocationId"),
            "first_name": _text(record, "first_name", "FirstName"),
            "last_name": _text(record, "last_name", "LastName"),
            "job_title": _text(record, "job_title", "JobTitle"),
            "email": _default_entry(_objects(record, "email", "Emails"), "email", "EmailAddress"),
            "phone": _default_entry(_objects(record, "phone", "Phones"), "phone", "Phone", "PhoneNumber"),
            # The contract declares IsPoc non-null; absent means "not the point of contact".
            "is_poc": bool(_flag(record, "is_poc", "IsPoc", "Poc")),
            "is_active": _flag(record, "is_active", "IsActive"),
            "created_on": _moment(record, "created_on", "CreatedOn"),
            "modified_on": _moment(record, "modified_on", "ModifiedOn"),
        }

    return _stage("contacts", records, build, positions=positions)
