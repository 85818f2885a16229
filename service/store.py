"""Where sessions live between requests: get, compare-and-set by ``seq``, delete.

The store versions each session by its ``seq`` and knows nothing else about it. Compare-and-set is what
keeps an observation from being applied twice or lost when two workers or replicas step one session.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as redis


class SessionStore(Protocol):
    async def get_many(self, session_ids: list[str]) -> list[bytes | None]:
        """The stored records, None where a session is unknown or expired."""
        ...

    async def put_if(self, session_id: str, record: bytes, seq: int, expected_seq: int | None) -> bool:
        """Stores ``record`` at version ``seq`` if the stored version is ``expected_seq`` (None: no session yet);
        returns whether it did. Storing refreshes the session's idle timeout."""
        ...

    async def delete(self, session_id: str) -> bool:
        """Removes the session; returns whether there was one."""
        ...

    async def count(self) -> int:
        """Sessions currently held."""
        ...

    async def ping(self) -> bool:
        """Whether the store answers."""
        ...


class MemoryStore:
    """Sessions in this process: an idle timeout and a bound on their number, evicting the least recently used.

    Only correct with one worker: each worker process would hold its own sessions.
    """

    def __init__(self, ttl_s: float, max_sessions: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self.clock = clock
        # Ordered by last use, so the front is both the least recently used and the first to expire.
        self._sessions: OrderedDict[str, tuple[int, bytes, float]] = OrderedDict()
        self.expired = 0
        self.evicted = 0

    def _expire(self) -> None:
        now = self.clock()
        while self._sessions:
            _, (_, _, expires) = next(iter(self._sessions.items()))
            if expires > now:
                break
            self._sessions.popitem(last=False)
            self.expired += 1

    async def get_many(self, session_ids: list[str]) -> list[bytes | None]:
        self._expire()
        found: list[bytes | None] = []
        for session_id in session_ids:
            entry = self._sessions.get(session_id)
            found.append(None if entry is None else entry[1])
        return found

    async def put_if(self, session_id: str, record: bytes, seq: int, expected_seq: int | None) -> bool:
        self._expire()
        entry = self._sessions.get(session_id)
        current = None if entry is None else entry[0]
        if current != expected_seq:
            return False
        self._sessions[session_id] = (seq, record, self.clock() + self.ttl_s)
        self._sessions.move_to_end(session_id)
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
            self.evicted += 1
        return True

    async def delete(self, session_id: str) -> bool:
        self._expire()
        return self._sessions.pop(session_id, None) is not None

    async def count(self) -> int:
        self._expire()
        return len(self._sessions)

    async def ping(self) -> bool:
        return True


# KEYS[1]: session hash; ARGV: expected seq ("" for a new session), new seq, record, ttl in ms.
# One script runs atomically in Redis, so two workers cannot both win the same compare-and-set.
_PUT_IF = """
local current = redis.call('HGET', KEYS[1], 'seq')
if (ARGV[1] == '' and current) or (ARGV[1] ~= '' and current ~= ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'seq', ARGV[2], 'record', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""


class RedisStore:
    """Sessions in Redis, shared by every worker and replica; Redis expires idle ones."""

    PREFIX = "seqcast:session:"

    def __init__(self, url: str, ttl_s: float) -> None:
        self.client = redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.ttl_ms = int(ttl_s * 1000)
        self._put_if = self.client.register_script(_PUT_IF)

    async def get_many(self, session_ids: list[str]) -> list[bytes | None]:
        async with self.client.pipeline(transaction=False) as pipe:
            for session_id in session_ids:
                pipe.hget(self.PREFIX + session_id, "record")
            return list(await pipe.execute())

    async def put_if(self, session_id: str, record: bytes, seq: int, expected_seq: int | None) -> bool:
        expected = "" if expected_seq is None else str(expected_seq)
        done = await self._put_if(keys=[self.PREFIX + session_id], args=[expected, seq, record, self.ttl_ms])
        return bool(done)

    async def delete(self, session_id: str) -> bool:
        return bool(await self.client.delete(self.PREFIX + session_id))

    async def count(self) -> int:
        count = 0
        async for _ in self.client.scan_iter(match=self.PREFIX + "*", count=1000):
            count += 1
        return count

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except redis.RedisError:
            return False


def open_store(url: str, ttl_s: float, max_sessions: int) -> SessionStore:
    if url == "memory":
        return MemoryStore(ttl_s, max_sessions)
    return RedisStore(url, ttl_s)
