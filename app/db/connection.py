"""The typed interface the repositories talk to; the driver (asyncpg) stays behind it.

asyncpg ships no type information, so code that calls it directly is unchecked by mypy. The
repositories instead run `Query[T]` and `Scalar[T]` statements through `Connection`: each
statement carries its SQL and how a row (or a value) becomes a typed result, so a
repository's results are typed from the statement's definition on.

The one implementation, `DriverConnection`, adds a call and nothing else on the hot path:
statements still run on the pooled asyncpg connection, prepared and cached by asyncpg.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


@dataclass(frozen=True, slots=True)
class Query(Generic[T_co]):
    """A statement whose rows each become a `T` (`decode` receives the row's columns)."""

    sql: str
    """The SQL, with `$1`-style parameters."""
    decode: Callable[..., T_co]
    """Builds the result from one row's columns, passed positionally in the order of the
    select list: a record class itself (`User`, a msgspec struct), or a function of them. One
    call per row: a page of 50 is 50 calls, not 100 through a wrapper."""


@dataclass(frozen=True, slots=True)
class Scalar(Generic[T_co]):
    """A statement whose answer is the first column of its first row, made a `T`."""

    sql: str
    """The SQL, with `$1`-style parameters."""
    decode: Callable[[Any], T_co]
    """Builds the result from the value, e.g. `bool`."""


class Connection(Protocol):
    """What a repository may do with a connection lent to one of its operations."""

    async def fetch_one(self, query: Query[T], *args: object) -> T | None:
        """The first row's result, or None when there is no row."""
        ...

    async def fetch_all(self, query: Query[T], *args: object) -> list[T]:
        """Every row's result, in the statement's order."""
        ...

    async def fetch_scalar(self, scalar: Scalar[T], *args: object) -> T:
        """The first column of the first row (the statement must return one)."""
        ...


class DriverConnection:
    """`Connection` over one asyncpg connection; the data layer also reaches the driver."""

    __slots__ = ("driver",)

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        """The asyncpg connection (for the data layer's own use: transactions, state)."""

    async def fetch_one(self, query: Query[T], *args: object) -> T | None:
        row = await self.driver.fetchrow(query.sql, *args)
        return None if row is None else query.decode(*row)

    async def fetch_all(self, query: Query[T], *args: object) -> list[T]:
        decode = query.decode
        return [decode(*row) for row in await self.driver.fetch(query.sql, *args)]

    async def fetch_scalar(self, scalar: Scalar[T], *args: object) -> T:
        return scalar.decode(await self.driver.fetchval(scalar.sql, *args))

    async def execute(self, sql: str) -> None:
        """Run a statement without parameters or results (the data layer's probes)."""
        await self.driver.execute(sql)
