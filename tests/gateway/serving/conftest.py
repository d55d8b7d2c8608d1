"""Fixtures of the serving tests."""

from __future__ import annotations


class MemoryStore:
    """The gateway directory's key-value store as a dict: its rules are tested without a Ray cluster."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def put(self, key: bytes, value: bytes) -> None:
        self.data[key] = value

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def items(self, prefix: bytes) -> dict[bytes, bytes]:
        return {k: v for k, v in self.data.items() if k.startswith(prefix)}

    def delete(self, key: bytes, *, by_prefix: bool = False) -> None:
        for k in [k for k in self.data if (k.startswith(key) if by_prefix else k == key)]:
            del self.data[k]
