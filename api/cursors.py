"""Pagination cursors: where the next page of a newest-first list starts, as a short URL-safe token.

A keyset cursor `<microseconds since 1970 UTC>_<message id hex>` names the last row
of the page; the next page is every row before it in (time, id) order, found through
the index at the cost of a first page. Rows without a sort time (a seed-style insert
of a sent message has no `sent_at`) come first in that order and cannot be named by a
time, so a page that ends on one gets an offset cursor `o<rows to skip>` instead.

Each cursor ends with `.<check>`: an HMAC over the position and the list it was issued
for, so a cursor typed by hand, edited, or taken from the other list is refused (400)
instead of silently answering some other page. The check guards against mistakes, not
attackers: a cursor grants nothing that `offset` does not already give the same caller.
Its key is therefore a constant of this code rather than a secret setting: every API
process and every version that shares this format agree on it with nothing to
configure, and cursors handed out before a restart or by another instance keep working.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from uuid import UUID

POSITION = r"(-?[0-9]{1,18}_[0-9a-f]{32}|o[0-9]{1,10})"
CHECK_CHARS = 16
PATTERN = rf"^{POSITION}\.[0-9a-f]{{{CHECK_CHARS}}}$"
KEY = b"messaging page cursor v1"
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


def encode(cursor: Cursor, listing: str) -> str:
    """The token for a position in the list named `listing` (`sent`, `failed`)."""
    if isinstance(cursor, Offset):
        return sign(f"o{cursor.offset}", listing)
    return sign(f"{(cursor.time - EPOCH) // ONE_MICROSECOND}_{cursor.id.hex}", listing)


def sign(position: str, listing: str) -> str:
    """A position's text (matching POSITION) with the check that makes it a cursor of `listing`."""
    return f"{position}.{_check(position, listing)}"


def decode(text: str, listing: str) -> Cursor:
    """The position a token names; ValueError unless this API issued it for `listing` (check PATTERN first)."""
    position, _, check = text.rpartition(".")
    if not hmac.compare_digest(check, _check(position, listing)):
        raise ValueError("not a cursor of this list")
    if position.startswith("o"):
        return Offset(int(position[1:]))
    micros, hex_id = position.split("_")
    return Keyset(_time_from_micros(int(micros)), UUID(hex=hex_id))


def after(sort_time: datetime | None, message_id: UUID, *, end_offset: int) -> Cursor:
    """The cursor for the page after a row; `end_offset` is that row's position + 1 in offset paging."""
    if sort_time is None:
        return Offset(end_offset)
    return Keyset(sort_time, message_id)


def _check(position: str, listing: str) -> str:
    return hmac.new(KEY, f"{listing}:{position}".encode(), hashlib.sha256).hexdigest()[:CHECK_CHARS]


def _time_from_micros(micros: int) -> datetime:
    # Beyond the years datetime can hold, "before" the cursor means "before any row" (or after all).
    try:
        return EPOCH + micros * ONE_MICROSECOND
    except OverflowError:
        return (datetime.max if micros > 0 else datetime.min).replace(tzinfo=timezone.utc)
