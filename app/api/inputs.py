"""Strict input: how a request's body and integer parameters become values, or a 400.

Litestar decodes a JSON body without a type and then converts it to the handler's struct in
msgspec's lax mode, which turns `"1"` and `1.0` into the integer 1; undecodable JSON (invalid
UTF-8 in a string, nesting deeper than the interpreter's recursion limit) escapes it as
`UnicodeDecodeError` or `RecursionError`, a 500. `StrictRequest.json` instead decodes the body
straight into the handler's `data` type with msgspec in strict mode, and answers anything it
cannot decode with a 400 problem. A body sent with a `Content-Type` other than
`application/json` (or `application/*+json`) is a 415: a `text/plain` body is what a web page
can post cross-site without a CORS preflight. Duplicate keys are not refused (msgspec keeps
the last; detecting them would cost a second parse of every body): bodies have few fields
and unknown ones are refused.

Path and query parameters arrive as text and Litestar converts them in lax mode too: Python's
int() for `{id:int}` path segments (fullwidth and Arabic-Indic digits, `"1_0"`, `"+1"`,
`" 1"`), msgspec's lax
conversion for the rest (`"1.0"`, `"1e3"`). `check_integer_parameters` (a `before_request`
hook) accepts for an integer parameter only its canonical spelling: ASCII digits, no sign,
no spaces, no leading zero (so every id has one spelling), at most 19 digits.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import ClientException, HTTPException, ValidationException
from litestar.handlers import BaseRouteHandler
from litestar.typing import FieldDefinition

from app.compat.litestar import handler_parameters

_CANONICAL_INTEGER = re.compile("0|[1-9][0-9]{0,18}")
_NOT_CANONICAL = "Expected an integer in ASCII digits: no sign, spaces or leading zeros"


class InvalidField(ValueError):
    """A body field's value breaks a rule msgspec constraints cannot state.

    Raised in a struct's `__post_init__`; msgspec reports it as the cause of a
    `msgspec.ValidationError`, and the problem names `field`.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class UnsupportedMediaType(HTTPException):
    """A JSON body sent with another `Content-Type` (a `text/plain` form a web page may post
    cross-site without a preflight): 415."""

    status_code = 415


def _is_json(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class StrictRequest(Request[Any, Any, Any]):
    """A request whose JSON body is decoded strictly into the handler's `data` type, and
    only when it is sent as `application/json` (415 otherwise)."""

    async def json(self) -> Any:
        body = await self.body()
        if body and not _is_json(self.headers.get("content-type", "")):
            raise UnsupportedMediaType(detail="send the body as Content-Type: application/json")
        decoder = _decoder(self.route_handler)
        try:
            return decoder.decode(body or b"null")
        except msgspec.ValidationError as error:
            raise _invalid(self, error) from None
        except msgspec.DecodeError as error:
            raise ClientException(str(error)) from None
        except UnicodeDecodeError:
            raise ClientException("JSON is malformed: a string is not valid UTF-8") from None
        except RecursionError:
            raise ClientException("JSON is malformed: nested too deeply") from None


_DECODERS: dict[object, msgspec.json.Decoder[Any]] = {}


def _decoder(handler: BaseRouteHandler) -> msgspec.json.Decoder[Any]:
    """A strict decoder for the handler's `data` type (untyped when it declares none)."""
    field = handler_parameters(handler).get("data")
    target: Any = Any if field is None else field.annotation
    decoder = _DECODERS.get(target)
    if decoder is None:
        decoder = _DECODERS[target] = msgspec.json.Decoder(target, strict=True)
    return decoder


def _invalid(
    request: Request[Any, Any, Any], error: msgspec.ValidationError
) -> ValidationException:
    """The 400 for a body that decodes but breaks a rule, naming the field like Litestar does."""
    message, _, where = str(error).partition(" - at `")
    location = where.rstrip("`").removeprefix("$").removeprefix(".")
    cause = error.__cause__
    if isinstance(cause, InvalidField):
        location = f"{location}.{cause.field}" if location else cause.field
    item: dict[str, str] = {"message": message, "source": "body"}
    if location:
        item["key"] = location
    return ValidationException(
        detail=f"Validation failed for {request.method} {request.url.path}", extra=[item]
    )


async def check_integer_parameters(request: Request[Any, Any, Any]) -> None:
    """`before_request`: every integer path or query parameter is spelled canonically."""
    errors = []
    path_params = request.path_params
    for name in _integer_parameters(request.route_handler):
        if name in path_params:
            source, values = "path", [path_params[name]]
        else:
            source, values = "query", request.query_params.getall(name, [])
        for value in values:
            if not (isinstance(value, str) and _CANONICAL_INTEGER.fullmatch(value)):
                errors.append({"message": _NOT_CANONICAL, "key": name, "source": source})
                break
    if errors:
        raise ValidationException(
            detail=f"Validation failed for {request.method} {request.url.path}", extra=errors
        )


_INTEGER_PARAMETERS: dict[BaseRouteHandler, tuple[str, ...]] = {}


def _integer_parameters(handler: BaseRouteHandler) -> tuple[str, ...]:
    names = _INTEGER_PARAMETERS.get(handler)
    if names is None:
        parameters = handler_parameters(handler)
        names = tuple(name for name, field in parameters.items() if _is_integer(field))
        _INTEGER_PARAMETERS[handler] = names
    return names


def _is_integer(field: FieldDefinition) -> bool:
    """`int` or `int | None` (bool is not an integer here)."""
    if field.is_union:
        return any(inner.annotation is int for inner in field.inner_types)
    return field.annotation is int
