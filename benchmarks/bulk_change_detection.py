"""The benchmark's reference for scenario 6 (`transform_child.py bulk`), not the pipeline's code: client users
in bulk, validated, mapped to their Zomentum payloads, hashed and compared with what was last sent, a column
at a time in pandas instead of a record at a time. The pipeline stages and maps contacts in SQL
(`storage/contacts_store.py`), validated by `staging_schemas.validate_typed_rows`.

The per-record path (`staging_schemas.validate_rows`, `zomentum_mapping.map_client_user`,
`change_detection.payload_hash`) costs tens of microseconds per contact in Python calls; here the same
results come from whole-column operations, so a million contacts take seconds and a few hundred MB. The
results are the per-record path's, exactly (tests compare them row for row):

- Validation: rows that certainly pass every check (typed, required fields present, e-mail shaped, account
  known) are kept as they are; every other row goes through `validate_rows` itself, so rejects and their
  reasons are the per-record path's. Duplicates of one id keep the latest `modified_on`, the last read on
  a tie, as `validate_rows` does.
- Payloads: the canonical JSON `payload_hash` hashes (sorted keys, no spaces, non-ASCII as is) is
  assembled from JSON-quoted columns. A row holding a character JSON escapes specially (a control
  character or a lone surrogate) is rendered by the per-record path instead.

The input is typed staged contacts (`ContactModel`'s columns with the dtypes `validate_rows`
returns: nullable Int64 ids, object text, nullable boolean, UTC timestamps), as a column-wise staging
(SQL over the raw JSON) would produce them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping

import numpy as np
import pandas as pd

from zk_pipelines.domain.change_detection import canonical_json
from zk_pipelines.domain.staging_schemas import EMAIL_PATTERN, ContactModel, empty_rejects, model_columns, validate_rows
from zk_pipelines.domain.zomentum_mapping import map_client_user

CONTACT_COLUMNS = model_columns(ContactModel)
CONTACT_COLUMN_NAMES = tuple(name for name, _ in CONTACT_COLUMNS)
_TEXT_COLUMNS = tuple(name for name, kind in CONTACT_COLUMNS if kind == "VARCHAR")
# Characters `json.dumps(ensure_ascii=False)` writes as escapes (besides `"` and `\`), and lone surrogates,
# which UTF-8 cannot encode: rows holding one are rendered one at a time.
_SPECIAL_CHARACTERS = r"[\x00-\x1f\ud800-\udfff]"

NEW = "new"
CHANGED = "changed"
UNCHANGED = "unchanged"
WAITING = "waiting"


def _is_text_or_missing(column: pd.Series) -> np.ndarray:
    values = column.to_numpy(dtype=object)
    return np.fromiter((v is None or type(v) is str for v in values), dtype=bool, count=len(values)) | \
        column.isna().to_numpy()


def latest_per_contact(contacts: pd.DataFrame) -> pd.DataFrame:
    """One row per kaseya_id: the latest `modified_on`, the last one on a tie; rows without an id are all
    kept. The rows keep their order."""
    position = np.arange(len(contacts))
    keyed = contacts["kaseya_id"].notna().to_numpy()
    order = pd.DataFrame({"kaseya_id": contacts["kaseya_id"].to_numpy(dtype=object)[keyed],
                          "moment": contacts["modified_on"].to_numpy()[keyed], "position": position[keyed]})
    order = order.sort_values(["kaseya_id", "moment", "position"], na_position="first", kind="stable")
    keep = np.zeros(len(contacts), dtype=bool)
    keep[order.drop_duplicates("kaseya_id", keep="last")["position"].to_numpy()] = True
    keep |= ~keyed
    return contacts[keep]


def clearly_valid_contacts(contacts: pd.DataFrame, known_accounts: Collection[int]) -> pd.Series:
    """Rows `validate_rows("contacts", ...)` certainly keeps: an id, an account among `known_accounts`, a
    first name and a POC flag, an e-mail of the right shape or none, and text columns holding text. False
    means "ask validate_rows", not "invalid"."""
    required = (contacts["kaseya_id"].notna() & contacts["account_id"].notna() & contacts["first_name"].notna()
                & contacts["is_poc"].notna()).to_numpy()
    known = contacts["account_id"].isin(pd.array(list(known_accounts), dtype="Int64")).to_numpy(dtype=bool)
    email = contacts["email"]
    shaped = email.isna().to_numpy() | email.astype(str).str.match(EMAIL_PATTERN).to_numpy(dtype=bool)
    text = np.logical_and.reduce([_is_text_or_missing(contacts[name]) for name in _TEXT_COLUMNS])
    return pd.Series(required & known & shaped & text, index=contacts.index)


def validate_contacts(contacts: pd.DataFrame, known_accounts: Collection[int]
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`validate_rows("contacts", contacts, {"accounts": known_accounts})`, in bulk: (valid rows, rejects)."""
    latest = latest_per_contact(contacts[list(CONTACT_COLUMN_NAMES)]).reset_index(drop=True)
    clear = clearly_valid_contacts(latest, known_accounts).to_numpy()
    if clear.all():
        return latest, empty_rejects()
    doubtful = latest[~clear]
    checked, rejects = validate_rows("contacts", doubtful.reset_index(drop=True),
                                     known_ids={"accounts": known_accounts})
    kept_positions = doubtful.index[doubtful["kaseya_id"].isin(checked["kaseya_id"]).to_numpy(dtype=bool)]
    keep = clear.copy()
    keep[kept_positions] = True
    return latest[keep].reset_index(drop=True), rejects


