"""The pairs the push's markers in Kaseya records name (`domain.links.marker_pairs`), as `zk state rebuild`
restores them: no Dagster, no HTTP."""

from __future__ import annotations

import pytest

from zk_pipelines.domain.links import marker_pairs

EXISTING = {"clients": {"C1", "C2"}, "opportunities": {"O1"}}
DOCUMENTS = {"D1": {"id": "D1", "opportunity_id": "O1", "client_company_id": "C1"},
             "D2": {"id": "D2", "opportunity_id": None, "client_company_id": "C2"},
             "D9": {"id": "D9", "opportunity_id": "O-gone", "client_company_id": "C-gone"}}


@pytest.mark.parametrize(("accounts", "opportunities", "expected"), [
    # An account the push created carries its client's marker.
    ([{"id": 10, "description": "Dental practice\n\n[zk_pipelines client C1]"}], [], [("clients", "10", "C1")]),
    # An opportunity the push wrote names its document: the document's opportunity, and its client for the account.
    ([], [{"id": 20, "accountId": 11, "description": "[zk_pipelines document D1]"}],
     [("opportunities", "20", "O1"), ("clients", "11", "C1")]),
    # A client's own marker comes before what a document says of the account's client.
    ([{"id": 10, "description": "[zk_pipelines client C2]"}],
     [{"id": 20, "accountId": 10, "description": "[zk_pipelines document D1]"}],
     [("clients", "10", "C2"), ("opportunities", "20", "O1"), ("clients", "10", "C1")]),
    # A document without an opportunity still names the client.
    ([], [{"id": 21, "accountId": 12, "description": "[zk_pipelines document D2]"}], [("clients", "12", "C2")]),
    # What Zomentum no longer holds, a document it does not know, and text without a marker pair nothing.
    ([{"id": 13, "description": "[zk_pipelines client C-gone]"}, {"id": 14, "description": "Inbound"},
      {"id": 15, "description": None}],
     [{"id": 22, "accountId": 13, "description": "[zk_pipelines document D9] [zk_pipelines document D-unknown]"},
      {"id": 23, "accountId": 14, "description": "[zk_pipelines client C1]"}],
     []),
])
def test_the_push_markers_in_kaseya_records_name_their_zomentum_records(accounts, opportunities, expected):
    assert marker_pairs(accounts, opportunities, DOCUMENTS, EXISTING) == expected
