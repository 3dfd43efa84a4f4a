"""Contacts (and the client users they map to) staged, validated and mapped a chunk of ids at a time, as typed
columns in SQL rather than one Python dict per record; explicit SQL with parameters. Identifiers come only from
the entity tables in code."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from zk_pipelines.domain.change_detection import canonical_json
from zk_pipelines.domain.entities import STAGED_COLUMNS
from zk_pipelines.domain.kaseya_staging import (
    CONTACT_EMAIL_WIRE_FIELDS,
    CONTACT_PHONE_WIRE_FIELDS,
    CONTACT_READ_NAMES,
    CONTACT_WIRE_FIELDS,
    STRIPPED_CHARACTERS,
    folded_name,
)
from zk_pipelines.domain.staging_schemas import as_validated_types
from zk_pipelines.storage.database import one_row, registered

# --- contacts, column-wise ---------------------------------------------------------------------------
# A million contacts staged, validated and mapped one Python dict at a time take gigabytes and minutes; these
# reads and writes move them a chunk of ids at a time, as typed columns.


def read_raw_in_order(connection: duckdb.DuckDBPyConnection, table: str, kaseya_ids: np.ndarray) -> list[Any]:
    """The raw payloads of `kaseya_ids`, in that order (ids not in the table are left out)."""
    chunk = pd.DataFrame({"kaseya_id": np.asarray(kaseya_ids, dtype="int64"),
                          "position": np.arange(len(kaseya_ids), dtype="int64")})
    with registered(connection, "incoming_raw_ids", chunk):
        rows = connection.execute(
            f"""SELECT r.payload FROM raw.{table} r JOIN incoming_raw_ids i USING (kaseya_id)
                ORDER BY i.position""").fetchall()
    return [json.loads(payload) for (payload,) in rows]


def staging_order(connection: duckdb.DuckDBPyConnection, table: str, retry_ids: Iterable[int]) -> np.ndarray:
    """The raw records a staging reads, in the order the per-record staging reads them: those pending (new or
    changed since staging last read them) by id, then the `retry_ids` not pending by id."""
    pending = connection.execute(
        f"SELECT kaseya_id FROM raw.{table} WHERE stage_pending ORDER BY kaseya_id").fetchnumpy()["kaseya_id"]
    retry = np.array(sorted(set(int(i) for i in retry_ids)), dtype="int64")
    retry = retry[~np.isin(retry, pending)]
    stored = connection.execute(
        f"SELECT kaseya_id FROM raw.{table} WHERE list_contains($ids, kaseya_id) ORDER BY kaseya_id",
        {"ids": retry.tolist()},
    ).fetchnumpy()["kaseya_id"] if len(retry) else np.array([], dtype="int64")
    return np.concatenate([np.asarray(pending, dtype="int64"), np.asarray(stored, dtype="int64")])


def staged_read(connection: duckdb.DuckDBPyConnection, table: str, kaseya_ids: np.ndarray) -> None:
    """Staging has read these raw records: they are pending no more (until Kaseya sends them changed)."""
    if not len(kaseya_ids):
        return
    ids = pd.DataFrame({"kaseya_id": np.asarray(kaseya_ids, dtype="int64")})
    with registered(connection, "incoming_staged_ids", ids):
        connection.execute(f"""UPDATE raw.{table} SET stage_pending = false
                               WHERE stage_pending AND kaseya_id IN (SELECT kaseya_id FROM incoming_staged_ids)""")


def _present(value: str) -> str:
    return f"({value} IS NOT NULL AND json_type({value}) <> 'NULL')"


def _whole_number(value: str) -> str:
    return (f"(NOT {_present(value)} OR (json_type({value}) IN ('BIGINT', 'UBIGINT') "
            f"AND TRY_CAST({value} AS BIGINT) IS NOT NULL))")


def _of_kind(value: str, kind: str) -> str:
    return f"(NOT {_present(value)} OR json_type({value}) = '{kind}')"


def _spelled_as_wire(keys: str, names: str, spellings: str) -> str:
    """No key among `keys` that reads as one of `names` (case and underscores ignored) is spelled otherwise
    than in `spellings`."""
    return (f"len(list_filter({keys}, lambda k: list_contains({names}, lower(replace(k, '_', ''))) "
            f"AND NOT list_contains({spellings}, k))) = 0")


def _stripped(text: str) -> str:
    return f"nullif(regexp_replace({text}, $strip, '', 'g'), '')"


def _moment_value(text: str) -> str:
    # `parse_kaseya_moment` drops fraction digits beyond the sixth and reads a naive time as UTC.
    return (f"TRY_CAST(regexp_replace({text}, '(\\.\\d{{6}})\\d+', '\\1') || "
            f"CASE WHEN regexp_matches({text}, '(Z|[+-]\\d\\d:\\d\\d)$') THEN '' ELSE '+00:00' END AS TIMESTAMPTZ)")


@functools.cache
def _contacts_chunk_sql() -> str:
    """One parse of each payload (`json_extract` of every field at once), then small parses of the values."""
    columns = list(CONTACT_WIRE_FIELDS)
    paths = ", ".join(f"'$.{CONTACT_WIRE_FIELDS[column]}'" for column in columns)

    def field(column: str) -> str:
        return f"v[{columns.index(column) + 1}]"

    entries = {  # column -> (names, spellings, paths of an entry, entry readable, entry value)
        "email": ("$email_names", "$email_spellings", "['$.emailAddress', '$.isDefault']",
                  f"{_of_kind('x[1]', 'VARCHAR')} AND {_of_kind('x[2]', 'BOOLEAN')}",
                  _stripped("x[1] ->> '$'"), "x[2]"),
        "phone": ("$phone_names", "$phone_spellings", "['$.phone', '$.phoneNumber', '$.isDefault']",
                  f"{_of_kind('x[1]', 'VARCHAR')} AND {_of_kind('x[2]', 'VARCHAR')} AND {_of_kind('x[3]', 'BOOLEAN')}",
                  # the first non-null of Phone, PhoneNumber, then trimmed (a blank Phone hides PhoneNumber)
                  _stripped("coalesce(x[1] ->> '$', x[2] ->> '$')"), "x[3]"),
    }
    readable = ["kind = 'OBJECT'", _spelled_as_wire("keys", "$names", "$spellings"), _present(field("kaseya_id"))]
    selected = []
    for column in ("kaseya_id", "account_id", "location_id"):
        readable.append(_whole_number(field(column)))
        selected.append(f"TRY_CAST({field(column)} AS BIGINT) AS {column}")
    for column in ("account_name", "first_name", "last_name", "job_title"):
        readable.append(_of_kind(field(column), "VARCHAR"))
        selected.append(f"{_stripped(f'{field(column)} ->> {chr(39)}${chr(39)}')} AS {column}")
    listed = []
    for column, (names, spellings, entry_paths, entry_readable, entry_value, entry_default) in entries.items():
        value = field(column)
        # each entry: (its keys, its fields) from one parse of the entry
        listed.append(f"list_transform(CASE WHEN json_type({value}) = 'ARRAY' THEN json_extract({value}, '$[*]') "
                      f"ELSE [] END, lambda e: {{'kind': json_type(e), 'keys': json_keys(e), "
                      f"'x': json_extract(e, {entry_paths})}}) AS {column}_entries")
        readable.append(f"(NOT {_present(value)} OR (json_type({value}) = 'ARRAY' AND coalesce(list_bool_and("
                        f"list_transform({column}_entries, lambda s: s.kind = 'OBJECT' AND "
                        f"{_spelled_as_wire('s.keys', names, spellings)} AND "
                        f"{entry_readable.replace('x[', 's.x[')})), true)))")
        # the first entry with a value flagged IsDefault, else the first entry with a value
        with_value = (f"list_filter(list_transform({column}_entries, lambda s: {{'value': "
                      f"{entry_value.replace('x[', 's.x[')}, 'is_default': "
                      f"coalesce({entry_default.replace('x[', 's.x[')} ->> '$' = 'true', false)}}), "
                      f"lambda s: s.value IS NOT NULL)")
        selected.append(f"coalesce(list_filter({with_value}, lambda s: s.is_default)[1].value, "
                        f"({with_value})[1].value) AS {column}")
    for column in ("is_poc", "is_active"):
        readable.append(_of_kind(field(column), "BOOLEAN"))
    selected.append(f"coalesce({field('is_poc')} ->> '$' = 'true', false) AS is_poc")
    selected.append(f"CASE WHEN json_type({field('is_active')}) = 'BOOLEAN' "
                    f"THEN {field('is_active')} ->> '$' = 'true' END AS is_active")
    for column in ("created_on", "modified_on"):
        value = field(column)
        moment = _moment_value(f"({value} ->> '$')")
        readable.append(f"(NOT {_present(value)} OR (json_type({value}) = 'VARCHAR' AND "
                        f"regexp_full_match({value} ->> '$', $moment) AND {moment} IS NOT NULL))")
        selected.append(f"CASE WHEN {_present(value)} THEN {moment} END AS {column}")
    return f"""
        WITH chunk AS (
            SELECT c.position, r.payload
            FROM incoming_contacts_chunk c JOIN raw.kaseya_contacts r ON r.kaseya_id = c.kaseya_id
            WHERE r.kaseya_id BETWEEN $lowest AND $highest
        ), parsed AS (
            SELECT position, payload, json_type(payload) AS kind, json_keys(payload) AS keys,
                   json_extract(payload, [{paths}]) AS v
            FROM chunk
        ), listed AS (
            SELECT *, {', '.join(listed)} FROM parsed
        ), judged AS (
            SELECT *, coalesce({' AND '.join(readable)}, false) AS readable FROM listed
        )
        SELECT position, readable, CASE WHEN readable THEN NULL ELSE payload::VARCHAR END AS payload,
               {', '.join(selected)}
        FROM judged ORDER BY position"""


def read_contacts_chunk(connection: duckdb.DuckDBPyConnection, kaseya_ids: np.ndarray, positions: np.ndarray
                        ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The raw contacts `kaseya_ids` (their places in the batch: `positions`) staged in SQL: (typed rows of
    the records read there, with their `position`; position + payload text of the others, for
    `kaseya_staging.stage_contacts`). The typed rows are `stage_contacts`' rows, typed as `validate_rows`
    types them."""
    blank = "".join(f"\\x{{{ord(c):x}}}" for c in STRIPPED_CHARACTERS)
    parameters = {
        "lowest": int(kaseya_ids.min()) if len(kaseya_ids) else 0,
        "highest": int(kaseya_ids.max()) if len(kaseya_ids) else -1,
        "names": sorted({folded_name(n) for n in CONTACT_READ_NAMES}),
        "spellings": sorted(CONTACT_WIRE_FIELDS.values()),
        "email_names": sorted({folded_name(n) for n in CONTACT_EMAIL_WIRE_FIELDS}),
        "email_spellings": list(CONTACT_EMAIL_WIRE_FIELDS),
        "phone_names": sorted({folded_name(n) for n in CONTACT_PHONE_WIRE_FIELDS}),
        "phone_spellings": list(CONTACT_PHONE_WIRE_FIELDS),
        "strip": f"^[{blank}]+|[{blank}]+$",
        "moment": r"(19|20|21)\d\d-\d\d-\d\dT([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)?",
    }
    chunk = pd.DataFrame({"kaseya_id": kaseya_ids, "position": positions})
    with registered(connection, "incoming_contacts_chunk", chunk):
        frame = connection.execute(_contacts_chunk_sql(), parameters).df()
    readable = frame["readable"].to_numpy(dtype=bool)
    others = frame.loc[~readable, ["position", "payload"]].reset_index(drop=True)
    typed = frame.loc[readable].reset_index(drop=True)
    return pd.concat([typed[["position"]].astype("int64"), as_validated_types(typed, STAGED_COLUMNS["contacts"])],
                     axis=1), others


