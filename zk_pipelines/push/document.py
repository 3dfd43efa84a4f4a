"""The Zomentum side of a push: the document, its current revision's lines, the items behind them, and
the opportunity, client, contact and owner it is pushed with."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from zk_pipelines.clients.http import NotFound
from zk_pipelines.clients.zomentum import ZomentumClient
from zk_pipelines.clients.zomentum_models import (
    CLIENT_USERS,
    CLIENTS,
    DOCUMENTS,
    ITEMS,
    OPPORTUNITIES,
    USERS,
)
from zk_pipelines.domain.bundles import DocumentLineItem, ItemFacts
from zk_pipelines.push.failures import PushFailed


def document_version(document: Mapping[str, Any]) -> str:
    """What makes one push of a document different from another: its current revision. A document Won
    again after a new revision is pushed again; the same revision Won twice is one push."""
    return str(document["current_revision_id"])


@dataclass(frozen=True)
class ZomentumDocument:
    document: Mapping[str, Any]
    lines: tuple[DocumentLineItem, ...]
    items: Mapping[str, ItemFacts]  # every item on the lines (children included) by item id
    opportunity: Mapping[str, Any]
    client: Mapping[str, Any]
    contact: Mapping[str, Any] | None  # the opportunity's primary contact, else the document's
    owner_email: str | None  # the opportunity's owner, else the document's
    client_owner_email: str | None

    @property
    def id(self) -> str:
        return str(self.document["id"])

    @property
    def version(self) -> str:
        return document_version(self.document)

    @property
    def status(self) -> str:
        return str(self.document["status"])


def _all_lines(lines: Iterable[DocumentLineItem]) -> Iterable[DocumentLineItem]:
    for line in lines:
        yield line
        yield from _all_lines(line.children)


def read_document(zomentum: ZomentumClient, document_id: str, *, active_users: Mapping[str, str],
                  with_lines: bool) -> ZomentumDocument:
    """Everything the push reads from Zomentum. `active_users` is e-mail -> user id (the settings
    catalog's); the e-mail of an owner not among them is read from the user itself. Lines and items are
    read only when the quote is pushed."""
    try:
        document = zomentum.get(DOCUMENTS, document_id)
    except NotFound:
        raise PushFailed(document_id, "Zomentum has no such document") from None
    if not document.get("opportunity_id"):
        raise PushFailed(document_id, "the document is not linked to a Zomentum opportunity; link it to the "
                                      "opportunity it quotes (the Kaseya quote belongs to one) and push again",
                         document_version=document_version(document))
    opportunity = zomentum.get(OPPORTUNITIES, document["opportunity_id"])
    client = zomentum.get(CLIENTS, document["client_company_id"])
    contact_id = opportunity.get("primary_client_user_id") or document.get("client_user_id")
    contact = zomentum.get(CLIENT_USERS, contact_id) if contact_id else None

    emails: dict[str, str | None] = {user_id: email for email, user_id in active_users.items()}

    def email_of(user_id: str | None) -> str | None:
        if not user_id:
            return None
        if user_id not in emails:
            try:
                emails[user_id] = zomentum.get(USERS, user_id).get("email")
            except NotFound:
                emails[user_id] = None
        return emails[user_id]

    lines: tuple[DocumentLineItem, ...] = ()
    items: dict[str, ItemFacts] = {}
    if with_lines:
        lines = zomentum.document_line_items(document_id, document_version(document))
        for item_id in dict.fromkeys(line.item_id for line in _all_lines(lines) if line.item_id):
            try:
                items[item_id] = ItemFacts.from_item(zomentum.get(ITEMS, item_id))
            except NotFound:
                continue  # deleted from the catalogue: the line carries all the plan needs but a bundle level
    return ZomentumDocument(
        document=document, lines=lines, items=items, opportunity=opportunity, client=client, contact=contact,
        owner_email=email_of(opportunity.get("owner_user_id") or document.get("owner_user_id")),
        client_owner_email=email_of(client.get("owner_user_id")),
    )
