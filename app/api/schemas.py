"""Request bodies and the validated scalar types shared by controllers: the validation rules.

msgspec constraints state what they can (types, ranges, lengths, the characters a message
body may hold); bodies are decoded strictly (`app.api.inputs`: no `"1"` or `1.0` for an
integer). Names and titles take one more step a constraint cannot express, in the structs'
`__post_init__`: no control (Cc) or format (Cf) characters, NFC normalisation, and the length
limit counted on the normalised text.

Every bound is also written into the OpenAPI document as an integer (`_bounds`): Litestar
renders `ge`/`le` as floats (`9.223372036854776e+18`, which is above 2**63 - 1) and drops a
bound of 0.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any

import msgspec
from confusable_homoglyphs import confusables
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.params import PathParameter, QueryParameter
from litestar.typing import FieldDefinition

from app.api.inputs import InvalidField
from app.compat.litestar import StructSchemaPlugin
from app.domain.records import UserStatus

MAX_BIGINT = 2**63 - 1
MAX_MEMBERS = 1000
"""Members one `POST /chats` may name: also the most member ids one chat in a page holds."""
MAX_PAGE = 200
"""The largest `limit` of every page."""


def _bounds(minimum: int, maximum: int) -> dict[str, Any]:
    """OpenAPI bounds of an integer, as integers (see the module's docstring)."""
    return {"type": OpenAPIType.INTEGER, "minimum": minimum, "maximum": maximum}


def _char_class(ranges: tuple[tuple[int, int], ...]) -> str:
    """A regex character class body (no brackets) that Python and ECMA-262 (with the `u` flag,
    as JSON Schema asks) read alike: BMP characters as `\\uXXXX`, others literally."""

    def char(code: int) -> str:
        return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)

    return "".join(char(a) if a == b else f"{char(a)}-{char(b)}" for a, b in ranges)


# Unicode 15.1 general categories Cc (control) and Cf (format); tests/unit/test_text_rules.py
# checks that they cover every such character of the running Python's Unicode database.
CONTROL = ((0x00, 0x1F), (0x7F, 0x9F))
FORMAT = (
    (0xAD, 0xAD), (0x600, 0x605), (0x61C, 0x61C), (0x6DD, 0x6DD), (0x70F, 0x70F),
    (0x890, 0x891), (0x8E2, 0x8E2), (0x180E, 0x180E), (0x200B, 0x200F), (0x202A, 0x202E),
    (0x2060, 0x2064), (0x2066, 0x206F), (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD), (0x110CD, 0x110CD), (0x13430, 0x1343F), (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A), (0xE0001, 0xE0001), (0xE0020, 0xE007F),
)  # fmt: skip
# Names and titles hold neither; a message body may hold newline and tab, and format
# characters (right-to-left marks, emoji joiners), but no other control character.
_NOT_IN_NAMES = _char_class(CONTROL + FORMAT)
NAME_PATTERN = f"^[^{_NOT_IN_NAMES}]*$"
BODY_PATTERN = f"^[^{_char_class(((0x00, 0x08), (0x0B, 0x1F), (0x7F, 0x9F)))}]*$"
NO_NUL = "^[^\\x00]*$"  # PostgreSQL text cannot hold NUL; reject it as a 400, not a 500
_FORBIDDEN_IN_NAMES = re.compile(f"[{_NOT_IN_NAMES}]")
_USERNAME = re.compile("[a-z0-9_]{3,32}")

# A name may be sent decomposed (NFD): up to 4 code points per character it normalises to.
_SPELLINGS = 4


def _text(max_length: int, description: str) -> msgspec.Meta:
    """A name or title: at most `max_length` characters once normalised, so the raw text may be
    longer (`_SPELLINGS` code points per character); the document states the limit itself."""
    return msgspec.Meta(
        min_length=1,
        max_length=_SPELLINGS * max_length,
        extra_json_schema={
            "description": description,
            # Litestar takes "extra" as the field's OpenAPI schema_extra.
            "extra": {"max_length": max_length, "pattern": NAME_PATTERN},
        },
    )


def normalised_name(field: str, value: str, max_length: int) -> str:
    """`value` in NFC, or `InvalidField` when it holds a control or format character or is
    longer than `max_length` characters once normalised."""
    found = _FORBIDDEN_IN_NAMES.search(value)
    if found is not None:
        raise InvalidField(
            field,
            f"must not contain control or format characters (found U+{ord(found.group()):04X})",
        )
    if not unicodedata.is_normalized("NFC", value):
        value = unicodedata.normalize("NFC", value)
    if len(value) > max_length:
        raise InvalidField(field, f"must be at most {max_length} characters (in NFC)")
    return value


