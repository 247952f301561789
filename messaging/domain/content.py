"""A new message's rules: its recipient, its content and its send time, each with what it says when broken.

This is their one home. The API's schemas build their validators (and the patterns the OpenAPI
document shows) from these constants, and the API checks a message here again before storing it.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from messaging.errors import InvalidMessage

MAX_CHARACTERS = 160
E164 = r"^\+[1-9][0-9]{7,14}$"
# What Python's str.isspace() calls whitespace, spelled out: ECMA-262's \s (the document's regex
# dialect) is not quite the same set.
WHITESPACE = r"\t\n\u000b\u000c\r\u001c-\u001f \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# No NUL (PostgreSQL text cannot hold it), and at least one character that is not whitespace. Each
# part matches what the next cannot, so a mismatch never backtracks through the whole text (a
# 64 KiB body is checked in linear time).
NOT_BLANK = rf"^[{WHITESPACE}]*[^\u0000{WHITESPACE}][^\u0000]*$"
SCHEDULE_AHEAD = timedelta(days=35)
# A send_at this little in the past means "now": the sender's clock and the request's travel.
CLOCK_SKEW = timedelta(minutes=1)

NOT_E164 = "Must be an E.164 number: + then 8 to 15 digits, the first not 0."
WRONG_LENGTH = f"Must be 1 to {MAX_CHARACTERS} characters."
BLANK = "Must hold a character that is not whitespace, and no NUL."
NO_ZONE = "Must have a time zone, such as Z or +03:00."
IN_THE_PAST = "Must not be in the past."
TOO_FAR_AHEAD = f"Must be at most {SCHEDULE_AHEAD.days} days ahead."

_E164 = re.compile(E164)
_NOT_BLANK = re.compile(NOT_BLANK)


def problems_with(
    content: str, send_at: datetime | None, now: datetime, *, recipient: str | None = None
) -> dict[str, list[str]]:
    """What is wrong with a new message, per field (empty when nothing); `recipient` is checked when given."""
    problems: dict[str, list[str]] = {}
    if recipient is not None and not _E164.fullmatch(recipient):
        problems["recipient_phone_number"] = [NOT_E164]
    if not 1 <= len(content) <= MAX_CHARACTERS:
        problems["content"] = [WRONG_LENGTH]
    elif not _NOT_BLANK.fullmatch(content):
        problems["content"] = [BLANK]
    if send_at is not None:
        problem = _send_time_problem(send_at, now)
        if problem:
            problems["send_at"] = [problem]
    return problems


def check(recipient: str, content: str, send_at: datetime | None, now: datetime) -> None:
    """Raise InvalidMessage naming every rule the new message breaks."""
    problems = problems_with(content, send_at, now, recipient=recipient)
    if problems:
        raise InvalidMessage(problems)


def _send_time_problem(send_at: datetime, now: datetime) -> str | None:
    if send_at.tzinfo is None:
        return NO_ZONE
    if send_at < now - CLOCK_SKEW:
        return IN_THE_PAST
    if send_at > now + SCHEDULE_AHEAD:
        return TOO_FAR_AHEAD
    return None
