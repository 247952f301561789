"""Pages of messages and of attempts: what a list call takes (limit, offset, cursor) and answers."""

from __future__ import annotations

from typing import ClassVar
from uuid import UUID

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate

from api import cursors
from api.examples import EXAMPLE_ID, EXAMPLE_SENT_AT
from api.fields import FullMatch, QueryInteger
from api.schemas import AttemptSchema, MessageSchema
from messaging.domain import receipts
from messaging.domain.message import Status

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
# Deeper offset pages cost more the deeper they go: beyond this, follow the cursors.
MAX_OFFSET = 10_000
OFFSET_TOO_DEEP = (
    f"Must be at most {MAX_OFFSET:,}. For deeper pages follow pagination.next_cursor: pass it as cursor, "
    "at the cost of a first page at any depth."
)
OFFSET_CURSOR_TOO_DEEP = f"An offset cursor goes {MAX_OFFSET:,} rows deep at most, as offset does."
NOT_A_CURSOR = "Not a cursor this list returned."
# Signed with a key of its own: only the document shows it.
EXAMPLE_CURSOR_KEY = "example"
ATTEMPT_CURSOR = r"^[0-9]{1,18}$"


class PageQuerySchema(Schema):
    """`limit`/`offset` (seed compatible) or a keyset `cursor` taken from `next_cursor`."""

    class Meta:
        unknown = EXCLUDE

    listing: ClassVar[str]  # the list whose cursors this query takes

    limit = QueryInteger(
        load_default=DEFAULT_PAGE_SIZE,
        validate=validate.Range(min=1, max=MAX_PAGE_SIZE),
        metadata={"description": f"Page size, 1 to {MAX_PAGE_SIZE}.", "example": DEFAULT_PAGE_SIZE},
    )
    offset = QueryInteger(
        load_default=0,
        validate=[validate.Range(min=0), validate.Range(max=MAX_OFFSET, error=OFFSET_TOO_DEEP)],
        metadata={
            "description": f"Rows to skip, 0 to {MAX_OFFSET:,}. Its cost grows with the offset; for deep pages "
            "follow `cursor`. Not with `cursor` (400), except 0.",
            "example": 0,
        },
    )
    # No example: Swagger UI would send it, and only a cursor this list handed out names a page.
    cursor = fields.String(
        validate=FullMatch(cursors.PATTERN, error=NOT_A_CURSOR),
        metadata={
            "description": "`pagination.next_cursor` of the previous page of this list: the next page at the "
            "cost of the first one, at any depth. Treat it as opaque; any other value answers 400.",
        },
    )

    @post_load
    def decode_cursor(self, data, **kwargs):
        if "cursor" not in data:
            return data
        if data["offset"]:
            raise ValidationError("Use either offset or cursor, not both.", "cursor")
        try:
            cursor = cursors.decode(data.pop("cursor"), self.listing, cursors.signing_key())
        except ValueError:
            raise ValidationError(NOT_A_CURSOR, "cursor") from None
        if isinstance(cursor, cursors.Offset):
            if cursor.offset > MAX_OFFSET:
                raise ValidationError(OFFSET_CURSOR_TOO_DEEP, "cursor")
            data["offset"] = cursor.offset
        else:
            data["after"] = cursor
        return data


class SentPageQuerySchema(PageQuerySchema):
    listing = Status.SENT.label

    delivery_status = fields.String(
        validate=validate.OneOf(receipts.DELIVERY_FILTERS),
        metadata={
            # No example: Swagger UI would send it, and its first page would filter.
            "description": "Only messages whose `delivery_status` is this; `unknown`: no final delivery receipt yet.",
        },
    )


class FailedPageQuerySchema(PageQuerySchema):
    listing = Status.FAILED.label


class PaginationSchema(Schema):
    limit = fields.Integer(required=True, metadata={"example": 20})
    offset = fields.Integer(
        required=True, metadata={"example": 0, "description": "Rows skipped before this page (0 for keyset pages)."}
    )
    total = fields.Integer(
        required=True,
        metadata={
            "example": 42,
            "description": "Messages in this list: exact up to 10,000; above that, counted at most 10 s ago (20 times what counting takes, if longer).",
        },
    )
    next_cursor = fields.String(
        required=True,
        allow_none=True,
        metadata={
            "description": "Pass as `cursor` for the next page; null on the last page.",
            "example": cursors.encode(
                cursors.Keyset(EXAMPLE_SENT_AT, UUID(EXAMPLE_ID)), Status.SENT.label, EXAMPLE_CURSOR_KEY
            ),
        },
    )


class MessagePageSchema(Schema):
    data = fields.List(fields.Nested(MessageSchema), required=True)
    pagination = fields.Nested(PaginationSchema, required=True)


class AttemptQuerySchema(Schema):
    """`limit` and a `cursor` taken from `next_cursor`."""

    class Meta:
        unknown = EXCLUDE

    limit = QueryInteger(
        load_default=DEFAULT_PAGE_SIZE,
        validate=validate.Range(min=1, max=MAX_PAGE_SIZE),
        metadata={"description": f"Page size, 1 to {MAX_PAGE_SIZE}.", "example": DEFAULT_PAGE_SIZE},
    )
    # No example: Swagger UI would send it, and the first page would start after that attempt.
    cursor = fields.String(
        validate=FullMatch(ATTEMPT_CURSOR, error="Not a cursor returned by this API."),
        metadata={"description": "`pagination.next_cursor` of the previous page. Treat it as opaque."},
    )


class AttemptPaginationSchema(Schema):
    limit = fields.Integer(required=True, metadata={"example": 20})
    next_cursor = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "Pass as `cursor` for the next page; null on the last page.", "example": None},
    )


class AttemptPageSchema(Schema):
    data = fields.List(fields.Nested(AttemptSchema), required=True)
    pagination = fields.Nested(AttemptPaginationSchema, required=True)
