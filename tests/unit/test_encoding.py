"""GSM-7 or UCS-2, and segments, at the edges where counting by characters goes wrong."""

from __future__ import annotations

import pytest

from messaging.domain.encoding import GSM_7, UCS_2, Length, measure


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a" * 160, Length(GSM_7, 1)),
        ("a" * 161, Length(GSM_7, 2)),
        ("a" * 306, Length(GSM_7, 2)),
        ("a" * 307, Length(GSM_7, 3)),
        # Extension characters take an escape septet too: 80 euro signs fill one SMS exactly.
        ("€" * 80, Length(GSM_7, 1)),
        ("€" * 81, Length(GSM_7, 2)),
        ("a" * 159 + "{", Length(GSM_7, 2)),
        ("[]{}|^~\\€\f", Length(GSM_7, 1)),
        # The default alphabet's accented letters are GSM-7; 0x09 is the capital C with cedilla.
        ("Ç" * 160, Length(GSM_7, 1)),
        ("èéùìòÄÖÑÜäöñüàØøÅåÆæßÉ¡¿§£¥¤ΔΦΓΛΩΠΨΣΘΞ@$_\n\r", Length(GSM_7, 1)),
        # Small c with cedilla is not in the alphabet: UCS-2, 70 to an SMS.
        ("ç" * 70, Length(UCS_2, 1)),
        ("ş" * 71, Length(UCS_2, 2)),
        ("ç" * 134, Length(UCS_2, 2)),
        ("ç" * 135, Length(UCS_2, 3)),
        ("İstanbul", Length(UCS_2, 1)),
        ("price: 5 €, tab:\t", Length(UCS_2, 1)),
        # Beyond the BMP a character is two UTF-16 units.
        ("😀" * 35, Length(UCS_2, 1)),
        ("😀" * 36, Length(UCS_2, 2)),
        ("😀" * 160, Length(UCS_2, 5)),
        ("a" * 69 + "😀", Length(UCS_2, 2)),
        # ESC is the codec's escape, not a character: such a text cannot go as GSM-7.
        ("hi\x1b", Length(UCS_2, 1)),
    ],
    ids=lambda value: repr(value)[:24] if isinstance(value, str) else None,
)
def test_encoding_and_segments(text, expected):
    assert measure(text) == expected


def test_an_escape_pair_is_never_split_between_two_parts():
    # 306 septets fit two parts of 153 by arithmetic, but the euro sign after "ab" + 75 others
    # would straddle the first part's end: it moves to the second, and the text needs three.
    text = "ab" + "€" * 146 + "c" * 12
    assert len(text) == 160
    assert measure(text) == Length(GSM_7, 3)
    assert measure("a" + "€" * 146 + "c" * 13) == Length(GSM_7, 2)


def test_a_surrogate_pair_is_never_split_between_two_parts():
    # 134 units fit two parts of 67 by arithmetic; the pair cannot straddle the first part's end.
    assert measure("a" * 66 + "😀" + "b" * 65) == Length(UCS_2, 2)
    assert measure("a" * 66 + "😀" + "b" * 66) == Length(UCS_2, 3)