def mapping_order(connection: duckdb.DuckDBPyConnection, entity: str, kaseya_ids: Iterable[int]) -> np.ndarray:
    """The ids `read_stg(..., pending_only=True, kaseya_ids=...)` reads, ascending, without the rows."""
    retry = pd.DataFrame({"kaseya_id": np.array(sorted(set(int(i) for i in kaseya_ids)), dtype="int64")})
    with registered(connection, "incoming_retry_ids", retry):
        ids = connection.execute(
            f"""SELECT kaseya_id FROM stg.kaseya_{entity} WHERE map_pending
                UNION SELECT s.kaseya_id FROM stg.kaseya_{entity} s SEMI JOIN incoming_retry_ids r USING (kaseya_id)
                ORDER BY kaseya_id""",
        ).fetchnumpy()["kaseya_id"]
    return np.asarray(ids, dtype="int64")


@dataclass(frozen=True)
class PendingCounts:
    problems: int  # cannot be sent (yet)
    never_sent: int
    changed: int  # sent before with another hash
    unchanged: int


def count_pending(connection: duckdb.DuckDBPyConnection, name: str) -> PendingCounts:
    """What `pending_records` would hand the load, counted in SQL with its conditions: `changed` are pending
    only when linked records are updated (Kaseya as CRM)."""
    row = one_row(connection.execute(
        f"""
        SELECT count(*) FILTER (WHERE m.problem IS NOT NULL),
               count(*) FILTER (WHERE m.problem IS NULL AND i.zomentum_id IS NULL),
               count(*) FILTER (WHERE m.problem IS NULL AND i.zomentum_id IS NOT NULL
                                  AND i.payload_hash IS DISTINCT FROM m.payload_hash),
               count(*) FILTER (WHERE m.problem IS NULL AND i.zomentum_id IS NOT NULL
                                  AND i.payload_hash IS NOT DISTINCT FROM m.payload_hash)
        FROM mapped.zomentum_{name} m
        LEFT JOIN zomentum.id_map i ON i.entity = $entity AND i.kaseya_id = m.kaseya_id
        """,
        {"entity": name},
    ))
    return PendingCounts(*(int(value) for value in row))