Username = Annotated[
    str,
    msgspec.Meta(
        # `(?!\n)`: Python's `$` also matches before a final newline ("alice\n" would pass,
        # then fail the database's check after a hash); ECMA-262 reads it as a no-op.
        pattern="^[a-z0-9_]{3,32}$(?!\n)",
        description="3 to 32 of a-z, 0-9 and _",
        examples=["alice_01"],
    ),
]
Password = Annotated[
    str,
    msgspec.Meta(
        min_length=8, max_length=128, pattern=NO_NUL, description="8 to 128 characters, no NUL"
    ),
]
DISPLAY_NAME_MAX = 64
TITLE_MAX = 200
DisplayName = Annotated[
    str,
    _text(
        DISPLAY_NAME_MAX,
        "1 to 64 characters, counted in NFC (stored so); no control or format characters; "
        "not mixing scripts with look-alike letters (Unicode TR39 confusables)",
    ),
]
Title = Annotated[
    str,
    _text(
        TITLE_MAX,
        "1 to 200 characters, counted in NFC (stored so); no control or format characters",
    ),
]
Body = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=4000,
        pattern=BODY_PATTERN,
        description="1 to 4000 characters; newline and tab are the only control characters",
    ),
]
ClientMsgId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        pattern=NO_NUL,
        description="Idempotency key, unique per sender; a repeat returns the stored message",
    ),
]
# JSON Schema counts 2.0 as an integer; the service does not (strict decoding), so say it.
_ID = 'An id: an integer literal (2, not 2.0 or "2")'
Id = Annotated[
    int,
    msgspec.Meta(
        ge=1,
        le=MAX_BIGINT,
        extra_json_schema={"description": _ID, "extra": _bounds(1, MAX_BIGINT)},
    ),
]

# Path and query parameters: ASCII digits only, checked on the raw text by
# `app.api.inputs.check_integer_parameters` (routes declare ids as `{name:str}` so the raw text
# reaches it; Litestar's `int` converter reads fullwidth digits or "1_0" as Python's int() does).
PathId = Annotated[
    int,
    PathParameter(
        ge=1,
        le=MAX_BIGINT,
        description="An id in ASCII digits, without sign or leading zeros",
        schema_extra=_bounds(1, MAX_BIGINT),
    ),
]
Limit = Annotated[
    int,
    QueryParameter(
        ge=1, le=MAX_PAGE, description="Page size, 1 to 200", schema_extra=_bounds(1, MAX_PAGE)
    ),
]
Cursor = Annotated[
    int | None,
    QueryParameter(
        ge=0,
        le=MAX_BIGINT,
        description="Cursor: `next` of the previous page",
        # An absent cursor starts at the first page; a present one is an integer, never null.
        schema_extra={**_bounds(0, MAX_BIGINT), "one_of": None},
    ),
]
StatusFilter = Annotated[
    UserStatus | None, QueryParameter(description="Only users with this status")
]


class StrictBodySchemas(StructSchemaPlugin):
    """The OpenAPI schema of a body that refuses unknown fields (`forbid_unknown_fields`, a
    400) says so with `additionalProperties: false`, which Litestar's own leaves out: the
    document would otherwise call a body with extra fields valid. (A Litestar plugin, ahead
    of the built-in one for these structs.)"""

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        return super().is_plugin_supported_field(field_definition) and bool(
            field_definition.type_.__struct_config__.forbid_unknown_fields
        )

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        schema.additional_properties = False
        return schema


class CreateUser(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`POST /users` body: registration (the only route that needs no token)."""

    username: Username
    password: Password
    display_name: DisplayName | None = None

    def __post_init__(self) -> None:
        if self.display_name is not None:
            name = normalised_name("display_name", self.display_name, DISPLAY_NAME_MAX)
            if confusables.is_dangerous(name):
                raise InvalidField(
                    "display_name",
                    "must not mix scripts with look-alike letters (Unicode TR39 confusables)",
                )
            msgspec.structs.force_setattr(self, "display_name", name)

    @property
    def display_as_username(self) -> str | None:
        """The display name spelled as a username would be, when it reads as one other than
        the registrant's own (`alice` as the display name of `alice_2`): registration
        refuses it when that username exists."""
        if self.display_name is None:
            return None
        folded = self.display_name.strip().casefold().replace(" ", "_")
        if folded == self.username or _USERNAME.fullmatch(folded) is None:
            return None
        return folded


class SetStatus(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`PUT /users/{id}/status` body."""

    status: UserStatus


class CreateChat(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`POST /chats` body: up to 1000 member ids besides the creator, who is always a member.

    The member bound is what bounds a chat in `GET /users/{id}/chats`: a page holds at most
    200 chats of at most 1000 member ids each. Nothing bounds how many chats a user is added
    to in total (a cap would let anyone fill a victim's quota and lock them out of new chats);
    one request adds a user to one chat at most (ids are deduplicated)."""

    member_ids: Annotated[
        list[Id],
        msgspec.Meta(
            min_length=0,
            max_length=MAX_MEMBERS,
            extra_json_schema={
                "extra": {"items": Schema(**_bounds(1, MAX_BIGINT), description=_ID)}
            },
        ),
    ]
    title: Title | None = None

    def __post_init__(self) -> None:
        if self.title is not None:
            title = normalised_name("title", self.title, TITLE_MAX)
            msgspec.structs.force_setattr(self, "title", title)


class SendMessage(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`POST /chats/{id}/messages` body; the sender is the caller (no `sender_id`)."""

    body: Body
    client_msg_id: ClientMsgId | None = None
