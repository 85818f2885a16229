"""Where sessions live between requests: get, compare-and-set by ``seq``, delete.

The store versions each session by its ``seq`` and knows nothing else about it. Compare-and-set is what
keeps an observation from being applied twice or lost when two workers or replicas step one session.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple, Protocol, TypeVar

import redis.asyncio as redis

# Told how many sessions the store dropped on its own, and why ("expired" or "evicted").
DropListener = Callable[[str, int], None]


T = TypeVar("T")


class StoreUnavailable(Exception):
    """The session store did not answer. Nothing is known to have changed, so the request may be retried: a
    retried observe that had been applied after all is recognised by its seq and body and answered again."""


def _ignore(reason: str, count: int) -> None:
    pass


class StoreHealth(NamedTuple):
    """Redis' own counts: what it evicted since it started, and its memory against its limit (0: none)."""

    evicted_keys: int
    used_bytes: int
    max_bytes: int


# What get_many returns for a key that holds something other than a session record: no record parses from it.
UNREADABLE = b""


class Put(NamedTuple):
    """A compare-and-set: store ``record`` at version ``seq`` if the stored version is ``expected_seq``."""

    session_id: str
    record: bytes
    seq: int
    expected_seq: int | None  # None: no session yet


class SessionStore(Protocol):
    async def get_many(self, session_ids: list[str]) -> list[bytes | None]:
        """The stored records, None where a session is unknown or expired."""
        ...

    async def put_many_if(self, puts: Sequence[Put]) -> list[bool]:
        """Applies each compare-and-set, in order, in one round trip; returns which stored. Storing refreshes the
        session's idle timeout."""
        ...

    async def delete(self, session_id: str) -> bool:
        """Removes the session; returns whether there was one."""
        ...

    async def count(self) -> int:
        """Sessions currently held; expired ones found on the way are reported to the drop listener."""
        ...

    async def ping(self) -> bool:
        """Whether the store answers and takes writes."""
        ...

    async def health(self) -> StoreHealth | None:
        """How close the store is to refusing or dropping sessions; None where it cannot tell. Never raises."""
        ...