# `map_client_user`'s payload as the canonical JSON `payload_hash` hashes, built by DuckDB's `json_object`: no
# spaces, keys written in the sorted order `canonical_json` writes them, text quoted as `json.dumps` quotes it
# but for control characters (DuckDB writes `\u001F` where `json.dumps` writes `\u001f`), so the rows holding one
# are written again by `canonical_json`. Tested equal to `map_client_user` + `canonical_json`.
_CLIENT_USER_TEXT_COLUMNS = ("email", "job_title", "first_name", "last_name", "phone")
_CLIENT_USER_PAYLOAD_SQL = """json_object(
    'client_company_id', c.zomentum_id,
    'contact_type', CASE WHEN coalesce(s.is_poc, false) THEN 'primary_contact' ELSE 'secondary_contact' END,
    'email', s.email,
    'job_title', s.job_title,
    'name', json_object('first', s.first_name, 'last', s.last_name),
    'phone', s.phone)::VARCHAR"""


def upsert_client_users_mapped(connection: duckdb.DuckDBPyConnection, kaseya_ids: np.ndarray, *, run_id: str,
                               now: datetime) -> tuple[int, int]:
    """Map the staged contacts `kaseya_ids` to client-user payloads in SQL and upsert them into
    `mapped.zomentum_client_users`: a contact whose account has a Zomentum client gets its payload and hash,
    the others `map_rows`' waiting problem. Returns (rows written, of them waiting)."""
    if not len(kaseya_ids):
        return 0, 0
    special = " OR ".join(f"regexp_matches(coalesce(s.{name}, ''), '[\\x00-\\x1f]')"
                          for name in _CLIENT_USER_TEXT_COLUMNS)
    ids = pd.DataFrame({"kaseya_id": np.asarray(kaseya_ids, "int64")})
    with registered(connection, "incoming_client_user_ids", ids):
        connection.execute(
            f"""CREATE OR REPLACE TEMP TABLE client_user_chunk AS
                SELECT s.kaseya_id, s.account_id, s.modified_on, c.zomentum_id, ({special}) AS special,
                       CASE WHEN c.zomentum_id IS NOT NULL THEN {_CLIENT_USER_PAYLOAD_SQL} END AS payload
                FROM stg.kaseya_contacts s SEMI JOIN incoming_client_user_ids i USING (kaseya_id)
                LEFT JOIN zomentum.id_map c ON c.entity = 'clients' AND c.kaseya_id = CAST(s.account_id AS VARCHAR)
                WHERE s.kaseya_id BETWEEN $lowest AND $highest""",
            {"lowest": int(np.min(kaseya_ids)), "highest": int(np.max(kaseya_ids))})
    _canonical_control_characters(connection)
    connection.execute(
        """INSERT OR REPLACE INTO mapped.zomentum_client_users
               (kaseya_id, payload, payload_hash, problem, waiting, source_modified_on, mapped_at, run_id)
           SELECT CAST(kaseya_id AS VARCHAR), payload::JSON, sha256(payload),
                  CASE WHEN zomentum_id IS NULL THEN 'contact ' || kaseya_id || ': waits for its Kaseya account '
                       || coalesce(CAST(account_id AS VARCHAR), 'None') || ' to be in Zomentum (that client '
                       || 'failed, or has not been pulled yet); retried every run' END,
                  zomentum_id IS NULL, modified_on, $now, $run_id
           FROM client_user_chunk""",
        {"now": now, "run_id": run_id})
    written, waiting = one_row(connection.execute(
        "SELECT count(*), count(*) FILTER (WHERE zomentum_id IS NULL) FROM client_user_chunk"))
    connection.execute("DROP TABLE client_user_chunk")
    return int(written), int(waiting)


def _canonical_control_characters(connection: duckdb.DuckDBPyConnection) -> None:
    """The chunk's payloads holding a control character, as `canonical_json` writes them."""
    rows = connection.execute(
        "SELECT kaseya_id, payload FROM client_user_chunk WHERE special AND payload IS NOT NULL").fetchall()
    if not rows:
        return
    canonical = pd.DataFrame({"kaseya_id": np.array([kaseya_id for kaseya_id, _ in rows], dtype="int64"),
                              "payload": [canonical_json(json.loads(payload)) for _, payload in rows]})
    with registered(connection, "incoming_canonical_payloads", canonical):
        connection.execute("""UPDATE client_user_chunk SET payload = f.payload FROM incoming_canonical_payloads f
                              WHERE client_user_chunk.kaseya_id = f.kaseya_id""")
