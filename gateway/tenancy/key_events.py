"""Key and limit changes pushed to every gateway on one PostgreSQL database with LISTEN/NOTIFY.

A gateway that revokes a key, creates one or changes a tenant's limits sends a notification on
``CHANNEL`` after its write commits; every gateway's listener thread then drops its cached key lookups, so
the change holds everywhere in about a database round trip instead of after the cache's TTL. The TTL stays
the bound when a notification is missed (the listener's connection dropped: on reconnecting it drops the
cache once, for whatever it missed) or when a lookup that started before the commit lands in the cache just
after the notification.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)

CHANNEL = "maas_key_changes"
_POLL_S = 0.5  # how often the listener looks up from waiting, to notice close()
_RETRY_S = 1.0


class KeyChangeListener:
    """Calls ``on_change`` (from its own thread) whenever any gateway on the database changes keys or
    limits, and once after each (re)connection."""

    def __init__(self, url: str, on_change: Callable[[], None]) -> None:
        self._url = url
        self._on_change = on_change
        self._stop = threading.Event()
        self.listening = threading.Event()
        """Set while the listener is connected and listening (tests wait for it)."""
        self.backend_pid: int | None = None
        """The server process of the listening connection, while there is one."""
        self._thread = threading.Thread(target=self._run, name="maas-key-changes", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")  # type: ignore[arg-type]
                    self.backend_pid = conn.info.backend_pid
                    self._on_change()  # whatever changed while this gateway was not listening
                    self.listening.set()
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=_POLL_S):
                            self._on_change()
            except psycopg.Error as exc:
                self.listening.clear()
                logger.warning("key change listener reconnecting error=%s", type(exc).__name__)
                self._stop.wait(_RETRY_S)
        self.listening.clear()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=_POLL_S * 4)
