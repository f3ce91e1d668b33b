"""The schema in one place: the tables (`tables`) and the migrations that create them.

`tables` is the source of truth: the repositories derive their column lists from it, and a
test checks that the migrations build exactly these tables (`tests/integration/test_schema.py`).
"""
