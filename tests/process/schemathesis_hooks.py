"""Schemathesis hooks for `test_schemathesis.py` (loaded by file through SCHEMATHESIS_HOOKS).

JSON Schema calls `2.0` an integer (a number whose fractional part is zero), so schemathesis
spells some integers of a JSON body as whole floats and expects them accepted. The service
decodes bodies strictly: an integer is written as an integer literal, and `2.0` is a 400
(`tests/integration/test_validation.py::test_bodies_are_decoded_strictly`; the document says
so in the ids' descriptions, the one place JSON Schema leaves for it). So the fuzzer's bodies
carry their whole numbers as integer literals; every other value is sent as generated.

Likewise a display name that mixes scripts with look-alike letters (Unicode TR39 confusables,
`app.api.schemas`) is refused by a rule JSON Schema cannot state (the field's description
says so; tests/integration/test_security.py covers it): such a generated name is sent
with its non-ASCII characters as `?`, which keeps its length.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from confusable_homoglyphs import confusables


@schemathesis.hook
def map_body(context: schemathesis.HookContext, body: Any) -> Any:
    body = _integer_literals(body)
    if isinstance(body, dict) and isinstance(body.get("display_name"), str):
        name = body["display_name"]
        if confusables.is_dangerous(name):
            body = {**body, "display_name": "".join(c if c.isascii() else "?" for c in name)}
    return body


def _integer_literals(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integer_literals(item) for item in value]
    if isinstance(value, dict):
        return {key: _integer_literals(item) for key, item in value.items()}
    return value
