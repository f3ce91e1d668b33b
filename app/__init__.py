"""Messenger data service: Litestar API over a primary/replica-aware PostgreSQL data layer."""
