"""Pagination cursors: where the next page of a newest-first list starts, as a short URL-safe token.

A keyset cursor `<microseconds since 1970 UTC>_<message id hex>` names the last row
of the page; the next page is every row before it in (time, id) order, found through
the index at the cost of a first page. Rows without a sort time (a seed-style insert
of a sent message has no `sent_at`) come first in that order and cannot be named by a
time, so a page that ends on one gets an offset cursor `o<rows to skip>` instead.

Each cursor ends with `.<signature>` (itsdangerous, HMAC-SHA256 over the position and the
list it was issued for) under the app's SECRET_KEY. A cursor typed by hand, edited, taken
from the other list, or issued by a deployment with another key is refused (400) instead of
silently answering some other page. Without SECRET_KEY the key is made once and kept in
PostgreSQL, so every API process, and every restart, signs and checks with the same one.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from uuid import UUID

from flask import current_app
from itsdangerous import BadSignature, Signer

from api import runtime

POSITION = r"(-?[0-9]{1,18}_[0-9a-f]{32}|o[0-9]{1,10})"
SIGNATURE_CHARS = 43  # an HMAC-SHA256 in unpadded URL-safe base64
PATTERN = rf"^{POSITION}\.[A-Za-z0-9_-]{{{SIGNATURE_CHARS}}}$"
SHARED_KEY_NAME = "page_cursors"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ONE_MICROSECOND = timedelta(microseconds=1)
_loading_key = threading.Lock()


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


def encode(cursor: Cursor, listing: str, key: str) -> str:
    """The token for a position in the list named `listing` (`sent`, `failed`), signed with `key`."""
    if isinstance(cursor, Offset):
        return sign(f"o{cursor.offset}", listing, key)
    return sign(f"{(cursor.time - EPOCH) // ONE_MICROSECOND}_{cursor.id.hex}", listing, key)


def sign(position: str, listing: str, key: str) -> str:
    """A position's text (matching POSITION) with the signature that makes it a cursor of `listing`."""
    return _signer(listing, key).sign(position).decode()


def decode(text: str, listing: str, key: str) -> Cursor:
    """The position a token names; ValueError unless `key` signed it for `listing` (check PATTERN first)."""
    try:
        position = _signer(listing, key).unsign(text).decode()
    except BadSignature:
        raise ValueError("not a cursor of this list") from None
    if position.startswith("o"):
        return Offset(int(position[1:]))
    micros, hex_id = position.split("_")
    return Keyset(_time_from_micros(int(micros)), UUID(hex=hex_id))


def after(sort_time: datetime | None, message_id: UUID, *, end_offset: int) -> Cursor:
    """The cursor for the page after a row; `end_offset` is that row's position + 1 in offset paging."""
    if sort_time is None:
        return Offset(end_offset)
    return Keyset(sort_time, message_id)


def signing_key() -> str:
    """The app's SECRET_KEY; when it has none, the key kept in PostgreSQL, read once (made by the first process)."""
    config = current_app.config
    if not config.get("SECRET_KEY"):
        with _loading_key:
            if not config.get("SECRET_KEY"):
                config["SECRET_KEY"] = runtime().records.service_key(SHARED_KEY_NAME, secrets.token_urlsafe(32))
    return config["SECRET_KEY"]


def _signer(listing: str, key: str) -> Signer:
    return Signer(key, salt=f"messaging page cursor {listing}", digest_method=hashlib.sha256)


def _time_from_micros(micros: int) -> datetime:
    # Beyond the years datetime can hold, "before" the cursor means "before any row" (or after all).
    try:
        return EPOCH + micros * ONE_MICROSECOND
    except OverflowError:
        return (datetime.max if micros > 0 else datetime.min).replace(tzinfo=timezone.utc)
