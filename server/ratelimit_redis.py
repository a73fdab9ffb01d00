"""The rate limit's store in Redis (MATTE_REDIS_URL), shared by every replica.

One Lua script does the whole check (lock-out, window, count, lock) atomically
and reads Redis's own clock (`TIME`), so processes on machines whose clocks
differ still agree. Keys are `<prefix>{<identity>}:hits` (a list of microsecond
times, oldest first, at most limit + 1 long) and `<prefix>{<identity>}:lock`
(when the lock-out ends); both expire, so Redis holds nothing for idle callers.
The braces keep both keys of one caller in one Redis Cluster slot.

When Redis cannot answer, `take` raises StoreUnavailable at once for the next
second instead of paying a timeout per request; the first call after that
tries again (redis-py reconnects). One log line marks each outage and one its end.
"""

from __future__ import annotations

import logging
import time

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from .ratelimit import Clock, StoreUnavailable

log = logging.getLogger("matte")

PREFIX = "matte:ratelimit:"
# A check is one round trip of a few hundred microseconds on a LAN: a Redis that
# takes longer than this is treated as down rather than stalling every request.
TIMEOUT_S = 0.5
RETRY_EVERY_S = 1.0
ADMITTED = -1

# KEYS: hits, lock. ARGV: limit, window (us), timeout (us). Returns -1 (admitted)
# or the microseconds of lock-out left. Times are built as exact decimal strings:
# Lua 5.1 would print a 16-digit number as 1.7e+15.
SCRIPT = """
local t = redis.call('TIME')
local now_text = t[1] .. string.rep('0', 6 - #t[2]) .. t[2]
local now = tonumber(now_text)
local locked = redis.call('GET', KEYS[2])
if locked and tonumber(locked) > now then
  return tonumber(locked) - now
end
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local timeout = tonumber(ARGV[3])
redis.call('RPUSH', KEYS[1], now_text)
local start = now - window
while true do
  local oldest = redis.call('LINDEX', KEYS[1], 0)
  if not oldest or tonumber(oldest) > start then break end
  redis.call('LPOP', KEYS[1])
end
redis.call('LTRIM', KEYS[1], -(limit + 1), -1)
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
if redis.call('LLEN', KEYS[1]) > limit then
  if timeout > 0 then
    redis.call('SET', KEYS[2], string.format('%.0f', now + timeout),
               'PX', math.ceil(timeout / 1000))
  end
  return timeout
end
return -1
"""

# KEYS: hits. ARGV: window (us). Returns {hits in the window, microseconds until the
# oldest of them leaves it (0 with none)}; writes nothing.
USAGE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1] .. string.rep('0', 6 - #t[2]) .. t[2])
local window = tonumber(ARGV[1])
local start = now - window
local count = 0
local oldest = nil
for _, text in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local at = tonumber(text)
  if at > start then
    count = count + 1
    if not oldest then oldest = at end
  end
end
if not oldest then return {0, 0} end
return {count, oldest - start}
"""


class RedisStore:
    def __init__(
        self,
        client: Redis,
        prefix: str = PREFIX,
        retry_every_s: float = RETRY_EVERY_S,
        clock: Clock = time.monotonic,
    ) -> None:
        self._client = client
        self._script = client.register_script(SCRIPT)
        self._usage = client.register_script(USAGE_SCRIPT)
        self.prefix = prefix
        self._retry_every_s = retry_every_s
        self._clock = clock
        self._down = False
        self._retry_at = 0.0

    @classmethod
    def from_url(
        cls,
        url: str,
        timeout_s: float = TIMEOUT_S,
        prefix: str = PREFIX,
        retry_every_s: float = RETRY_EVERY_S,
        clock: Clock = time.monotonic,
    ) -> RedisStore:
        """Connects lazily, on the first check (so in the event loop that serves)."""
        client = Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            # No retries, pinned: redis-py's defaults moved between releases (a
            # client built without a URL retries 10 times in 6.x), and each retry
            # would add a timeout to what a request waits on a Redis that is down.
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, prefix, retry_every_s, clock)

    @property
    def down(self) -> bool:
        return self._down

    async def take(self, key: str, limit: int, window_s: float, timeout_s: float) -> float | None:
        now = self._clock()
        if self._down:
            if now < self._retry_at:
                raise StoreUnavailable("Redis was unreachable less than a second ago")
            # Calls arriving while this one probes fail fast instead of piling on.
            self._retry_at = now + self._retry_every_s
        keys = [f"{self.prefix}{{{key}}}:hits", f"{self.prefix}{{{key}}}:lock"]
        args = [limit, round(window_s * 1e6), round(timeout_s * 1e6)]
        try:
            answer = await self._script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if self._down:
            self._down = False
            log.warning("rate limit store: Redis is reachable again; limits apply again")
        return None if int(answer) == ADMITTED else int(answer) / 1e6

    async def usage(self, key: str, window_s: float) -> tuple[int, float]:
        if self._down and self._clock() < self._retry_at:
            raise StoreUnavailable("Redis was unreachable less than a second ago")
        try:
            hits, reset_us = await self._usage(
                keys=[f"{self.prefix}{{{key}}}:hits"], args=[round(window_s * 1e6)]
            )
        except (RedisError, OSError) as exc:
            self._failed(exc)
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return int(hits), int(reset_us) / 1e6

    async def close(self) -> None:
        await self._client.aclose()

    def _failed(self, exc: Exception) -> None:
        self._retry_at = self._clock() + self._retry_every_s
        if not self._down:
            self._down = True
            # The error names the host and port at most, never the URL's password.
            log.warning(
                "rate limit store: Redis is unreachable (%s: %s); MATTE_RATE_LIMIT_FAILURE "
                "decides what requests get until it answers, tried again every %g s",
                type(exc).__name__,
                exc,
                self._retry_every_s,
            )
