"""Password hashes: Argon2id (argon2-cffi), off the event loop, with a bound on how many are
computed at once.

Parameters, measured on the 2-core development machine (docs/security.md): time cost 2,
memory 19 MiB, parallelism 1 (OWASP's first Argon2id recommendation) takes 25 ms of CPU per
hash or check; argon2-cffi's defaults (RFC 9106 low-memory: 3, 64 MiB, 4) took 150 ms wall
and 218 ms CPU, which on two cores lets a handful of logins starve every other request.
A hash made with other parameters still verifies and is replaced at the next login
(`needs_rehash`).

The hash runs in a worker thread (argon2-cffi releases the GIL). Logins and registrations
have budgets of their own, so that a registration flood cannot delay logins: checks (logins)
run at most `check_slots` at a time per process, new hashes (registrations, rehashes) at most
`hash_slots`, and each budget lets only so many wait (`*_queue`); one more raises
`HashingBusyError` at once (the API answers 503 with `Retry-After`) instead of queueing for
seconds. At most `check_slots + hash_slots` times 19 MiB of memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

TIME_COST = 2
MEMORY_COST_KIB = 19 * 1024
PARALLELISM = 1
MIN_LENGTH = 8
MAX_LENGTH = 128


class HashingBusyError(Exception):
    """Too many password hashes are already waiting: answer 503 with `Retry-After`."""

    def __init__(self, what: str) -> None:
        super().__init__(f"too many {what} are waiting for a password hash")
        self.what = what


class _Budget:
    """At most `slots` at a time, at most `queue` more waiting; the rest refused at once."""

    def __init__(self, what: str, slots: int, queue: int) -> None:
        self._what = what
        self._slots = asyncio.Semaphore(slots)
        self._queue = queue
        self._waiting = 0

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        if self._slots.locked():
            if self._waiting >= self._queue:
                raise HashingBusyError(self._what)
            self._waiting += 1
            try:
                await self._slots.acquire()
            finally:
                self._waiting -= 1
        else:
            await self._slots.acquire()
        try:
            yield
        finally:
            self._slots.release()


class Passwords:
    """Hashes and checks passwords; `check` takes as long for an unknown user as for a
    wrong password (it checks against a dummy hash), so timing does not reveal usernames."""

    def __init__(
        self, check_slots: int = 2, check_queue: int = 16, hash_slots: int = 1, hash_queue: int = 2
    ) -> None:
        self._hasher = PasswordHasher(
            time_cost=TIME_COST,
            memory_cost=MEMORY_COST_KIB,
            parallelism=PARALLELISM,
            type=Type.ID,
        )
        self._checks = _Budget("logins", check_slots, check_queue)
        self._hashes = _Budget("registrations", hash_slots, hash_queue)
        self._dummy = self._hasher.hash("not a password: the hash checked for unknown users")

    async def hash(self, password: str) -> str:
        """A new Argon2id hash of `password`."""
        async with self._hashes.turn():
            return await asyncio.to_thread(self._hasher.hash, password)

    async def check(self, stored: str | None, password: str) -> bool:
        """Whether `password` matches `stored` (None: an unknown user or one without a
        password; the dummy hash is checked so that the answer takes the same time)."""
        async with self._checks.turn():
            return await asyncio.to_thread(self._verify, stored, password)

    def needs_rehash(self, stored: str) -> bool:
        """Whether `stored` was made with other parameters than the current ones."""
        try:
            return self._hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return True

    def _verify(self, stored: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