class MemoryStore:
    """Sessions in this process: an idle timeout and a bound on their number, evicting the least recently used.

    Only correct with one worker: each worker process would hold its own sessions.
    """

    def __init__(
        self,
        ttl_s: float,
        max_sessions: int,
        clock: Callable[[], float] = time.monotonic,
        on_drop: DropListener = _ignore,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self.clock = clock
        self.on_drop = on_drop
        # Ordered by last use, so the front is both the least recently used and the first to expire.
        self._sessions: OrderedDict[str, tuple[int, bytes, float]] = OrderedDict()
        self.expired = 0
        self.evicted = 0

    def _expire(self) -> None:
        now, before = self.clock(), self.expired
        while self._sessions:
            _, (_, _, expires) = next(iter(self._sessions.items()))
            if expires > now:
                break
            self._sessions.popitem(last=False)
            self.expired += 1
        if self.expired > before:
            self.on_drop("expired", self.expired - before)

    async def get_many(self, session_ids: list[str]) -> list[bytes | None]:
        self._expire()
        found: list[bytes | None] = []
        for session_id in session_ids:
            entry = self._sessions.get(session_id)
            found.append(None if entry is None else entry[1])
        return found

    async def put_many_if(self, puts: Sequence[Put]) -> list[bool]:
        self._expire()
        return [self._put_if(put) for put in puts]

    def _put_if(self, put: Put) -> bool:
        entry = self._sessions.get(put.session_id)
        current = None if entry is None else entry[0]
        if current != put.expected_seq:
            return False
        self._sessions[put.session_id] = (put.seq, put.record, self.clock() + self.ttl_s)
        self._sessions.move_to_end(put.session_id)
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
            self.evicted += 1
            self.on_drop("evicted", 1)
        return True

    async def delete(self, session_id: str) -> bool:
        self._expire()
        return self._sessions.pop(session_id, None) is not None

    async def count(self) -> int:
        self._expire()
        return len(self._sessions)

    async def ping(self) -> bool:
        return True

    async def health(self) -> StoreHealth | None:
        return None  # its evictions are counted one by one (on_drop), and it has no memory limit of its own


# KEYS: session hash, expiry index; ARGV: expected seq ("" for a new session), new seq, record, ttl in ms,
# expiry time in ms, session id. One script runs atomically in Redis, so two workers cannot both win the
# same compare-and-set, and the index never disagrees with the sessions.
_PUT_IF = """
local current = redis.call('HGET', KEYS[1], 'seq')
if (ARGV[1] == '' and current) or (ARGV[1] ~= '' and current ~= ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'seq', ARGV[2], 'record', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[6])
return 1
"""


class RedisStore:
    """Sessions in Redis, shared by every worker and replica; Redis expires idle ones.

    A sorted set indexes sessions by expiry time, so counting them needs no scan of the key space and the
    expired ones are counted once, by whichever worker trims them from the index.
    """

    PREFIX = "seqcast:session:"
    INDEX = "seqcast:sessions-by-expiry"
    PROBE = "seqcast:readiness-probe"

    def __init__(self, url: str, ttl_s: float, on_drop: DropListener = _ignore, max_connections: int = 100) -> None:
        # A call waits (up to 5 s) for one of the worker's connections: redis-py's default pool refuses a call
        # at once when all are busy, and 200 sessions opened together answered 503 to one in ten.
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=5, socket_timeout=5, socket_connect_timeout=5
        )
        self.client = redis.Redis.from_pool(pool)  # closing the client closes its pool
        self.ttl_ms = int(ttl_s * 1000)
        self.on_drop = on_drop

    @staticmethod
    async def _answer(call: Awaitable[T]) -> T:
        try:
            return await call
        except redis.RedisError as error:
            raise StoreUnavailable(f"Redis did not answer: {error}") from error

    async def _pipeline(
        self, transaction: bool, queue: Callable[[redis.client.Pipeline], None], raise_on_error: bool = True
    ) -> list:
        async with self.client.pipeline(transaction=transaction) as pipe:
            queue(pipe)
            return list(await self._answer(pipe.execute(raise_on_error=raise_on_error)))

    async def get_many(self, session_ids: list[str]) -> list[bytes | None]:
        def queue(pipe: redis.client.Pipeline) -> None:
            for session_id in session_ids:
                pipe.hget(self.PREFIX + session_id, "record")

        # Each key answers for itself: a key of another type (WRONGTYPE) under a session's name is that session's
        # unreadable record, not a failure of the whole batch. Anything else is the store failing.
        found = await self._pipeline(False, queue, raise_on_error=False)
        for answer in found:
            if isinstance(answer, redis.ResponseError) and not str(answer).startswith("WRONGTYPE"):
                raise StoreUnavailable(f"Redis did not answer: {answer}")
        return [UNREADABLE if isinstance(answer, redis.ResponseError) else answer for answer in found]

    async def put_many_if(self, puts: Sequence[Put]) -> list[bool]:
        expires_ms = int(time.time() * 1000) + self.ttl_ms

        def queue(pipe: redis.client.Pipeline) -> None:
            for session_id, record, seq, expected_seq in puts:
                expected = "" if expected_seq is None else str(expected_seq)
                args = (expected, seq, record, self.ttl_ms, expires_ms, session_id)
                # EVAL with the script's text, not EVALSHA: a pipeline of registered scripts first asks Redis
                # whether it holds them, a second round trip per call; Redis caches the script by its hash.
                pipe.eval(_PUT_IF, 2, self.PREFIX + session_id, self.INDEX, *args)

        # Not a transaction: each script is atomic on its own, and one session's failed compare must not undo
        # another's write.
        return [bool(done) for done in await self._pipeline(False, queue)]

    async def delete(self, session_id: str) -> bool:
        def queue(pipe: redis.client.Pipeline) -> None:
            pipe.delete(self.PREFIX + session_id)
            pipe.zrem(self.INDEX, session_id)

        deleted, _ = await self._pipeline(True, queue)
        return bool(deleted)

    async def count(self) -> int:
        def queue(pipe: redis.client.Pipeline) -> None:
            pipe.zremrangebyscore(self.INDEX, "-inf", int(time.time() * 1000))
            pipe.zcard(self.INDEX)

        expired, held = await self._pipeline(True, queue)
        if expired:
            self.on_drop("expired", int(expired))
        return int(held)

    async def ping(self) -> bool:
        """Whether Redis answers and takes writes: a Redis at ``maxmemory`` under ``noeviction`` answers PING but
        refuses every write, so the probe writes a key that expires by itself."""
        try:
            return bool(await self.client.set(self.PROBE, b"1", px=10_000))
        except redis.RedisError:
            return False

    async def health(self) -> StoreHealth | None:
        """None when Redis will not tell (INFO is refused to a least-privilege user; a Redis-compatible server
        may leave the fields out): the health metrics are then absent, and nothing else changes."""

        def queue(pipe: redis.client.Pipeline) -> None:
            pipe.info("memory")
            pipe.info("stats")

        try:
            memory, stats = await self._pipeline(False, queue)
            return StoreHealth(int(stats["evicted_keys"]), int(memory["used_memory"]), int(memory["maxmemory"]))
        except (StoreUnavailable, KeyError, ValueError, TypeError):
            return None


def open_store(url: str, ttl_s: float, max_sessions: int, on_drop: DropListener = _ignore) -> SessionStore:
    if url == "memory":
        return MemoryStore(ttl_s, max_sessions, on_drop=on_drop)
    return RedisStore(url, ttl_s, on_drop=on_drop)
