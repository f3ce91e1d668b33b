"""Schemathesis hooks for `test_schemathesis.py` (loaded by file through SCHEMATHESIS_HOOKS).

JSON Schema calls `2.0` an integer (a number whose fractional part is zero), so schemathesis
spells some integers of a JSON body as whole floats and expects them accepted. The service
decodes bodies strictly: an integer is written as an integer literal, and `2.0` is a 400
(`tests/integration/test_validation.py::test_bodies_are_decoded_strictly`; the document says
so in the ids' descriptions, the one place JSON Schema leaves for it). So the fuzzer's bodies
carry their whole numbers as integer literals; every other value is sent as generated.
"""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.hook
def map_body(context: schemathesis.HookContext, body: Any) -> Any:
    return _integer_literals(body)


def _integer_literals(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integer_literals(item) for item in value]
    if isinstance(value, dict):
        return {key: _integer_literals(item) for key, item in value.items()}
    return value
