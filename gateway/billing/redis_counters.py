"""Rate-limit windows and budget counters in Redis (``MAAS_REDIS_URL``): a counter write per request off the
shared database, for several gateways.

The guarantee is the database counters' (see ``admission``): one Lua script checks every limit of a request
and, only if all pass, reserves its estimate in each window and in the budget. Redis runs a script alone, so
no two gateways can both slip past a limit; a budget is exceeded by at most one request's worth (what the
requests in flight use beyond their prompt estimate).

Keys: ``<prefix>:{<tenant>}:rate:<scope>:<window>`` and ``<prefix>:{<tenant>}:budget:<period start>``,
hashes of ``requests``/``tokens`` and ``tokens``/``nanos``. The braces are a Redis Cluster hash tag: every
key one request touches is the tenant's, so they share a slot and one script may change them all. A window
expires two windows after it opens, a budget period a day after it ends; a settlement arriving after its key
expired changes nothing (it does not bring the key back without an expiry).
"""

from __future__ import annotations

from typing import Any

from gateway.billing.admission import WINDOW_S, Estimate, Reservation, period_bounds
from gateway.errors import QuotaExceeded, RateLimited
from gateway.tenancy.keystore import Budget, RateLimits

_ADMIT = """
local n = tonumber(ARGV[1])
local est_tokens = tonumber(ARGV[2])
local est_nanos = tonumber(ARGV[3])
local seen = {}
for i = 1, n do
  local rpm = tonumber(ARGV[4 + 2 * i - 1])
  local tpm = tonumber(ARGV[4 + 2 * i])
  local v = redis.call('HMGET', KEYS[i], 'requests', 'tokens')
  local requests = tonumber(v[1]) or 0
  local tokens = tonumber(v[2]) or 0
  if rpm >= 0 and requests + 1 > rpm then return {1, i, requests, tokens} end
  if tpm >= 0 and tokens + est_tokens > tpm then return {2, i, requests, tokens} end
  seen[#seen + 1] = requests
  seen[#seen + 1] = tokens
end
if #KEYS > n then
  local b = 5 + 2 * n
  local limit_tokens = tonumber(ARGV[b])
  local limit_nanos = tonumber(ARGV[b + 1])
  local v = redis.call('HMGET', KEYS[n + 1], 'tokens', 'nanos')
  local tokens = tonumber(v[1]) or 0
  local nanos = tonumber(v[2]) or 0
  if (limit_tokens >= 0 and tokens + est_tokens > limit_tokens)
      or (limit_nanos >= 0 and nanos + est_nanos > limit_nanos) then
    return {3, 0, tokens, nanos}
  end
  redis.call('HINCRBY', KEYS[n + 1], 'tokens', ARGV[2])
  redis.call('HINCRBY', KEYS[n + 1], 'nanos', ARGV[3])
  redis.call('EXPIREAT', KEYS[n + 1], ARGV[b + 2])
end
for i = 1, n do
  redis.call('HINCRBY', KEYS[i], 'requests', 1)
  redis.call('HINCRBY', KEYS[i], 'tokens', ARGV[2])
  redis.call('EXPIRE', KEYS[i], ARGV[4])
end
local out = {0, 0}
for i = 1, #seen do out[#out + 1] = seen[i] end
return out
"""

_SETTLE = """
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('HINCRBY', KEYS[i], 'tokens', ARGV[1])
    if i == tonumber(ARGV[3]) then redis.call('HINCRBY', KEYS[i], 'nanos', ARGV[2]) end
  end
end
return 0
"""

_REFUSED_REQUESTS, _REFUSED_TOKENS, _REFUSED_BUDGET = 1, 2, 3


def _limit(value: int | None) -> int:
    return -1 if value is None else value


class RedisCounterStore:
    """The ``Counters`` of ``admission`` in Redis. ``prefix`` keeps installations (and tests) apart."""

    def __init__(self, url: str, prefix: str = "maas") -> None:
        import redis

        if "{" in prefix or "}" in prefix:
            raise ValueError("the Redis key prefix may not contain braces (they mark the hash tag)")
        self._redis: Any = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        self._redis.ping()
        self._prefix = prefix
        self._admit = self._redis.register_script(_ADMIT)
        self._settle = self._redis.register_script(_SETTLE)

    def _key(self, tenant: str, *parts: object) -> str:
        return ":".join([self._prefix, "{" + tenant.replace("}", "") + "}", *map(str, parts)])

    def admit(
        self,
        scopes: list[tuple[str, RateLimits]],
        budget: tuple[str, Budget] | None,
        estimate: Estimate,
        now: float,
        tenant: str | None = None,
    ) -> Reservation:
        tag = tenant if tenant is not None else (budget[0] if budget is not None else "")
        window = int(now // WINDOW_S * WINDOW_S)
        reset_s = window + WINDOW_S - now
        keys = [self._key(tag, "rate", scope, window) for scope, _ in scopes]
        args: list[int] = [len(scopes), estimate.tokens, estimate.nanos, 2 * WINDOW_S]
        for _, limits in scopes:
            args += [_limit(limits.rpm), _limit(limits.tpm)]
        period: tuple[str, int] | None = None
        if budget is not None:
            allowance = budget[1]
            period_start, period_end = period_bounds(allowance.period, now)
            period = (self._key(tag, "budget", period_start), period_start)
            keys.append(period[0])
            args += [_limit(allowance.tokens), _limit(allowance.nanos), period_end + 86_400]
        result = [int(x) for x in self._admit(keys=keys, args=args)]
        outcome, index = result[0], result[1]
        if outcome == _REFUSED_REQUESTS:
            scope, limits = scopes[index - 1]
            raise RateLimited.requests(scope, limits.rpm or 0, reset_s)
        if outcome == _REFUSED_TOKENS:
            scope, limits = scopes[index - 1]
            tpm = limits.tpm or 0
            raise RateLimited.tokens(scope, tpm, max(0, tpm - result[3]), reset_s)
        if outcome == _REFUSED_BUDGET:
            assert budget is not None
            raise QuotaExceeded.for_period(budget[1].period, period_bounds(budget[1].period, now)[1] - now)
        headers: dict[str, str] = {}
        for i, (_, limits) in enumerate(scopes):
            requests, tokens = result[2 + 2 * i], result[3 + 2 * i]
            if limits.rpm is not None:
                headers.setdefault("x-ratelimit-limit-requests", str(limits.rpm))
                headers.setdefault("x-ratelimit-remaining-requests", str(limits.rpm - requests - 1))
            if limits.tpm is not None:
                headers.setdefault("x-ratelimit-limit-tokens", str(limits.tpm))
                headers.setdefault("x-ratelimit-remaining-tokens", str(limits.tpm - tokens - estimate.tokens))
        return Reservation(
            windows=tuple((key, window) for key in keys[: len(scopes)]),
            budget=period,
            estimate=estimate,
            headers=headers,
        )

    def settle(self, reservation: Reservation, tokens: int, nanos: int) -> None:
        """Replace the reservation's estimate with what was used."""
        keys = [key for key, _ in reservation.windows]
        budget_index = 0
        if reservation.budget is not None:
            keys.append(reservation.budget[0])
            budget_index = len(keys)
        if keys:
            delta_tokens = tokens - reservation.estimate.tokens
            delta_nanos = nanos - reservation.estimate.nanos
            self._settle(keys=keys, args=[delta_tokens, delta_nanos, budget_index])

    def close(self) -> None:
        self._redis.close()
