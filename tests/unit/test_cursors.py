"""Page cursors on their own: each names exactly the row or offset it was made from, in its own list."""

from __future__ import annotations

import re
from datetime import timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api import cursors

KEY, OTHER_KEY = "key of one deployment", "key of another deployment"


@given(
    moment=st.datetimes(timezones=st.just(timezone.utc)),
    message_id=st.uuids(),
    offset=st.integers(min_value=0, max_value=2**31 + 100),
)
def test_a_cursor_names_exactly_the_row_or_offset_it_was_made_from_in_its_own_list_under_its_key(moment, message_id, offset):
    for cursor in (cursors.Keyset(moment, message_id), cursors.Offset(offset)):
        text = cursors.encode(cursor, "sent", KEY)
        assert re.fullmatch(cursors.PATTERN, text)
        assert cursors.decode(text, "sent", KEY) == cursor
        with pytest.raises(ValueError):
            cursors.decode(text, "failed", KEY)
        with pytest.raises(ValueError):
            cursors.decode(text, "sent", OTHER_KEY)
