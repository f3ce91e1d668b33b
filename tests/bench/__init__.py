"""`just bench`: the service against a bare Litestar + asyncpg baseline, under wrk.

Not part of the pytest suite (see `conftest.py`); run it as `python -m tests.bench`.
"""
