"""Reconciliation, the pure part: what differs between Kaseya, Zomentum and the id map, and what to send about it.

The hourly pull sees only what Kaseya reports as modified. A periodic full comparison closes the loop: both
systems' current records of an entity are listed whole and compared with the id map (each pair and what the
pull last sent) and with what the mapping says Zomentum should hold (the current Kaseya record mapped by the
pull's mapping, `mapped.zomentum_*`; the last-sent payload when the pull has mapped nothing newer).

Classes of difference (one per record, the first that applies):
- `gone_from_kaseya`: the pair's Kaseya record is no longer listed, its Zomentum record still is;
- `gone_from_zomentum`: the Zomentum record is gone (a user deleted it), Kaseya still has the record;
- `orphan`: the pair points at nothing in either system (a link to nothing), or a Zomentum record carries our
  Kaseya link and the id map does not know it, or its link names a Kaseya record that does not exist;
- `drift`: a mapped field differs between Zomentum and what the pull last sent, and `changed_in` says where the
  value moved: `zomentum` (edited by hand, or a write answered 200 that did not persist), `kaseya` (the mapping
  of the current Kaseya record differs from what was sent: Zomentum as CRM leaves linked records alone) or
  `both`.

What is done about each class follows the mode (`repair_plan`): Kaseya as CRM repairs drift (Kaseya wins:
the fields that differ are sent at the mapped value) and re-creates what was deleted in Zomentum; Zomentum as
CRM reports them. A Kaseya deletion is reported in both modes and, with `--repair`, the Zomentum record is
marked (custom field "Kaseya record"), never deleted: the Zomentum API we know has no delete, so there is no
setting that would. Orphans are reported for a person to settle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from zk_pipelines.domain.change_detection import changed_fields, partial_update

GONE_FROM_KASEYA = "gone_from_kaseya"
GONE_FROM_ZOMENTUM = "gone_from_zomentum"
DRIFT = "drift"
ORPHAN = "orphan"
CLASSES = (GONE_FROM_KASEYA, GONE_FROM_ZOMENTUM, DRIFT, ORPHAN)

# The custom field a Zomentum record deleted in Kaseya is marked with (one per Zomentum record kind).
KASEYA_RECORD_FIELD = "Kaseya record"
DELETED_IN_KASEYA = "deleted in Kaseya"
# Payload fields holding Zomentum ids of other records: a record re-created under a new id is referred to by it.
REFERENCE_FIELDS = ("client_company_id", "primary_client_user_id", "linked_client_user_ids")


@dataclass(frozen=True)
class Pair:
    """One id-map row: the pair and what the pull last sent."""

    kaseya_id: str
    zomentum_id: str
    sent: Mapping[str, Any] | None


@dataclass(frozen=True)
class Difference:
    entity: str  # the Zomentum target (clients, client_users, opportunities, items)
    kind: str  # one of CLASSES
    kaseya_id: str | None
    zomentum_id: str | None
    detail: str
    fields: tuple[str, ...] = ()  # drift: the mapped fields that differ
    changed_in: str | None = None  # drift: zomentum | kaseya | both
    desired: Mapping[str, Any] | None = None  # what Zomentum should hold (drift, gone_from_zomentum)
    current: Mapping[str, Any] | None = field(default=None, compare=False)  # Zomentum's record as listed


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) < 10 or value[4:5] != "-":
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def zomentum_view(record: Mapping[str, Any], sent: Mapping[str, Any]) -> dict[str, Any]:
    """The Zomentum record's values of the fields the pull sends (absent read as null). A date-time Zomentum
    writes in its own form (`...T00:00:00.000Z` for `...T00:00:00+00:00`) is the value sent when it is the
    same instant."""
    view = {}
    for key, value in sent.items():
        current = record.get(key)
        sent_moment = _moment(value)
        view[key] = value if sent_moment is not None and _moment(current) == sent_moment else current
    return view


def classify(entity: str, pairs: Sequence[Pair], kaseya_ids: set[str], zomentum: Mapping[str, Mapping[str, Any]],
             desired: Mapping[str, Mapping[str, Any]], linked: Mapping[str, str] | None = None, *,
             marked: set[str] | frozenset[str] = frozenset()) -> list[Difference]:
    """The differences of one entity. `kaseya_ids`: the Kaseya records listed now; `zomentum`: the Zomentum
    records listed now by id; `desired`: Kaseya id -> the mapping of its current record (absent: what was
    sent); `linked`: Zomentum id -> the Kaseya id its link field names (opportunities); `marked`: the Zomentum
    records already marked deleted in Kaseya (reported once, when found, and not again)."""
    found: list[Difference] = []
    known_zomentum = {pair.zomentum_id for pair in pairs}
    for pair in pairs:
        kid, zid = pair.kaseya_id, pair.zomentum_id
        in_kaseya, record = kid in kaseya_ids, zomentum.get(zid)
        if not in_kaseya and record is None:
            found.append(Difference(entity, ORPHAN, kid, zid, "the id map links two records that no longer exist"))
        elif not in_kaseya:
            if zid in marked:
                continue
            found.append(Difference(entity, GONE_FROM_KASEYA, kid, zid,
                                    "deleted in Kaseya; the Zomentum record is still there", current=record))
        elif record is None:
            want = desired.get(kid) or pair.sent
            found.append(Difference(entity, GONE_FROM_ZOMENTUM, kid, zid,
                                    "deleted in Zomentum; Kaseya still has the record", desired=want))
        elif pair.sent is not None:
            want = desired.get(kid) or pair.sent
            in_zomentum = changed_fields(pair.sent, zomentum_view(record, pair.sent))
            in_kaseya_fields = changed_fields(pair.sent, want)
            if in_zomentum or in_kaseya_fields:
                where = "both" if in_zomentum and in_kaseya_fields else "zomentum" if in_zomentum else "kaseya"
                fields = tuple(sorted(set(in_zomentum) | set(in_kaseya_fields)))
                found.append(Difference(entity, DRIFT, kid, zid, f"changed in {where}: {', '.join(fields)}",
                                        fields=fields, changed_in=where, desired=want, current=record))
    for zid, kid in sorted((linked or {}).items()):
        if zid in known_zomentum or zid in marked:
            continue
        what = "names a Kaseya record that does not exist" if kid not in kaseya_ids else "is unknown to the id map"
        found.append(Difference(entity, ORPHAN, kid, zid, f"carries the Kaseya link {kid}, which {what}",
                                current=zomentum.get(zid)))
    return found


def counts(differences: Sequence[Difference], entities: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per entity, the differences of each class (every class listed, zeros included)."""
    table = {entity: dict.fromkeys(CLASSES, 0) for entity in entities}
    for difference in differences:
        table.setdefault(difference.entity, dict.fromkeys(CLASSES, 0))[difference.kind] += 1
    return table


