"""Users: create, fetch, list by status, change status."""

from __future__ import annotations

from asyncpg import Connection

from app.db.errors import sqlstate_of
from app.db.session import DbSession
from app.domain.errors import ConflictError, NotFoundError
from app.domain.records import User, UserPage, UserStatus

_COLUMNS = "id, username, display_name, status, created_at, updated_at"
_INSERT = f"INSERT INTO users (username, display_name) VALUES ($1, $2) RETURNING {_COLUMNS}"
_BY_ID = f"SELECT {_COLUMNS} FROM users WHERE id = $1"
_PAGE = f"SELECT {_COLUMNS} FROM users WHERE id > $1 ORDER BY id LIMIT $2"
_PAGE_BY_STATUS = f"SELECT {_COLUMNS} FROM users WHERE status = $3 AND id > $1 ORDER BY id LIMIT $2"
_SET_STATUS = f"UPDATE users SET status = $2, updated_at = now() WHERE id = $1 RETURNING {_COLUMNS}"
_UNIQUE_VIOLATION = "23505"


class UserRepository:
    """Users, read from a replica and written on the primary."""

    __slots__ = ("_db",)

    def __init__(self, db: DbSession) -> None:
        self._db = db

    async def create(self, username: str, display_name: str | None) -> User:
        """Insert a user; `ConflictError` when the username is taken."""

        async def insert(conn: Connection) -> User:
            return User(*await conn.fetchrow(_INSERT, username, display_name or username))

        try:
            return await self._db.write(insert)
        except Exception as error:
            if sqlstate_of(error) == _UNIQUE_VIOLATION:
                raise ConflictError(f"username {username!r} is taken") from None
            raise

    async def get(self, user_id: int) -> User:
        """The user with `user_id`; `NotFoundError` when there is none."""

        async def fetch(conn: Connection) -> User | None:
            row = await conn.fetchrow(_BY_ID, user_id)
            return User(*row) if row is not None else None

        user = await self._db.read(fetch)
        if user is None:
            raise NotFoundError(f"user {user_id} does not exist")
        return user

    async def page(self, status: UserStatus | None, after: int, limit: int) -> UserPage:
        """Users with id above `after` (and `status`, when given), ascending."""

        async def fetch(conn: Connection) -> list[User]:
            if status is None:
                rows = await conn.fetch(_PAGE, after, limit + 1)
            else:
                rows = await conn.fetch(_PAGE_BY_STATUS, after, limit + 1, status)
            return [User(*row) for row in rows]

        users = await self._db.read(fetch)
        if len(users) > limit:
            users = users[:limit]
            return UserPage(items=users, next=users[-1].id)
        return UserPage(items=users, next=None)

    async def set_status(self, user_id: int, status: UserStatus) -> User:
        """Change a user's status; `NotFoundError` when there is no such user."""

        async def update(conn: Connection) -> User | None:
            row = await conn.fetchrow(_SET_STATUS, user_id, status)
            return User(*row) if row is not None else None

        user = await self._db.write(update, idempotent=True)
        if user is None:
            raise NotFoundError(f"user {user_id} does not exist")
        return user
