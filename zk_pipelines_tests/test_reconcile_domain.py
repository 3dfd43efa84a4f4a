"""The reconciliation's pure rules: classification of each pair and link, and the repair plan per mode."""

from __future__ import annotations

import pytest

from zk_pipelines.domain.reconcile import (
    DELETED_IN_KASEYA,
    DRIFT,
    GONE_FROM_KASEYA,
    GONE_FROM_ZOMENTUM,
    KASEYA_RECORD_FIELD,
    ORPHAN,
    Difference,
    Pair,
    classify,
    counts,
    drift_share,
    repair_plan,
    with_new_ids,
    zomentum_view,
)

SENT = {"name": "Acme", "website": "https://acme.example", "estimated_close_date": "2026-12-31T00:00:00+00:00"}


def one(pair: Pair, *, in_kaseya: bool = True, zomentum: dict | None = None, desired: dict | None = None,
        marked: frozenset[str] = frozenset()) -> list[Difference]:
    records = {pair.zomentum_id: {"id": pair.zomentum_id, **zomentum}} if zomentum is not None else {}
    return classify("clients", [pair], {pair.kaseya_id} if in_kaseya else set(), records,
                    {pair.kaseya_id: desired} if desired else {}, marked=marked)


@pytest.mark.parametrize(("in_kaseya", "zomentum", "desired", "kind", "changed_in", "fields"), [
    (True, SENT, None, None, None, ()),
    (True, {**SENT, "estimated_close_date": "2026-12-31T00:00:00.000Z"}, None, None, None, ()),  # same instant
    (True, {**SENT, "website": "https://by-hand.example"}, None, DRIFT, "zomentum", ("website",)),
    (True, SENT, {**SENT, "name": "Acme Ltd"}, DRIFT, "kaseya", ("name",)),
    (True, {**SENT, "website": None}, {**SENT, "name": "Acme Ltd"}, DRIFT, "both", ("name", "website")),
    (False, SENT, None, GONE_FROM_KASEYA, None, ()),
    (True, None, None, GONE_FROM_ZOMENTUM, None, ()),
    (False, None, None, ORPHAN, None, ()),
])
def test_each_pair_is_classified_by_where_its_records_are_and_what_changed(in_kaseya, zomentum, desired, kind,
                                                                          changed_in, fields):
    found = one(Pair("1", "z1", SENT), in_kaseya=in_kaseya, zomentum=zomentum, desired=desired)
    assert [(d.kind, d.changed_in, d.fields) for d in found] == ([(kind, changed_in, fields)] if kind else [])


def test_a_field_zomentum_does_not_return_reads_as_null_and_a_pair_without_payload_is_not_compared():
    assert zomentum_view({"name": "Acme"}, {"name": "Acme", "phone": "1"}) == {"name": "Acme", "phone": None}
    assert one(Pair("1", "z1", None), zomentum={"name": "anything"}) == []


def test_a_record_already_marked_deleted_in_kaseya_is_not_reported_again():
    assert one(Pair("1", "z1", SENT), in_kaseya=False, zomentum=SENT, marked=frozenset({"z1"})) == []


def test_links_unknown_to_the_id_map_are_orphans_saying_whether_the_kaseya_record_exists():
    found = classify("opportunities", [Pair("1", "z1", None)], {"1", "2"}, {"z1": {}, "z2": {}, "z3": {}}, {},
                     {"z1": "1", "z2": "2", "z3": "9"})
    assert [(d.kind, d.kaseya_id, d.zomentum_id, d.detail) for d in found] == [
        (ORPHAN, "2", "z2", "carries the Kaseya link 2, which is unknown to the id map"),
        (ORPHAN, "9", "z3", "carries the Kaseya link 9, which names a Kaseya record that does not exist"),
    ]


def _differences() -> list[Difference]:
    return [
        *one(Pair("1", "z1", SENT), zomentum={**SENT, "website": "https://by-hand.example"}),
        *one(Pair("2", "z2", SENT)),  # gone from Zomentum
        *one(Pair("3", "z3", SENT), in_kaseya=False, zomentum=SENT),
        *one(Pair("4", "z4", SENT), in_kaseya=False),
    ]


def test_kaseya_as_crm_repairs_drift_recreates_zomentum_deletions_and_marks_kaseya_deletions():
    plan = repair_plan(_differences(), repairs_linked=True)
    assert [(r.action, r.method, r.kaseya_id, r.zomentum_id, dict(r.body)) for r in plan] == [
        ("update", "PUT", "1", "z1", {"website": "https://acme.example"}),
        ("recreate", "POST", "2", "z2", SENT),
        ("mark", "PUT", "3", "z3", {KASEYA_RECORD_FIELD: DELETED_IN_KASEYA}),
    ]


def test_zomentum_as_crm_only_marks_kaseya_deletions():
    plan = repair_plan(_differences(), repairs_linked=False)
    assert [(r.action, r.kaseya_id) for r in plan] == [("mark", "3")]


def test_counts_list_every_class_per_entity_and_drift_share_is_per_linked_record():
    differences = _differences()
    table = counts(differences, ["clients", "items"])
    assert table["clients"] == {GONE_FROM_KASEYA: 1, GONE_FROM_ZOMENTUM: 1, DRIFT: 1, ORPHAN: 1}
    assert table["items"] == {GONE_FROM_KASEYA: 0, GONE_FROM_ZOMENTUM: 0, DRIFT: 0, ORPHAN: 0}
    assert drift_share(differences, 4) == 0.25 and drift_share([], 0) == 0.0


def test_references_to_recreated_records_take_their_new_ids():
    body = {"client_company_id": "old", "linked_client_user_ids": ["u1", "u2"], "primary_client_user_id": "u1"}
    assert with_new_ids(body, {"old": "new", "u1": "v1"}) == {
        "client_company_id": "new", "linked_client_user_ids": ["v1", "u2"], "primary_client_user_id": "v1"}
