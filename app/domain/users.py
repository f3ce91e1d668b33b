"""Users: create, fetch, list by status, change status."""

from __future__ import annotations

from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db.errors import sqlstate_of
from app.db.session import DbSession
from app.domain.errors import ConflictError, NotFoundError
from app.domain.records import User, UserPage, UserStatus

_COLUMNS = "id, username, display_name, status, created_at, updated_at"
_INSERT = text(
    f"INSERT INTO users (username, display_name) VALUES (:username, :display_name)"
    f" RETURNING {_COLUMNS}"
)
_BY_ID = text(f"SELECT {_COLUMNS} FROM users WHERE id = :id")
_PAGE = text(f"SELECT {_COLUMNS} FROM users WHERE id > :after ORDER BY id LIMIT :limit")
_PAGE_BY_STATUS = text(
    f"SELECT {_COLUMNS} FROM users WHERE status = :status AND id > :after ORDER BY id LIMIT :limit"
)
_SET_STATUS = text(
    f"UPDATE users SET status = :status, updated_at = now() WHERE id = :id RETURNING {_COLUMNS}"
)
_UNIQUE_VIOLATION = "23505"


class UserRepository:
    """Users, read from a replica and written on the primary."""

    __slots__ = ("_db",)

    def __init__(self, db: DbSession) -> None:
        self._db = db

    async def create(self, username: str, display_name: str | None) -> User:
        """Insert a user; `ConflictError` when the username is taken."""

        async def insert(conn: AsyncConnection) -> User:
            params = {"username": username, "display_name": display_name or username}
            row = (await conn.execute(_INSERT, params)).one()
            return User(*row)

        try:
            return await self._db.write(insert)
        except sa_exc.IntegrityError as error:
            if sqlstate_of(error) == _UNIQUE_VIOLATION:
                raise ConflictError(f"username {username!r} is taken") from None
            raise

    async def get(self, user_id: int) -> User:
        """The user with `user_id`; `NotFoundError` when there is none."""

        async def fetch(conn: AsyncConnection) -> User | None:
            row = (await conn.execute(_BY_ID, {"id": user_id})).one_or_none()
            return User(*row) if row is not None else None

        user = await self._db.read(fetch)
        if user is None:
            raise NotFoundError(f"user {user_id} does not exist")
        return user

    async def page(self, status: UserStatus | None, after: int, limit: int) -> UserPage:
        """Users with id above `after` (and `status`, when given), ascending."""
        statement = _PAGE if status is None else _PAGE_BY_STATUS
        params: dict[str, object] = {"after": after, "limit": limit + 1}
        if status is not None:
            params["status"] = status

        async def fetch(conn: AsyncConnection) -> list[User]:
            return [User(*row) for row in await conn.execute(statement, params)]

        users = await self._db.read(fetch)
        if len(users) > limit:
            users = users[:limit]
            return UserPage(items=users, next=users[-1].id)
        return UserPage(items=users, next=None)

    async def set_status(self, user_id: int, status: UserStatus) -> User:
        """Change a user's status; `NotFoundError` when there is no such user."""

        async def update(conn: AsyncConnection) -> User | None:
            row = (await conn.execute(_SET_STATUS, {"id": user_id, "status": status})).one_or_none()
            return User(*row) if row is not None else None

        user = await self._db.write(update, idempotent=True)
        if user is None:
            raise NotFoundError(f"user {user_id} does not exist")
        return user

    async def exists(self, user_id: int) -> bool:
        """Whether a user with `user_id` exists."""
        return await self._db.read(lambda conn: _exists(conn, user_id))


_EXISTS = text("SELECT EXISTS (SELECT 1 FROM users WHERE id = :id)")


async def _exists(conn: AsyncConnection, user_id: int) -> bool:
    return bool((await conn.execute(_EXISTS, {"id": user_id})).scalar_one())
