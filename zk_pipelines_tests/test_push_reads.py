"""A push reads from Kaseya only what belongs to its document (account, contact, opportunity, quote, lines, the
catalogue items its lines need): the lists the hourly pull keeps fresh (statuses, warehouses, categories,
employees, lookup tables) come from the tenant's DuckDB file; stale or missing, they are read from Kaseya."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from benchmarks.reliability_report import WonDocument, make_won_documents
from zk_pipelines.push.catalogue import CATALOGUE_MAX_AGE
from zk_pipelines.push.orchestration import PushSources, push_document
from zk_pipelines.storage.database import connect
from zk_pipelines_tests.pipeline_harness import PipelineHarness, reset_sandboxes, step_errors

LIST_ROUTES = ("/v2/system/lookup/{tableName}", "/v2/crm/opportunities/statuses/Lookup",
               "/v2/hr/employees/searchselect", "/v2/inventory/warehouses/lookup",
               "/v2/inventory/products/categories/lookup", "/v2/crm/accounts/types/lookup")
BATCH = (WonDocument(True, 0, (("Rack Shelf 1U", 2), ("Network Assessment", 1))),
         WonDocument(False, 0, (("New Hire Onboarding Bundle", 1), ("Rack Shelf 1U", 1))),
         WonDocument(True, 1, (("Secure Workstation Bundle", 2),)))


@pytest.fixture
def pulled(sandboxes, tmp_path) -> PipelineHarness:
    kaseya, zomentum = reset_sandboxes(sandboxes)
    harness = PipelineHarness(kaseya, zomentum, tmp_path)
    result = harness.run_hour(harness.current_hour - timedelta(hours=1))
    assert result.success, step_errors(result)
    return harness


def push_all(harness: PipelineHarness, documents: list[str]) -> list[dict]:
    """Push each document as `zk push` does; the Kaseya requests the pushes made."""
    harness.kaseya.state.clear_requests()
    sources = PushSources.from_config(harness_config(harness))
    for number, document_id in enumerate(documents):
        outcome = push_document(sources, document_id, run_id=f"push-{number}")
        assert outcome.ids.opportunity_id
    return harness.kaseya.state.requests()


def harness_config(harness: PipelineHarness):
    import os

    from zk_pipelines.config import TenantConfig

    return TenantConfig.from_env(os.environ, harness.variables)


@pytest.mark.slow
def test_a_push_after_the_pull_reads_only_its_documents_records(pulled):
    documents = make_won_documents(pulled.kaseya, pulled.zomentum, BATCH)

    sent = push_all(pulled, documents)

    reads = [e for e in sent if e["method"] == "GET"]
    lines = sum(1 for e in sent if e["method"] == "POST" and e["route"].startswith("/v2/crm/quotes/{quotationId}/"))
    assert lines >= 5
    assert not [e["route"] for e in reads if e["route"] in LIST_ROUTES]
    # At most six reads per document (its account, contact, opportunity, quote search, the quote and its lines
    # read back) plus one per quote line (the catalogue item it needs).
    by_route = Counter(e["route"] for e in reads)
    assert len(reads) <= 6 * len(documents) + lines, " ".join(f"{n}x{route}" for route, n in by_route.items())


@pytest.mark.slow
def test_a_push_reads_the_lists_from_kaseya_when_the_pulls_are_stale(pulled):
    (document_id,) = make_won_documents(pulled.kaseya, pulled.zomentum, BATCH[:1])
    with connect(pulled.database) as connection:
        for table in ("kaseya_lookups", "kaseya_opportunity_statuses", "kaseya_warehouses"):
            connection.execute(f"UPDATE raw.{table} SET extracted_at = extracted_at - ?",
                               [CATALOGUE_MAX_AGE + timedelta(minutes=1)])

    sent = push_all(pulled, [document_id])

    routes = Counter(e["route"] for e in sent if e["method"] == "GET")
    assert routes["/v2/system/lookup/{tableName}"] >= 2  # quote statuses, labour periods, and what the push needs
    assert routes["/v2/crm/opportunities/statuses/Lookup"] == routes["/v2/inventory/warehouses/lookup"] == 1
    assert routes["/v2/hr/employees/searchselect"] == 0  # still fresh: from the pull
