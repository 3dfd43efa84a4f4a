"""Scenario 6's tenant: N staged Kaseya contacts made column-wise (a million in a second or two), the raw
Kaseya payloads they were staged from, and what was sent to Zomentum before this run.

Deterministic in N. About 1 in 200 contacts breaks a check (an e-mail that is not one, a missing first
name, an account the pipeline never staged), about 1 in 100 belongs to an account that is not in Zomentum
yet (it waits), and a few names carry quotes, backslashes, accents, CJK text or a tab (which JSON escapes).
The previous state: 1% of the contacts were never sent, 1% were sent with another job title.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

FIRST = ["Anna", "Ben", "Chloé", "Dmitri", "Emma", "Farid", "Grace", "Hiro", "Inès", "Jonas", "Kavya", "Liam",
         "María", "Noah", "Olga", "Søren", "Łukasz", "Zoë", "Siobhán", "Wen", 'Jo "JJ"', "Ngozi", "明", "Aiko"]
LAST = ["Adams", "Becker", "Çelik", "Dubois", "O'Brien", "Fischer", "García", "Haddad", "Ivanova", "Müller",
        "Nakamura", "Nguyễn", "Okafor", "Patel", "Rossi", "Back\\slash", "Schmidt", "Tanaka", "Xu", "Zimmermann"]
TITLES = ["Office Manager", "IT Lead", "CFO", "Owner", "Practice Manager", "Operations Director", "Engineer"]
BASE = datetime(2026, 11, 1, tzinfo=UTC)
ACCOUNT_BASE = 500_000
CONTACT_BASE = 1_000_000


def _ascii(names: list[str]) -> list[str]:
    return ["".join(c for c in name.lower() if c.isascii() and c.isalnum()) or "x" for name in names]


def accounts(n: int) -> np.ndarray:
    return ACCOUNT_BASE + np.arange(max(1, n // 3))


def known_accounts(n: int) -> set[int]:
    """The accounts staged before: all but every 200th."""
    ids = accounts(n)
    return {int(a) for a in ids[np.arange(len(ids)) % 200 != 199]}


def client_ids(n: int) -> dict[int, str]:
    """Zomentum client ids of the accounts already in Zomentum: all known ones but every 100th."""
    ids = sorted(known_accounts(n))
    return {a: f"zc-{a:x}" for position, a in enumerate(ids) if position % 100 != 99}


def staged_contacts(n: int, start: int = 0, stop: int | None = None) -> pd.DataFrame:
    """Contacts start..stop (default all) of the N, typed as `validate_rows` types them (the bulk path's
    input); ascending ids."""
    i = np.arange(start, n if stop is None else min(stop, n))
    account_ids = accounts(n)
    account = account_ids[i % len(account_ids)]
    first = np.array(FIRST, dtype=object)[i % len(FIRST)]
    last = np.array(LAST, dtype=object)[(i // len(FIRST)) % len(LAST)]
    first[i % 100_000 == 99_999] = "Tab\tName"
    email = (pd.Series(np.array(_ascii(FIRST), dtype=object)[i % len(FIRST)]) + "."
             + pd.Series(np.array(_ascii(LAST), dtype=object)[(i // len(FIRST)) % len(LAST)]) + "."
             + pd.Series(i).astype(str) + "@example.com").to_numpy(dtype=object)
    email[i % 50 == 49] = None
    email[i % 250 == 123] = "not-an-email"
    first[i % 500 == 321] = None
    title = np.array(TITLES, dtype=object)[i % len(TITLES)]
    title[i % 7 == 6] = None
    phone = ("+1 555 " + pd.Series(i % 10_000).astype(str).str.zfill(4)).to_numpy(dtype=object)
    modified = pd.to_datetime(BASE.timestamp() - (i % 86_400), unit="s", utc=True).astype("datetime64[us, UTC]")
    created = pd.to_datetime(BASE.timestamp() - 86_400 - i, unit="s", utc=True).astype("datetime64[us, UTC]")
    return pd.DataFrame({
        "kaseya_id": pd.array(CONTACT_BASE + i, dtype="Int64"),
        "account_id": pd.array(account, dtype="Int64"),
        "account_name": ("Company " + pd.Series(account).astype(str)).to_numpy(dtype=object),
        "location_id": pd.array(account + 400_000, dtype="Int64"),
        "first_name": first, "last_name": last, "job_title": title, "email": email, "phone": phone,
        "is_poc": pd.array(i % 3 == 0, dtype="boolean"),
        "is_active": pd.array(i % 11 != 10, dtype="boolean"),
        "created_on": created, "modified_on": modified,
    })


def _wire_moment(value: pd.Timestamp) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.000")


def raw_payloads(contacts: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """The Kaseya `contacts/summary` records these contacts were staged from (the per-record path's input)."""
    for row in contacts.itertuples(index=False):
        yield {
            "id": int(row.kaseya_id), "accountId": int(row.account_id), "accountName": row.account_name,
            "locationId": int(row.location_id), "firstName": row.first_name, "lastName": row.last_name,
            "jobTitle": row.job_title, "isPoc": bool(row.is_poc), "isActive": bool(row.is_active),
            "emails": [] if row.email is None else [{"emailAddress": row.email, "isDefault": True}],
            "phones": [{"phone": row.phone, "isDefault": True}],
            "createdOn": _wire_moment(row.created_on), "modifiedOn": _wire_moment(row.modified_on),
        }


def previously_sent(contacts: pd.DataFrame) -> pd.DataFrame:
    """What was sent last time, as the contacts then were: every 100th never sent, every 100th (another
    one) sent with another job title."""
    i = contacts["kaseya_id"].to_numpy(dtype="int64") - CONTACT_BASE
    before = contacts[i % 100 != 17].copy()
    before.loc[(i % 100 == 42)[i % 100 != 17], "job_title"] = "Previous title"
    return before
