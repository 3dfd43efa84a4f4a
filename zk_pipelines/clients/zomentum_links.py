"""The Zomentum custom fields that hold a record's Kaseya link (`domain/links.LINK_FIELDS`), found or created:
the pull's load, the push and the reconciliation write them."""

from __future__ import annotations

from zk_pipelines.clients.zomentum import ZomentumClient
from zk_pipelines.domain.links import LINK_FIELDS


def ensure_link_field(client: ZomentumClient, target: str = "opportunities") -> str:
    """The id of the target's custom field holding the Kaseya link, created if missing."""
    entity_type, name = LINK_FIELDS[target]
    for custom_field in client.custom_fields(entity_type):
        if custom_field.display_name.lower() == name.lower():
            return custom_field.id
    return client.create_custom_field(entity_type, name, "text").id