def _json_text(column: pd.Series) -> pd.Series:
    """Each value as a JSON string literal (`null` when missing); only `\\` and `"` need escaping once the
    special characters are ruled out."""
    quoted = '"' + column.fillna("").astype(str).str.replace("\\", "\\\\", regex=False).str.replace(
        '"', '\\"', regex=False) + '"'
    return quoted.where(column.notna(), "null")


def client_user_payloads(contacts: pd.DataFrame, client_ids: Mapping[int, str]) -> pd.DataFrame:
    """Validated contacts -> kaseya_id (text, as the id map keys it), client_id, payload (the canonical
    JSON `payload_hash` hashes, which is also the text `pull_store.upsert_mapped` stores; None while the
    contact's account has no Zomentum client) and payload_hash."""
    clients = pd.Series(client_ids, dtype=object)
    clients.index = clients.index.astype("int64")
    client_id = contacts["account_id"].astype("Int64").map(clients)
    mapped = client_id.notna().to_numpy()
    quoted = {name: _json_text(contacts[name]) for name in ("email", "job_title", "first_name", "last_name",
                                                            "phone")}
    client = _json_text(client_id)
    is_poc = contacts["is_poc"].fillna(False).to_numpy(dtype=bool)
    contact_type = np.where(is_poc, '"primary_contact"', '"secondary_contact"')
    payload = ('{"client_company_id":' + client + ',"contact_type":' + contact_type
               + ',"email":' + quoted["email"] + ',"job_title":' + quoted["job_title"]
               + ',"name":{"first":' + quoted["first_name"] + ',"last":'
               + quoted["last_name"] + '},"phone":' + quoted["phone"] + "}")
    # The punctuation around the values is plain ASCII, so the assembled text holds a special character
    # exactly when one of its values does.
    special = payload.str.contains(_SPECIAL_CHARACTERS, regex=True).to_numpy(dtype=bool)
    rendered = payload.to_numpy(dtype=object)
    rendered[~mapped] = None
    for row in np.flatnonzero(special & mapped):
        rendered[row] = canonical_json(map_client_user(contacts.iloc[row].to_dict(), client_id.iloc[row]))
    hashes = [hashlib.sha256(text.encode("utf-8")).hexdigest() if text is not None else None for text in rendered]
    return pd.DataFrame({"kaseya_id": contacts["kaseya_id"].astype("Int64").astype(str).to_numpy(dtype=object),
                         "client_id": client_id.to_numpy(dtype=object), "payload": rendered,
                         "payload_hash": np.array(hashes, dtype=object)})


def detect_changes(current: pd.DataFrame, sent_hashes: Mapping[str, str] | pd.Series) -> pd.Series:
    """For each row of `client_user_payloads`: "new" (never sent), "changed" (its hash differs from the one
    sent), "unchanged", or "waiting" (no payload yet: its client is not in Zomentum)."""
    sent = pd.Series(sent_hashes, dtype=object)
    previous = current["kaseya_id"].map(sent).to_numpy(dtype=object)
    hashes = current["payload_hash"].to_numpy(dtype=object)
    never_sent = pd.isna(previous)
    change = np.where(never_sent, NEW, np.where(previous == hashes, UNCHANGED, CHANGED)).astype(object)
    change[pd.isna(hashes)] = WAITING
    return pd.Series(change, index=current.index, name="change")
