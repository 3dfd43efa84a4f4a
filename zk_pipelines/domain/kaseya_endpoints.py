"""The Kaseya operations the pipeline uses, as data: one row per endpoint (name, method, route template), the
form a path parameter must have, and the ids a quote line is added with. Both the client (`clients/kaseya.py`,
which sends them) and the push's plan (`domain/push_plan/requests.py`, which names the requests a push will
send) read this one table; what else we know of Kaseya's wire is in `clients/kaseya_wire.py`.

ASSUMED (nobody has published the answer; correct here against a real tenant):
- Endpoints marked `published=False` below are not in Kaseya's published contract: quote header create and
  update, a quote's line-item list, inventory product create. Quoting vendors use unpublished endpoints for
  these; ours follow the contract's own conventions.
- Quote line item type ids in `POST .../lineItems/{itemTypeId}/{distributerTypeId}`.
- Ids in paths are whole numbers (`{..._id}`) and lookup table names are words (`{table_name}`); any other
  value is refused before it becomes part of a path.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

from zk_pipelines.domain.settings import KaseyaItemType


class NotAKaseyaId(ValueError):
    """A path parameter that is not of its form (the message names it)."""


_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


def path_segment(name: str, value: Any) -> str:
    """A path parameter as it goes into the path: an id as its digits, a table name as a word. Anything else
    (`../../etc/passwd`, `1/notes`) would change which route the request reaches."""
    if name == "table_name":
        if isinstance(value, str) and _TABLE_NAME.fullmatch(value):
            return quote(value, safe="")
        raise NotAKaseyaId(f"{name} {value!r} is not a lookup table name (letters, digits and _)")
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= 0:
        return str(int(value))
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return str(int(value))
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        return str(int(value))
    raise NotAKaseyaId(f"{name} {value!r} is not a Kaseya id (a whole number)")


@dataclass(frozen=True)
class Endpoint:
    """One Kaseya operation the pipeline uses. `template` is also the rate-limit key (Kaseya counts
    calls per endpoint, i.e. per route template)."""

    name: str
    method: str
    template: str
    published: bool = True

    @property
    def label(self) -> str:
        return f"{self.method} {self.template}"

    def path(self, **params: Any) -> str:
        """The path with its parameters in place; raises `NotAKaseyaId` for a value not of its form."""
        return self.template.format(**{name: path_segment(name, value) for name, value in params.items()})


def _endpoints(*rows: Endpoint) -> dict[str, Endpoint]:
    return {row.name: row for row in rows}


ENDPOINTS: dict[str, Endpoint] = _endpoints(
    Endpoint("authenticate", "POST", "/v2/security/authenticate"),
    Endpoint("refresh_token", "POST", "/v2/security/refreshtoken"),
    Endpoint("user_info", "GET", "/v2/security/userinfo"),
    Endpoint("accounts", "GET", "/v2/crm/accounts/summary"),
    Endpoint("account", "GET", "/v2/crm/accounts/summary/{account_id}"),
    Endpoint("account_location", "GET", "/v2/crm/accounts/{account_id}/locations/{location_id}"),
    Endpoint("account_locations", "GET", "/v2/crm/accounts/{account_id}/locations/lookup"),
    Endpoint("account_types", "GET", "/v2/system/accounttypes/lookup"),
    Endpoint("create_account", "POST", "/v2/crm/accounts"),
    Endpoint("update_account", "PUT", "/v2/crm/accounts/{account_id}"),
    Endpoint("contacts", "GET", "/v2/crm/contacts/summary"),
    Endpoint("contact", "GET", "/v2/crm/contacts/summary/{contact_id}"),
    Endpoint("search_contacts", "GET", "/v2/crm/contacts/search"),
    Endpoint("create_contact", "POST", "/v2/crm/contacts/summary"),
    Endpoint("update_contact", "PUT", "/v2/crm/contacts/{contact_id}"),
    Endpoint("opportunities", "GET", "/v2/crm/opportunities"),
    Endpoint("opportunity", "GET", "/v2/crm/opportunities/{opportunity_id}"),
    Endpoint("create_opportunity", "POST", "/v2/crm/opportunities"),
    Endpoint("update_opportunity", "PUT", "/v2/crm/opportunities/{opportunity_id}"),
    Endpoint("add_opportunity_note", "POST", "/v2/crm/opportunities/{opportunity_id}/notes"),
    Endpoint("opportunity_statuses", "GET", "/v2/crm/opportunities/statuses/Lookup"),
    Endpoint("products", "GET", "/v2/inventory/products/searchselect"),
    Endpoint("product_pricing_levels", "GET", "/v2/inventory/products/{product_index_id}/pricingLevels"),
    Endpoint("product_suppliers", "GET", "/v2/inventory/products/{product_index_id}/suppliers/lookup"),
    Endpoint("product_default_cost", "GET", "/v2/inventory/products/{product_index_id}/defaultcost"),
    Endpoint("create_product", "POST", "/v2/inventory/products", published=False),
    Endpoint("product_categories", "GET", "/v2/inventory/products/categories/lookup"),
    Endpoint("create_product_category", "POST", "/v2/inventory/products/categories"),
    Endpoint("warehouses", "GET", "/v2/inventory/warehouses/lookup"),
    Endpoint("employees", "GET", "/v2/hr/employees/searchselect"),
    Endpoint("employees_lookup", "GET", "/v2/hr/employees/lookup"),
    Endpoint("quotes", "GET", "/v2/crm/quotes/summary"),
    Endpoint("quote", "GET", "/v2/crm/quotes/{quote_id}"),
    Endpoint("create_quote", "POST", "/v2/crm/quotes", published=False),
    Endpoint("update_quote", "PUT", "/v2/crm/quotes/{quote_id}", published=False),
    Endpoint("quote_line_items", "GET", "/v2/crm/quotes/{quote_id}/lineItems", published=False),
    Endpoint("quote_line_item", "GET", "/v2/crm/quotes/{quote_id}/lineItems/{line_item_id}"),
    Endpoint("add_quote_line_item", "POST", "/v2/crm/quotes/{quote_id}/lineItems/{item_type_id}/{distributer_type_id}"),
    Endpoint("update_quote_line_item", "PUT", "/v2/crm/quotes/{quote_id}/lineItems/{line_item_id}"),
    Endpoint("create_service", "POST", "/v2/admin/finance/services/services"),
    Endpoint("services_lookup", "GET", "/v2/admin/finance/services/lookup"),
    Endpoint("lookup", "GET", "/v2/system/lookup/{table_name}"),
    Endpoint("contracts", "GET", "/v2/finance/contracts/summary"),
    Endpoint("timelogs", "GET", "/v2/timelogs"),
)

# ASSUMED: `itemTypeId` of a quote line by Kaseya item type, and distributor type 0 (`distributerTypeId`) for
# "our own catalogue".
QUOTE_LINE_ITEM_TYPE_IDS: Mapping[KaseyaItemType, int] = MappingProxyType({
    KaseyaItemType.INVENTORY_PRODUCT: 1,
    KaseyaItemType.SERVICE_ITEM: 2,
    KaseyaItemType.LABOUR_LINE: 3,
})
NO_DISTRIBUTOR = 0