@dataclass(frozen=True)
class Repair:
    """One Zomentum write a repair sends: `create` a record, `update` some fields, or `mark` it deleted in
    Kaseya (an update of its custom field)."""

    entity: str
    action: str  # recreate | update | mark
    kaseya_id: str | None
    zomentum_id: str | None  # for a re-create, the id of the record deleted (later references are renamed)
    body: Mapping[str, Any]
    fields: tuple[str, ...] = ()

    @property
    def method(self) -> str:
        return "POST" if self.action == "recreate" else "PUT"


def repair_plan(differences: Sequence[Difference], *, repairs_linked: bool) -> list[Repair]:
    """What `--repair` sends, in the differences' order. `repairs_linked`: the mode lets the pull write linked
    records (Kaseya as CRM): drift is repaired and Zomentum deletions re-created; otherwise only Kaseya
    deletions are marked. The mark's body carries no custom field id: the sender names the field."""
    plan: list[Repair] = []
    for difference in differences:
        if difference.kind == GONE_FROM_KASEYA:
            plan.append(Repair(difference.entity, "mark", difference.kaseya_id, difference.zomentum_id,
                               {KASEYA_RECORD_FIELD: DELETED_IN_KASEYA}))
        elif not repairs_linked or difference.desired is None:
            continue
        elif difference.kind == GONE_FROM_ZOMENTUM:
            plan.append(Repair(difference.entity, "recreate", difference.kaseya_id, difference.zomentum_id,
                               dict(difference.desired)))
        elif difference.kind == DRIFT:
            current = zomentum_view(difference.current or {}, difference.desired)
            body = partial_update(current, difference.desired)
            if body:
                plan.append(Repair(difference.entity, "update", difference.kaseya_id, difference.zomentum_id, body,
                                   tuple(sorted(body))))
    return plan


def with_new_ids(body: Mapping[str, Any], renamed: Mapping[str, str]) -> dict[str, Any]:
    """`body` with the Zomentum ids of re-created records replaced by their new ids."""
    if not renamed:
        return dict(body)
    result = dict(body)
    for name in REFERENCE_FIELDS:
        value = result.get(name)
        if isinstance(value, str):
            result[name] = renamed.get(value, value)
        elif isinstance(value, list):
            result[name] = [renamed.get(item, item) if isinstance(item, str) else item for item in value]
    return result


def drift_share(differences: Sequence[Difference], linked_records: int) -> float:
    """Drifted records per linked record (0 when nothing is linked)."""
    drifted = sum(1 for difference in differences if difference.kind == DRIFT)
    return drifted / linked_records if linked_records else 0.0
