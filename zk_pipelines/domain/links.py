"""The links between the two systems' records: the URLs a person follows from one record to its counterpart
(built from the settings' link templates), and the Zomentum opportunity custom field that holds the Kaseya link.
Both directions use them: the pull's load and the reconciliation, the push's document and its plan."""

from __future__ import annotations

from zk_pipelines.domain.entities import KASEYA_LINK_ENTITY, ZOMENTUM_LINK_ENTITY
from zk_pipelines.domain.settings_check import ResolvedSettings

# The custom field on Zomentum opportunities that links to the Kaseya opportunity.
KASEYA_LINK_FIELD = "Kaseya opportunity"

# Every record the pull creates or matches carries its Kaseya link in a custom field of its own: the
# opportunity's is also how it is matched on first sight; all of them let `zk state rebuild` restore a lost id
# map, and let a load notice that the id map does not know a record Zomentum says is ours.
# Zomentum target -> (custom field entity type, field name).
LINK_FIELDS = {"clients": ("client_company", "Kaseya account"), "client_users": ("client_user", "Kaseya contact"),
               "opportunities": ("opportunity", KASEYA_LINK_FIELD), "items": ("item", "Kaseya product")}


def kaseya_link(resolved: ResolvedSettings, target: str, kaseya_id: str) -> str:
    return resolved.settings.links.kaseya.url(KASEYA_LINK_ENTITY[target], kaseya_id)


def zomentum_link(resolved: ResolvedSettings, target: str, zomentum_id: str) -> str:
    return resolved.settings.links.zomentum.url(ZOMENTUM_LINK_ENTITY[target], zomentum_id)
