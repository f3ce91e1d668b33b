"""Password hashes: Argon2id (argon2-cffi), off the event loop, with a bound on how many are
computed at once.

Parameters, measured on the 2-core development machine (docs/security.md): time cost 2,
memory 19 MiB, parallelism 1 (OWASP's first Argon2id recommendation) takes 25 ms of CPU per
hash or check; argon2-cffi's defaults (RFC 9106 low-memory: 3, 64 MiB, 4) took 150 ms wall
and 218 ms CPU, which on two cores lets a handful of logins starve every other request.
A hash made with other parameters still verifies and is replaced at the next login
(`needs_rehash`).

The hash runs in a worker thread (argon2-cffi releases the GIL), at most `concurrency` at
a time per process, so a burst of logins queues instead of taking every core and
`concurrency` times 19 MiB of memory at most.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

TIME_COST = 2
MEMORY_COST_KIB = 19 * 1024
PARALLELISM = 1
MIN_LENGTH = 8
MAX_LENGTH = 128


class Passwords:
    """Hashes and checks passwords; `check` takes as long for an unknown user as for a
    wrong password (it checks against a dummy hash), so timing does not reveal usernames."""

    def __init__(self, concurrency: int = 2) -> None:
        self._hasher = PasswordHasher(
            time_cost=TIME_COST,
            memory_cost=MEMORY_COST_KIB,
            parallelism=PARALLELISM,
            type=Type.ID,
        )
        self._slots = asyncio.Semaphore(concurrency)
        self._dummy = self._hasher.hash("not a password: the hash checked for unknown users")

    async def hash(self, password: str) -> str:
        """A new Argon2id hash of `password`."""
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def check(self, stored: str | None, password: str) -> bool:
        """Whether `password` matches `stored` (None: an unknown user or one without a
        password; the dummy hash is checked so that the answer takes the same time)."""
        async with self._slots:
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
