"""Every place the application reaches past a library's public surface, marked and tested.

Each module is named after the library it bypasses and holds only the small pieces that touch
its internals (a private attribute, a private module, a copy of an internal rule); the code
that uses them stays where it is and calls these functions. Each piece says which versions of
the library it was written for (`WRITTEN_FOR`), why the public path was not good enough (the
measurement or the missing feature), and tests/unit/test_compat.py fails when an upgrade
changes what it relies on, or when the installed version leaves the range.

A layer of its own in the import-linter contract (pyproject.toml), low in the stack: it
imports only the libraries.
"""
