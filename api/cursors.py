"""Pagination cursors: where the next page of a newest-first list starts, as a short URL-safe token.

A keyset cursor `<microseconds since 1970 UTC>_<message id hex>` names the last row
of the page; the next page is every row before it in (time, id) order, found through
the index at the cost of a first page. Rows without a sort time (a seed-style insert
of a sent message has no `sent_at`) come first in that order and cannot be named by a
time, so a page that ends on one gets an offset cursor `o<rows to skip>` instead.
Every string matching PATTERN is a cursor this API accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from uuid import UUID

PATTERN = r"^(-?[0-9]{1,18}_[0-9a-fA-F]{32}|o[0-9]{1,10})$"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ONE_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class Keyset:
    """Rows strictly before (time, id) in newest-first order."""

    time: datetime
    id: UUID


@dataclass(frozen=True)
class Offset:
    """Rows from this position on."""

    offset: int


Cursor = Keyset | Offset


def encode(cursor: Cursor) -> str:
    if isinstance(cursor, Offset):
        return f"o{cursor.offset}"
    micros = (cursor.time - EPOCH) // ONE_MICROSECOND
    return f"{micros}_{cursor.id.hex}"


def decode(text: str) -> Cursor:
    """The cursor a string names; ValueError when it is not one (check PATTERN first)."""
    if text.startswith("o"):
        return Offset(int(text[1:]))
    micros, hex_id = text.split("_")
    return Keyset(_time_from_micros(int(micros)), UUID(hex=hex_id))


def after(sort_time: datetime | None, message_id: UUID, *, end_offset: int) -> Cursor:
    """The cursor for the page after a row; `end_offset` is that row's position + 1 in offset paging."""
    if sort_time is None:
        return Offset(end_offset)
    return Keyset(sort_time, message_id)


def _time_from_micros(micros: int) -> datetime:
    # Beyond the years datetime can hold, "before" the cursor means "before any row" (or after all).
    try:
        return EPOCH + micros * ONE_MICROSECOND
    except OverflowError:
        return (datetime.max if micros > 0 else datetime.min).replace(tzinfo=timezone.utc)
