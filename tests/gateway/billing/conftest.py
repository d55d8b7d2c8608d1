"""Redis on 127.0.0.1 for the counter tests: each test its own key prefix, deleted after it."""

from __future__ import annotations

import os
import uuid

import pytest

REDIS = os.environ.get("MAAS_TEST_REDIS", "redis://127.0.0.1:6379/0")


def redis_prefix_for_new_test() -> str:
    """A fresh key prefix; skips the test where no Redis runs (never in CI)."""
    import redis

    client = redis.Redis.from_url(REDIS, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"Redis not reachable at {REDIS}: {exc}")
    finally:
        client.close()
    return "maas_test_" + uuid.uuid4().hex[:12]


def redis_keys(prefix: str) -> list[bytes]:
    import redis

    client = redis.Redis.from_url(REDIS)
    try:
        return list(client.scan_iter(match=f"{prefix}:*", count=1000))
    finally:
        client.close()


def drop_redis_prefix(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
