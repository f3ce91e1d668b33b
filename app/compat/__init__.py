"""Every use of a library's internals, in one marked place.

Each module is named after the library it reaches into, states the versions it was written
for and the measurement that justified going below the public API, and has a test in
tests/unit/test_compat.py that fails when an upgrade changes what it relies on.
"""
