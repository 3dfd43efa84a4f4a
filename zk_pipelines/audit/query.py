"""What a person types to select ledger entries, turned into what the ledger stores: entity names (the
Zomentum entity, with the Kaseya and singular names accepted), error/success, a moment ("2h" ago or an ISO
date), a run id or its first characters."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from zk_pipelines.domain.entities import ZOMENTUM_TARGETS

# Every name a person may use for an entity the pull syncs -> the ledger's name.
ENTITY_ALIASES: dict[str, str] = {alias: target.name for target in ZOMENTUM_TARGETS for alias in target.aliases}

# `zk history KIND ID`: the kinds of record whose pairs the id map holds.
HISTORY_KINDS: dict[str, str] = {target.kind: target.name for target in ZOMENTUM_TARGETS}

_RELATIVE = re.compile(r"^\s*(\d+)\s*(m|min|mins|minutes?|h|hours?|d|days?|w|weeks?)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 604800}


class SelectionError(ValueError):
    """A selection the ledger cannot answer: the message says what is accepted."""


def parse_since(text: str, now: datetime) -> datetime:
    """`30m`, `2h`, `3d`, `1w` before `now`, or an ISO date or date-time (UTC unless it has an offset)."""
    relative = _RELATIVE.match(text)
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2).lower()
        seconds = _UNIT_SECONDS["m" if unit.startswith("m") else unit[0]]
        try:
            return now - timedelta(seconds=amount * seconds)
        except OverflowError:  # before year 1: datetime's range ends there
            raise SelectionError(f"--since {text!r} reaches back before year 1; give a shorter duration or a "
                                 "date") from None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise SelectionError(f"--since {text!r}: give a duration back from now (30m, 2h, 3d, 1w) or an ISO date "
                             "or date-time (2026-08-01, 2026-08-01T14:00, 2026-08-01T14:00+02:00)") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def resolve_entity(name: str, ledger_entities: Iterable[str]) -> str:
    """The ledger's name for `name`: an alias of a synced entity, or a name the ledger holds as it is
    (e.g. the push's `documents`, the rejected `employees`)."""
    wanted = name.strip().lower()
    known = sorted(set(ledger_entities))
    if wanted in ENTITY_ALIASES:
        return ENTITY_ALIASES[wanted]
    if wanted in known:
        return wanted
    raise SelectionError(f"--entity {name!r} is not an entity of the ledger; use one of "
                         f"{', '.join(sorted({*ENTITY_ALIASES.values(), *known}))} "
                         "(Kaseya's names and singulars work too: account, contact, product)")


def errors_wanted(status: str | None) -> bool | None:
    """`error`: failed and rejected entries only; `success`: every other outcome; None: both."""
    return None if status is None else status == "error"
