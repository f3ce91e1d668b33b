"""The text rules of `app.api.schemas`, against the running Python's Unicode database."""

from __future__ import annotations

import re
import sys
import unicodedata

import msgspec
import pytest

from app.api.inputs import InvalidField
from app.api.schemas import (
    BODY_PATTERN,
    NAME_PATTERN,
    CreateChat,
    CreateUser,
    SendMessage,
    normalised_name,
)

CONTROL_OR_FORMAT = [
    chr(code)
    for code in range(sys.maxunicode + 1)
    if unicodedata.category(chr(code)) in ("Cc", "Cf")
]


def test_every_control_and_format_character_is_refused_in_names() -> None:
    """The ranges are written out (Unicode 15.1); a newer Unicode adding a format character
    fails here, asking for the table to be extended."""
    for char in CONTROL_OR_FORMAT:
        with pytest.raises(InvalidField):
            normalised_name("display_name", f"a{char}b", 64)
        assert re.fullmatch(NAME_PATTERN, f"a{char}b") is None, f"U+{ord(char):04X}"


def test_the_documented_pattern_admits_every_other_assigned_character() -> None:
    """Every assigned character of another category (the table may name characters an older
    Unicode database has not assigned yet: U+13439..U+1343F on Python 3.11)."""
    others = "".join(
        chr(code)
        for code in range(sys.maxunicode + 1)
        if unicodedata.category(chr(code)) not in ("Cc", "Cf", "Cs", "Cn")
    )
    assert re.fullmatch(NAME_PATTERN, others) is not None


def test_a_message_body_may_hold_newline_and_tab_but_no_other_control_character() -> None:
    assert re.fullmatch(BODY_PATTERN, "one\n\ttwo \u202e \u200d") is not None
    for char in CONTROL_OR_FORMAT:
        if unicodedata.category(char) == "Cc" and char not in "\n\t":
            assert re.fullmatch(BODY_PATTERN, f"a{char}b") is None, f"U+{ord(char):04X}"


def test_names_are_normalised_to_nfc_and_measured_after() -> None:
    assert normalised_name("title", "Cafe\u0301", 200) == "Caf\u00e9"
    assert normalised_name("title", "e\u0301" * 64, 64) == "\u00e9" * 64
    with pytest.raises(InvalidField, match="at most 64"):
        normalised_name("title", "\u0958" * 33, 64)  # NFC decomposes U+0958: 66 characters


def test_bodies_are_checked_when_decoded() -> None:
    decoded = msgspec.json.decode(
        b'{"username": "abc", "password": "long enough", "display_name": "Zoe\xcc\x88"}',
        type=CreateUser,
    )
    assert decoded.display_name == "Zo\u00eb"
    chat = msgspec.json.decode(b'{"member_ids": [1], "title": "x\\u0301"}', type=CreateChat)
    assert chat.title == "x\u0301"  # no precomposed form: stays as sent, already NFC
    with pytest.raises(msgspec.ValidationError) as raised:
        msgspec.json.decode(b'{"member_ids": [1], "title": "\\u202eabc"}', type=CreateChat)
    assert isinstance(raised.value.__cause__, InvalidField)
    assert raised.value.__cause__.field == "title"
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"body": "a\\rb"}', type=SendMessage)
