"""Users: create, fetch, list by status, change status."""

from __future__ import annotations

from app.db.connection import Connection, Query, Scalar
from app.db.errors import is_unique_violation
from app.db.session import DbSession
from app.domain.errors import ConflictError, NotFoundError
from app.domain.records import User, UserPage, UserStatus
from app.schema.tables import column_list, users

_COLUMNS = column_list(users)
_INSERT = Query(
    "INSERT INTO users (username, display_name, password_hash) VALUES ($1, $2, $3)"  # noqa: S608 - constant column list
    f" RETURNING {_COLUMNS}",
    User,
)
_TAKEN = Scalar(
    "SELECT ARRAY(SELECT username FROM users WHERE username = ANY($1::text[]))", list[str]
)
_BY_ID = Query(f"SELECT {_COLUMNS} FROM users WHERE id = $1", User)  # noqa: S608 - constant column list
_PAGE = Query(f"SELECT {_COLUMNS} FROM users WHERE id > $1 ORDER BY id LIMIT $2", User)  # noqa: S608 - constant column list
_PAGE_BY_STATUS = Query(
    f"SELECT {_COLUMNS} FROM users WHERE status = $3 AND id > $1 ORDER BY id LIMIT $2",  # noqa: S608 - constant column list
    User,
)
_SET_STATUS = Query(
    f"UPDATE users SET status = $2, updated_at = now() WHERE id = $1 RETURNING {_COLUMNS}",  # noqa: S608 - constant column list
    User,
)


class UserRepository:
    """Users, read from a replica and written on the primary."""

    __slots__ = ("_db",)

    def __init__(self, db: DbSession) -> None:
        self._db = db

    async def create(self, username: str, display_name: str | None, password_hash: str) -> User:
        """Insert a user; `ConflictError` when the username is taken."""

        async def insert(conn: Connection) -> User | None:
            return await conn.fetch_one(_INSERT, username, display_name or username, password_hash)

        try:
            user = await self._db.write(insert)
        except Exception as error:
            if is_unique_violation(error):
                raise ConflictError(f"username {username!r} is taken") from None
            raise
        assert user is not None, "INSERT ... RETURNING returns the row"
        return user

    async def taken(self, usernames: list[str]) -> set[str]:
        """Which of `usernames` exist (registration's cheap check before it hashes; the
        unique constraint still decides a race between two registrations)."""

        async def fetch(conn: Connection) -> list[str]:
            return await conn.fetch_scalar(_TAKEN, usernames)

        return set(await self._db.read(fetch, on_primary=True))

    async def get(self, user_id: int) -> User:
        """The user with `user_id`; `NotFoundError` when there is none."""

        async def fetch(conn: Connection) -> User | None:
            return await conn.fetch_one(_BY_ID, user_id)

        user = await self._db.read(fetch)
        if user is None:
            raise NotFoundError(f"user {user_id} does not exist")
        return user

    async def page(self, status: UserStatus | None, after: int, limit: int) -> UserPage:
        """Users with id above `after` (and `status`, when given), ascending."""

        async def fetch(conn: Connection) -> list[User]:
            if status is None:
                return await conn.fetch_all(_PAGE, after, limit + 1)
            return await conn.fetch_all(_PAGE_BY_STATUS, after, limit + 1, status)

        found = await self._db.read(fetch)
        if len(found) > limit:
            found = found[:limit]
            return UserPage(items=found, next=found[-1].id)
        return UserPage(items=found, next=None)

    async def set_status(self, user_id: int, status: UserStatus) -> User:
        """Change a user's status; `NotFoundError` when there is no such user."""

        async def update(conn: Connection) -> User | None:
            return await conn.fetch_one(_SET_STATUS, user_id, status)

        user = await self._db.write(update, idempotent=True)
        if user is None:
            raise NotFoundError(f"user {user_id} does not exist")
        return user
