"""The links between the two systems' records: the URLs a person follows from one record to its counterpart
(built from the settings' link templates), the Zomentum custom fields that hold the Kaseya links, and the pairs
the push's markers in Kaseya records name. Both directions use them: the pull's load and the reconciliation, the
push's document and its plan, and `zk state rebuild`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from typing import Any

from zk_pipelines.domain.entities import KASEYA_LINK_ENTITY, ZOMENTUM_LINK_ENTITY, ZOMENTUM_TARGETS
from zk_pipelines.domain.push_plan.markers import client_markers, document_markers
from zk_pipelines.domain.settings_check import ResolvedSettings

# Every record the pull creates or matches carries its Kaseya link in a custom field of its own: the
# opportunity's is also how it is matched on first sight; all of them let `zk state rebuild` restore a lost id
# map, and let a load notice that the id map does not know a record Zomentum says is ours.
# Zomentum target -> (custom field entity type, field name "Kaseya <kind>").
LINK_FIELDS = {target.name: (target.custom_field_entity, target.link_field) for target in ZOMENTUM_TARGETS}


def kaseya_link(resolved: ResolvedSettings, target: str, kaseya_id: str) -> str:
    return resolved.settings.links.kaseya.url(KASEYA_LINK_ENTITY[target], kaseya_id)


def zomentum_link(resolved: ResolvedSettings, target: str, zomentum_id: str) -> str:
    return resolved.settings.links.zomentum.url(ZOMENTUM_LINK_ENTITY[target], zomentum_id)


# The push leaves markers in what it writes to Kaseya (`domain.push_plan.markers`): an account it created carries
# `[zk_pipelines client <id>]` in its description, an opportunity it wrote `[zk_pipelines document <id>]` in
# its. They pair records the push made even when Zomentum holds no link to them (the push writes only the
# opportunity's, and last). Quotes carry the document marker in their name too, but Kaseya's list of quotes
# names neither account nor opportunity (one more call per quote), and a push finds its quote again by that
# marker among its account's quotes: the quotes are not read.
MARKED_ENTITIES = ("clients", "opportunities")


def marker_pairs(accounts: Iterable[Mapping[str, Any]], opportunities: Iterable[Mapping[str, Any]],
                 documents: Mapping[str, Mapping[str, Any]], zomentum_ids: Mapping[str, Set[str]]
                 ) -> list[tuple[str, str, str]]:
    """The id-map pairs (entity, Kaseya id, Zomentum id) that the push's markers in Kaseya records name: an
    account marked with a client is that client's; an opportunity marked with a document is that document's
    opportunity, and its account the document's client. `accounts` and `opportunities` are Kaseya rows,
    `documents` the Zomentum documents by id, `zomentum_ids` the ids of the Zomentum records that exist, by
    entity: a marker naming what Zomentum no longer holds pairs nothing. A client's own marker comes before
    what a document says of its client (the first pair of a record is the one kept)."""
    pairs = [("clients", str(account["id"]), client_id)
             for account in accounts for client_id in client_markers(account.get("description"))]
    for opportunity in opportunities:
        for document_id in document_markers(opportunity.get("description")):
            document = documents.get(document_id) or {}
            if document.get("opportunity_id"):
                pairs.append(("opportunities", str(opportunity["id"]), str(document["opportunity_id"])))
            if document.get("client_company_id") and opportunity.get("accountId") is not None:
                pairs.append(("clients", str(opportunity["accountId"]), str(document["client_company_id"])))
    return [pair for pair in pairs if pair[2] in zomentum_ids.get(pair[0], ())]
